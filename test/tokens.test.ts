import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TokenSigner } from '../src/links/tokens.js';

const KEY_A = 'a'.repeat(40);
const KEY_B = 'b'.repeat(40);
const claims = { subscriberId: '6f1c1a5e-2b7c-4c8e-9a51-0d1c2e3f4a5b', listId: '7', issuedAt: 1_000, expiresAt: 2_000 };

describe('confirm tokens', () => {
  it('verify until they expire', () => {
    const signer = new TokenSigner([KEY_A]);
    const token = signer.signConfirm(claims);
    expect(signer.verifyConfirm(token, 1_999)).toEqual({ ok: true, claims: { purpose: 'confirm', ...claims } });
    expect(signer.verifyConfirm(token, 2_000)).toMatchObject({ ok: false, reason: 'expired' });
  });

  it('rotate: the first key signs, every key verifies', () => {
    const old = new TokenSigner([KEY_A]).signConfirm(claims);
    const rotated = new TokenSigner([KEY_B, KEY_A]);
    expect(rotated.verifyConfirm(old, 1_500).ok).toBe(true);
    expect(new TokenSigner([KEY_B]).verifyConfirm(old, 1_500)).toEqual({ ok: false, reason: 'invalid' });
    expect(new TokenSigner([KEY_B]).verifyConfirm(rotated.signConfirm(claims), 1_500).ok).toBe(true);
  });

  it('refuse any string that is not a token we made', () => {
    const signer = new TokenSigner([KEY_A]);
    const token = signer.signConfirm(claims);
    fc.assert(fc.property(fc.string({ maxLength: 600 }), (input) => input === token || !signer.verifyConfirm(input, 0).ok));
    fc.assert(fc.property(fc.nat({ max: token.length - 1 }), fc.string({ minLength: 1, maxLength: 1 }), (index, char) => {
      const altered = token.slice(0, index) + char + token.slice(index + 1);
      return altered === token || signer.verifyConfirm(altered, 0).ok === false;
    }), { numRuns: 2000 });
  });
});
