import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bounceAddressFitsTags, parseVerpRecipient, RECONSENT_MAX_LIST_ID, RECONSENT_MAX_VERSION, resolveVerp, signVerpTag,
  VERP_TAG_MAX_LENGTH, verifyVerpTag, verpAddress, verpKeysFromSecrets, type VerpClaims,
} from '../src/inbound/verp.js';
import type { Config } from '../src/config.js';
import { mailTagger } from '../src/mail/envelope.js';

const [KEY_A, KEY_B] = verpKeysFromSecrets(['a'.repeat(40), 'b'.repeat(40)]) as [Buffer, Buffer];
const BOUNCES = 'bounces@mail.example.org';
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

const bigintId = fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }).map(String);
const claimsArb: fc.Arbitrary<VerpClaims> = fc.oneof(
  bigintId.map((outboxId) => ({ kind: 'outbox' as const, outboxId })),
  fc.record({ kind: fc.constant('campaign' as const), campaignId: bigintId, subscriberId: fc.uuid() }),
  fc.record({
    kind: fc.constant('reconsent' as const), listId: fc.bigInt({ min: 0n, max: RECONSENT_MAX_LIST_ID }).map(String),
    version: fc.integer({ min: 0, max: RECONSENT_MAX_VERSION }), subscriberId: fc.uuid(),
  }),
);
// Any character a mail system could put in its place, other than the same letter in the other case.
const replacementArb = fc.oneof(fc.constantFrom(...ALPHABET, ...ALPHABET.toUpperCase(), '0', '1', '8', '9', '+', '-', '.', '='), fc.string({ maxLength: 1 }));

