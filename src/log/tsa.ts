// RFC 3161 time-stamps for checkpoints: a time-stamping authority signs "this SHA-256 existed
// at this time", which takes the checkpoint's date out of our hands too. pkijs (PKI.js) does
// the ASN.1 and the CMS signature; this file asks, and checks that the answer is about our
// checkpoint.
import { createHash, randomBytes } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

const SHA256_OID = '2.16.840.1.101.3.4.2.1';
const TST_INFO_OID = '1.2.840.113549.1.9.16.1.4';

/** A time-stamp token (CMS SignedData over a TSTInfo), DER, and what it says. */
export interface TimeStamp {
  token: Buffer;
  genTime: Date;
}

export class TimeStampError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TimeStampError';
  }
}

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest();

export function timeStampRequest(data: string | Uint8Array, nonce: Buffer): Buffer {
  const request = new pkijs.TimeStampReq({
    version: 1,
    messageImprint: new pkijs.MessageImprint({
      hashAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: SHA256_OID }),
      hashedMessage: new asn1js.OctetString({ valueHex: sha256(data) }),
    }),
    nonce: new asn1js.Integer({ valueHex: nonce }),
    certReq: true, // the signing certificate comes with the token, so it can be checked offline
  });
  return Buffer.from(request.toSchema().toBER(false));
}

/** Asks the authority at `url` to time-stamp `data`; throws TimeStampError with the reason. */
export async function requestTimeStamp(url: string, data: string | Uint8Array, options: { timeoutMs?: number } = {}): Promise<TimeStamp> {
  const nonce = randomBytes(8);
  nonce[0]! &= 0x7f; // a positive INTEGER
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/timestamp-query', accept: 'application/timestamp-reply' },
    body: new Uint8Array(timeStampRequest(data, nonce)),
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
  });
  if (!response.ok) throw new TimeStampError(`the time-stamping authority answered ${response.status}`);
  const reply = Buffer.from(await response.arrayBuffer());
  let parsed: pkijs.TimeStampResp;
  try {
    parsed = pkijs.TimeStampResp.fromBER(reply);
  } catch {
    throw new TimeStampError('the time-stamping authority\'s answer is not a TimeStampResp');
  }
  const status = parsed.status.status;
  if ((status !== 0 && status !== 1) || !parsed.timeStampToken) throw new TimeStampError(`the time-stamping authority refused (status ${status})`);
  const token = Buffer.from(parsed.timeStampToken.toSchema().toBER(false));
  const info = await checkTimeStamp(token, data);
  if (!info.nonce?.equals(nonce)) throw new TimeStampError('the time-stamp answers another request (nonce)');
  return { token, genTime: info.genTime };
}

/**
 * What a token says about `data`: checks that it is a time-stamp over SHA-256(data) and
 * that its signature verifies with the certificate it carries. Whether that certificate is
 * one to trust is for whoever reads it (a regulator checks the authority), as with
 * `openssl ts -verify -CAfile …`.
 */
export async function checkTimeStamp(token: Uint8Array, data: string | Uint8Array): Promise<{ genTime: Date; nonce: Buffer | undefined; serial: string }> {
  let signed: pkijs.SignedData;
  let info: pkijs.TSTInfo;
  try {
    const content = pkijs.ContentInfo.fromBER(new Uint8Array(token));
    signed = new pkijs.SignedData({ schema: content.content });
    if (signed.encapContentInfo.eContentType !== TST_INFO_OID || !signed.encapContentInfo.eContent) throw new Error('not a TSTInfo');
    info = pkijs.TSTInfo.fromBER(signed.encapContentInfo.eContent.getValue());
  } catch {
    throw new TimeStampError('not an RFC 3161 time-stamp token');
  }
  if (info.messageImprint.hashAlgorithm.algorithmId !== SHA256_OID
    || !Buffer.from(info.messageImprint.hashedMessage.getValue()).equals(sha256(data))) {
    throw new TimeStampError('the time-stamp is over something else');
  }
  // For a TSTInfo, pkijs also checks the imprint against the data it is given.
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  const stamped = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const valid = await signed.verify({ signer: 0, checkChain: false, data: stamped }).catch(() => false);
  if (!valid) throw new TimeStampError('the time-stamp\'s signature does not verify');
  return {
    genTime: info.genTime,
    nonce: info.nonce ? Buffer.from(info.nonce.valueBlock.valueHexView) : undefined,
    serial: Buffer.from(info.serialNumber.valueBlock.valueHexView).toString('hex'),
  };
}
