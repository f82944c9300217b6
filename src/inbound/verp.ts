// VERP tags: the envelope sender of every mail names the message it belongs to, so a
// bounce is matched by the address it was sent to, never by what its text claims.
//
//   bounces+<tag>@mail.example.org
//
// A tag is base32 (RFC 4648 alphabet, lower case, no padding) of
//   outbox:    kind byte | LEB128 outbox id                                      | 8-byte HMAC-SHA256
//   campaign:  kind byte | LEB128 campaign id | 16-byte subscriber uuid          | 8-byte HMAC-SHA256
//   reconsent: kind byte | LEB128 list id | LEB128 version | 16-byte subscriber uuid | 8-byte HMAC-SHA256
// Lower-case base32 because mail systems may fold the case of a local part (RFC 5321 §2.4
// lets them; Boxbe's sample in the fixtures upper-cased a VERP tag): the tag survives it.
// 64 bits of MAC: a forger gets one guess per mail he sends us, so 2^64 guesses is out of
// reach, and a longer MAC would push a campaign tag past what fits in a local part.
// The worst case (a 9-byte id and a uuid: 34 bytes) is 55 characters, so `bounces+<tag>`
// stays under RFC 5321's 64-octet local part. A re-consent mail's key (reconsent_messages:
// list, version, person) would need 1 + 9 + 5 + 16 + 8 = 39 bytes, 63 characters, for any
// bigint list id and integer version; so its list id is bounded to 5 LEB128 bytes (below
// 2^35) and its version to 4 (below 2^28), which keeps its worst case at the campaign's 55.
// Both bounds are far past what a list's identity column or its versions reach (past them the
// re-consent worker sends untagged: matched by Message-ID). Rejected: a serial id on
// reconsent_messages (a table rewrite and a second key for the same row).
import { createHmac, timingSafeEqual } from 'node:crypto';

export type VerpClaims =
  /** A transactional mail (confirmation, preferences link): its `outbox` row. */
  | { kind: 'outbox'; outboxId: string }
  /** A campaign mail: its `campaign_messages` row. */
  | { kind: 'campaign'; campaignId: string; subscriberId: string }
  /** A re-consent mail: its `reconsent_messages` row (list, material version, person). */
  | { kind: 'reconsent'; listId: string; version: number; subscriberId: string };

/** HMAC keys: the first signs, every one verifies (rotation, as with TOKEN_SECRETS). */
export type VerpKeys = readonly Uint8Array[];

/** Where bounces go, and the keys that sign what comes back there. */
export interface VerpConfig {
  /** `BOUNCE_ADDRESS`, a bare address such as `bounces@mail.example.org`. */
  bounceAddress: string;
  keys: VerpKeys;
}

/** The longest tag signVerpTag makes. */
export const VERP_TAG_MAX_LENGTH = 55;

const LOCAL_PART_MAX_OCTETS = 64;
const MAC_BYTES = 8;
const KIND_BYTE = { outbox: 0x01, campaign: 0x02, reconsent: 0x03 } as const;
// A fixed label, so a key made from a TOKEN_SECRETS entry signs nothing but VERP tags.
const KEY_LABEL = 'assent/verp-tag/v1';
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const ID = /^(0|[1-9]\d{0,18})$/;
const MAX_ID = (1n << 63n) - 1n;
/** A re-consent tag's bounds (see the top): 5 and 4 LEB128 bytes. */
export const RECONSENT_MAX_LIST_ID = (1n << 35n) - 1n;
export const RECONSENT_MAX_VERSION = 2 ** 28 - 1;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** One VERP key for each of TOKEN_SECRETS, in their order. */
export function verpKeysFromSecrets(secrets: readonly string[]): Buffer[] {
  return secrets.map((secret) => createHmac('sha256', secret).update(KEY_LABEL).digest());
}

export function signVerpTag(claims: VerpClaims, keys: VerpKeys): string {
  const key = keys[0];
  if (!key) throw new Error('at least one VERP key is needed');
  const payload = encodeClaims(claims);
  if (!payload) throw new RangeError('VERP claims out of range');
  return tagFor(payload, key);
}

/** The claims of a tag one of `keys` signed, in any letter case; undefined for anything else. */
export function verifyVerpTag(tag: string, keys: VerpKeys): VerpClaims | undefined {
  const folded = tag.toLowerCase();
  if (folded.length > VERP_TAG_MAX_LENGTH) return undefined;
  const bytes = base32Decode(folded);
  if (!bytes || bytes.length <= MAC_BYTES) return undefined;
  const claims = decodeClaims(bytes.subarray(0, bytes.length - MAC_BYTES));
  if (!claims) return undefined;
  // Recomputing the whole tag and comparing it refuses every non-canonical spelling too
  // (spare bits in the last character, an over-long id), not only a wrong MAC.
  const payload = encodeClaims(claims);
  if (!payload) return undefined;
  const given = Buffer.from(folded);
  for (const key of keys) {
    const expected = Buffer.from(tagFor(payload, key));
    if (expected.length === given.length && timingSafeEqual(expected, given)) return claims;
  }
  return undefined;
}

/** `bounces@mail.example.org` + tag → `bounces+<tag>@mail.example.org`. */
export function verpAddress(bounceAddress: string, tag: string): string {
  const { local, domain } = splitAddress(bounceAddress);
  const tagged = `${local}+${tag}`;
  if (Buffer.byteLength(tagged) > LOCAL_PART_MAX_OCTETS) {
    throw new RangeError(`the local part of ${bounceAddress} leaves no room for a VERP tag`);
  }
  return `${tagged}@${domain}`;
}