describe('VERP tags', () => {
  it('round-trip every outbox, campaign and re-consent message, within the length that fits a local part', () => {
    fc.assert(fc.property(claimsArb, (claims) => {
      const tag = signVerpTag(claims, [KEY_A]);
      expect(tag).toMatch(/^[a-z2-7]+$/);
      expect(tag.length).toBeLessThanOrEqual(VERP_TAG_MAX_LENGTH);
      expect(verifyVerpTag(tag, [KEY_A])).toEqual(claims);
      const address = verpAddress(BOUNCES, tag);
      expect(Buffer.byteLength(address.split('@')[0]!)).toBeLessThan(64);
      expect(parseVerpRecipient(address, BOUNCES, [KEY_A])).toEqual(claims);
    }), { numRuns: 500 });
  });

  it('keep the largest ids short: the worst campaign tag is the longest there is', () => {
    const worst = signVerpTag({ kind: 'campaign', campaignId: String((1n << 63n) - 1n), subscriberId: 'ffffffff-ffff-ffff-ffff-ffffffffffff' }, [KEY_A]);
    expect(worst).toHaveLength(VERP_TAG_MAX_LENGTH);
    expect(signVerpTag({ kind: 'campaign', campaignId: '42', subscriberId: '6f1c1a5e-2b7c-4c8e-9a51-0d1c2e3f4a5b' }, [KEY_A]).length).toBeLessThan(45);
  });

  it('keep the largest re-consent key within the campaign\'s worst case, and refuse one past its bounds', () => {
    const subscriberId = 'ffffffff-ffff-ffff-ffff-ffffffffffff';
    const largest: VerpClaims = { kind: 'reconsent', listId: String(RECONSENT_MAX_LIST_ID), version: RECONSENT_MAX_VERSION, subscriberId };
    const worst = signVerpTag(largest, [KEY_A]);
    expect(worst).toHaveLength(VERP_TAG_MAX_LENGTH);
    expect(verifyVerpTag(worst, [KEY_A])).toEqual(largest);
    expect(Buffer.byteLength(verpAddress(BOUNCES, worst).split('@')[0]!)).toBeLessThan(64);
    expect(() => signVerpTag({ ...largest, listId: String(RECONSENT_MAX_LIST_ID + 1n) }, [KEY_A])).toThrow(RangeError);
    expect(() => signVerpTag({ ...largest, version: RECONSENT_MAX_VERSION + 1 }, [KEY_A])).toThrow(RangeError);
    expect(() => signVerpTag({ ...largest, version: -1 }, [KEY_A])).toThrow(RangeError);
    expect(() => signVerpTag({ ...largest, version: 1.5 }, [KEY_A])).toThrow(RangeError);
    expect(() => signVerpTag({ ...largest, subscriberId: 'not-a-uuid' }, [KEY_A])).toThrow(RangeError);
  });

  it('tell a re-consent mail from a campaign mail of the same numbers, and refuse one re-signed with an unknown key', () => {
    const subscriberId = '6f1c1a5e-2b7c-4c8e-9a51-0d1c2e3f4a5b';
    const reconsent: VerpClaims = { kind: 'reconsent', listId: '3', version: 2, subscriberId };
    const tag = signVerpTag(reconsent, [KEY_A]);
    expect(verifyVerpTag(tag, [KEY_A])).toEqual(reconsent);
    expect(tag).not.toBe(signVerpTag({ kind: 'campaign', campaignId: '3', subscriberId }, [KEY_A]));
    // Another version or person of the same list is another mail: its tag is not this one's.
    expect(signVerpTag({ ...reconsent, version: 3 }, [KEY_A])).not.toBe(tag);
    expect(verifyVerpTag(signVerpTag({ ...reconsent, version: 3 }, [KEY_B]), [KEY_A])).toBeUndefined();
  });

  it('refuse a re-consent tag whose payload was altered, even with a recomputed length', () => {
    const subscriberId = '6f1c1a5e-2b7c-4c8e-9a51-0d1c2e3f4a5b';
    const tag = signVerpTag({ kind: 'reconsent', listId: '3', version: 2, subscriberId }, [KEY_A]);
    // The forger's own claims with our MAC copied from a real tag: same length, other payload.
    const forged = signVerpTag({ kind: 'reconsent', listId: '4', version: 2, subscriberId }, [KEY_B]);
    const spliced = forged.slice(0, forged.length - 13) + tag.slice(tag.length - 13);
    expect(verifyVerpTag(spliced, [KEY_A])).toBeUndefined();
    expect(resolveVerp([verpAddress(BOUNCES, spliced)], { bounceAddress: BOUNCES, keys: [KEY_A] })).toBeUndefined();
  });

  it('survive case folding of the tag and of the whole address', () => {
    fc.assert(fc.property(claimsArb, fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }), (claims, upper) => {
      const tag = signVerpTag(claims, [KEY_A]);
      const mixed = [...tag].map((char, index) => (upper[index] ? char.toUpperCase() : char)).join('');
      expect(verifyVerpTag(mixed, [KEY_A])).toEqual(claims);
      const address = verpAddress(BOUNCES, tag);
      expect(parseVerpRecipient(address.toUpperCase(), BOUNCES, [KEY_A])).toEqual(claims);
      expect(parseVerpRecipient(`<${address.toLowerCase()}>`, BOUNCES, [KEY_A])).toEqual(claims);
    }), { numRuns: 300 });
  });

  it('refuse any change of any character', () => {
    fc.assert(fc.property(claimsArb, fc.nat(), replacementArb, (claims, at, replacement) => {
      const tag = signVerpTag(claims, [KEY_A]);
      const index = at % tag.length;
      fc.pre(replacement.toLowerCase() !== tag[index]);
      const altered = tag.slice(0, index) + replacement + tag.slice(index + 1);
      expect(verifyVerpTag(altered, [KEY_A])).toBeUndefined();
      expect(parseVerpRecipient(verpAddress(BOUNCES, altered), BOUNCES, [KEY_A])).toBeUndefined();
    }), { numRuns: 3000 });
  });

  it('refuse a tag cut short, lengthened or made up', () => {
    const tag = signVerpTag({ kind: 'outbox', outboxId: '123456' }, [KEY_A]);
    expect(verifyVerpTag(tag.slice(0, -1), [KEY_A])).toBeUndefined();
    expect(verifyVerpTag(`${tag}a`, [KEY_A])).toBeUndefined();
    expect(verifyVerpTag('', [KEY_A])).toBeUndefined();
    fc.assert(fc.property(fc.string({ maxLength: 80 }), (input) => input.toLowerCase() === tag || verifyVerpTag(input, [KEY_A]) === undefined));
    fc.assert(fc.property(fc.stringMatching(/^[a-z2-7]{10,55}$/), (input) => input === tag || verifyVerpTag(input, [KEY_A]) === undefined));
  });

  it('rotate: the first key signs, every key verifies, a dropped key no longer does', () => {
    const claims: VerpClaims = { kind: 'campaign', campaignId: '7', subscriberId: '6f1c1a5e-2b7c-4c8e-9a51-0d1c2e3f4a5b' };
    const old = signVerpTag(claims, [KEY_A]);
    expect(verifyVerpTag(old, [KEY_B, KEY_A])).toEqual(claims);
    expect(verifyVerpTag(old, [KEY_B])).toBeUndefined();
    expect(signVerpTag(claims, [KEY_B, KEY_A])).toBe(signVerpTag(claims, [KEY_B]));
  });

  it('derive keys that differ from the secrets and from each other', () => {
    expect(KEY_A).toHaveLength(32);
    expect(KEY_A.equals(KEY_B)).toBe(false);
    expect(KEY_A.equals(Buffer.from('a'.repeat(40)).subarray(0, 32))).toBe(false);
  });

  it('refuse ids and uuids out of range when signing', () => {
    expect(() => signVerpTag({ kind: 'outbox', outboxId: String(1n << 63n) }, [KEY_A])).toThrow(RangeError);
    expect(() => signVerpTag({ kind: 'outbox', outboxId: '-1' }, [KEY_A])).toThrow(RangeError);
    expect(() => signVerpTag({ kind: 'campaign', campaignId: '1', subscriberId: 'not-a-uuid' }, [KEY_A])).toThrow(RangeError);
    expect(() => signVerpTag({ kind: 'outbox', outboxId: '1' }, [])).toThrow();
  });
});

