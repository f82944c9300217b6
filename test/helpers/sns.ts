// SNS's side of a signed notification, for tests: a test CA and signing certificates it
// issues, made with node:crypto (X.509 is DER, written below in a few lines, so the tests need
// no openssl on the machine), and the signature SNS puts on a message.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

function der(tag: number, content: Buffer): Buffer {
  const length = content.length;
  const head = length < 0x80 ? [length] : length < 0x100 ? [0x81, length] : [0x82, length >> 8, length & 0xff];
  return Buffer.concat([Buffer.of(tag, ...head), content]);
}
const sequence = (...items: Buffer[]) => der(0x30, Buffer.concat(items));
const integer = (value: number) => der(0x02, Buffer.of(value));
const explicit = (n: number, content: Buffer) => der(0xa0 + n, content);
function oid(dotted: string): Buffer {
  const [first, second, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const bytes = [40 * first + second];
  for (const value of rest) {
    const groups = [value & 0x7f];
    for (let v = value >> 7; v > 0; v >>= 7) groups.unshift((v & 0x7f) | 0x80);
    bytes.push(...groups);
  }
  return der(0x06, Buffer.from(bytes));
}
const name = (commonName: string) => sequence(der(0x31, sequence(oid('2.5.4.3'), der(0x0c, Buffer.from(commonName)))));
const time = (at: Date) => der(0x18, Buffer.from(`${at.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`));
const SHA256_WITH_RSA = sequence(oid('1.2.840.113549.1.1.11'), Buffer.of(0x05, 0x00));
const CA_EXTENSIONS = explicit(3, sequence(sequence(oid('2.5.29.19'), der(0x01, Buffer.of(0xff)), der(0x04, sequence(der(0x01, Buffer.of(0xff)))))));

export interface Issued { pem: string; key: KeyObject }
export function issue(subject: string, issuer: { name: string; key: KeyObject } | 'self', validity: [Date, Date], serial: number, ca = false): Issued {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const issuerName = issuer === 'self' ? subject : issuer.name;
  const tbs = sequence(explicit(0, integer(2)), integer(serial), SHA256_WITH_RSA, name(issuerName), sequence(time(validity[0]), time(validity[1])),
    name(subject), publicKey.export({ type: 'spki', format: 'der' }), ca ? CA_EXTENSIONS : Buffer.alloc(0));
  const signature = sign('sha256', tbs, issuer === 'self' ? privateKey : issuer.key);
  const certificate = sequence(tbs, SHA256_WITH_RSA, der(0x03, Buffer.concat([Buffer.of(0), signature])));
  return { pem: `-----BEGIN CERTIFICATE-----\n${certificate.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`, key: privateKey };
}

// The string to sign, written from the SNS documentation (not taken from the code under test).
export function signSns(message: Record<string, string>, key: KeyObject, version: '1' | '2' = '1'): string {
  const fields = message.Type === 'Notification'
    ? ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type']
    : ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];
  const text = fields.filter((field) => message[field] !== undefined).map((field) => `${field}\n${message[field]}\n`).join('');
  return sign(version === '1' ? 'sha1' : 'sha256', Buffer.from(text), key).toString('base64');
}