/** Whether a VERP tag of any length fits after this bounce address's local part (check at start-up). */
export function bounceAddressFitsTags(bounceAddress: string): boolean {
  const { local } = splitAddress(bounceAddress);
  return local.length > 0 && Buffer.byteLength(local) + 1 + VERP_TAG_MAX_LENGTH <= LOCAL_PART_MAX_OCTETS;
}

/**
 * The claims of a `bounces+<tag>@domain` address (angle brackets and any letter case
 * allowed); undefined for another address or a tag we did not sign.
 */
export function parseVerpRecipient(address: string, bounceAddress: string, keys: VerpKeys): VerpClaims | undefined {
  const bare = address.trim().replace(/^<(.*)>$/, '$1');
  const at = bare.lastIndexOf('@');
  if (at < 0) return undefined;
  const bounce = splitAddress(bounceAddress);
  if (bare.slice(at + 1).toLowerCase() !== bounce.domain.toLowerCase()) return undefined;
  const local = bare.slice(0, at);
  const prefix = `${bounce.local}+`;
  if (local.length <= prefix.length || local.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase()) return undefined;
  return verifyVerpTag(local.slice(prefix.length), keys);
}

/**
 * The first candidate that names one of our messages: an address (`bounces+<tag>@…`) or a
 * bare tag (as a provider's metadata echoes it back).
 */
export function resolveVerp(candidates: readonly string[], config: VerpConfig): VerpClaims | undefined {
  for (const candidate of candidates) {
    const claims = candidate.includes('@')
      ? parseVerpRecipient(candidate, config.bounceAddress, config.keys)
      : verifyVerpTag(candidate.trim(), config.keys);
    if (claims) return claims;
  }
  return undefined;
}

function splitAddress(address: string): { local: string; domain: string } {
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) throw new RangeError(`not an address: ${address}`);
  return { local: address.slice(0, at), domain: address.slice(at + 1) };
}

function tagFor(payload: Buffer, key: Uint8Array): string {
  const mac = createHmac('sha256', key).update(payload).digest().subarray(0, MAC_BYTES);
  return base32Encode(Buffer.concat([payload, mac]));
}

function encodeClaims(claims: VerpClaims): Buffer | undefined {
  if (claims.kind === 'outbox') {
    const id = encodeId(claims.outboxId);
    return id && Buffer.concat([Buffer.of(KIND_BYTE.outbox), id]);
  }
  if (!UUID.test(claims.subscriberId)) return undefined;
  const subscriber = Buffer.from(claims.subscriberId.replaceAll('-', ''), 'hex');
  if (claims.kind === 'campaign') {
    const id = encodeId(claims.campaignId);
    return id && Buffer.concat([Buffer.of(KIND_BYTE.campaign), id, subscriber]);
  }
  const list = encodeId(claims.listId, RECONSENT_MAX_LIST_ID);
  const version = Number.isSafeInteger(claims.version) ? encodeId(String(claims.version), BigInt(RECONSENT_MAX_VERSION)) : undefined;
  return list && version && Buffer.concat([Buffer.of(KIND_BYTE.reconsent), list, version, subscriber]);
}

function decodeClaims(payload: Buffer): VerpClaims | undefined {
  const id = decodeId(payload, 1);
  if (!id) return undefined;
  const rest = payload.subarray(id.end);
  if (payload[0] === KIND_BYTE.outbox && rest.length === 0) return { kind: 'outbox', outboxId: id.value };
  if (payload[0] === KIND_BYTE.campaign && rest.length === 16) {
    return { kind: 'campaign', campaignId: id.value, subscriberId: uuidOf(rest) };
  }
  if (payload[0] === KIND_BYTE.reconsent) {
    // Out-of-range values decode here but fail the re-encoding in verifyVerpTag.
    const version = decodeId(payload, id.end);
    const subscriber = version && payload.subarray(version.end);
    if (!version || subscriber?.length !== 16) return undefined;
    return { kind: 'reconsent', listId: id.value, version: Number(version.value), subscriberId: uuidOf(subscriber) };
  }
  return undefined;
}

function uuidOf(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// Unsigned LEB128: a campaign or outbox id is small for years, so it costs a byte or three.
function encodeId(id: string, max = MAX_ID): Buffer | undefined {
  if (!ID.test(id)) return undefined;
  let value = BigInt(id);
  if (value > max) return undefined;
  const bytes: number[] = [];
  do {
    const low = Number(value & 0x7fn);
    value >>= 7n;
    bytes.push(value > 0n ? low | 0x80 : low);
  } while (value > 0n);
  return Buffer.from(bytes);
}

function decodeId(bytes: Buffer, start: number): { value: string; end: number } | undefined {
  let value = 0n;
  for (let i = start, shift = 0n; i < bytes.length && i < start + 9; i++, shift += 7n) {
    const byte = bytes[i]!;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return value > MAX_ID ? undefined : { value: value.toString(), end: i + 1 };
  }
  return undefined;
}

function base32Encode(bytes: Buffer): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

function base32Decode(text: string): Buffer | undefined {
  const bytes: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of text) {
    const value = ALPHABET.indexOf(char);
    if (value < 0) return undefined;
    buffer = ((buffer << 5) | value) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((buffer >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(bytes);
}