describe('VERP addresses', () => {
  const claims: VerpClaims = { kind: 'outbox', outboxId: '99' };
  const tag = signVerpTag(claims, [KEY_A]);

  it('put the tag after a + in the bounce address', () => {
    expect(verpAddress(BOUNCES, tag)).toBe(`bounces+${tag}@mail.example.org`);
  });

  it('name nothing when the domain, the local part or the separator differ', () => {
    expect(parseVerpRecipient(`bounces+${tag}@other.example.org`, BOUNCES, [KEY_A])).toBeUndefined();
    expect(parseVerpRecipient(`bouncer+${tag}@mail.example.org`, BOUNCES, [KEY_A])).toBeUndefined();
    expect(parseVerpRecipient(`bounces-${tag}@mail.example.org`, BOUNCES, [KEY_A])).toBeUndefined();
    expect(parseVerpRecipient('bounces@mail.example.org', BOUNCES, [KEY_A])).toBeUndefined();
    expect(parseVerpRecipient('bounces+@mail.example.org', BOUNCES, [KEY_A])).toBeUndefined();
    expect(parseVerpRecipient('not an address', BOUNCES, [KEY_A])).toBeUndefined();
  });

  it('refuse a bounce address whose local part leaves no room for a tag', () => {
    expect(bounceAddressFitsTags(BOUNCES)).toBe(true);
    expect(bounceAddressFitsTags(`${'b'.repeat(9)}@mail.example.org`)).toBe(false);
    expect(() => verpAddress(`${'b'.repeat(60)}@mail.example.org`, tag)).toThrow(RangeError);
  });

  it('resolve the first candidate that is ours, address or bare tag', () => {
    const verp = { bounceAddress: BOUNCES, keys: [KEY_A] };
    const forged = `bounces+${tag.slice(0, -1)}${tag.endsWith('a') ? 'b' : 'a'}@mail.example.org`;
    expect(resolveVerp(['someone@example.com', forged, verpAddress(BOUNCES, tag)], verp)).toEqual(claims);
    expect(resolveVerp([tag.toUpperCase()], verp)).toEqual(claims);
    expect(resolveVerp(['someone@example.com', forged], verp)).toBeUndefined();
  });
});

describe('where a mail carries its tag (mail/envelope.ts)', () => {
  const inbound = { bounceAddress: BOUNCES, postmarkWebhookToken: undefined, sendgridWebhookKey: undefined, mailgunSigningKey: undefined } as unknown as Config['inbound'];
  const claims: VerpClaims = { kind: 'outbox', outboxId: '7' };
  const tagger = (settings: Partial<Config['inbound']>) => mailTagger({ inbound: { ...inbound, ...settings }, tokenSecrets: ['a'.repeat(40)] });

  it('in the envelope sender only, unless a provider that echoes headers is configured', () => {
    const tag = signVerpTag(claims, [KEY_A]);
    expect(tagger({})(claims)).toEqual({ envelopeFrom: `bounces+${tag}@mail.example.org`, headers: {} });
    expect(tagger({ postmarkWebhookToken: 'token' })(claims)!.headers).toEqual({ 'X-PM-Metadata-verp': tag });
    expect(tagger({ sendgridWebhookKey: 'key' })(claims)!.headers).toEqual({ 'X-SMTPAPI': `{"unique_args": {"verp": "${tag}"}}` });
    expect(tagger({ mailgunSigningKey: 'key' })(claims)!.headers).toEqual({ 'X-Mailgun-Variables': `{"verp": "${tag}"}` });
  });

  it('nowhere without BOUNCE_ADDRESS', () => {
    expect(tagger({ bounceAddress: undefined, postmarkWebhookToken: 'token', sendgridWebhookKey: 'key', mailgunSigningKey: 'key' })(claims)).toBeUndefined();
  });
});
