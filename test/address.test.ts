import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cleanName, normaliseEmail } from '../src/consent/address.js';

describe('normaliseEmail', () => {
  it.each([
    ['  Someone@Example.ORG ', 'Someone@example.org'],
    ['user+tag@sub.example.co.uk', 'user+tag@sub.example.co.uk'],
    ['jürgen@müller.example', undefined], // non-ASCII local part: refused
    ['j@müller.example', 'j@xn--mller-kva.example'],
    ['a@example.org.', 'a@example.org'],
    ['a@[127.0.0.1]', undefined],
    ['a@127.0.0.1', undefined],
    ['a..b@example.org', undefined],
    ['.a@example.org', undefined],
    ['a@-example.org', undefined],
    ['a@example', undefined],
    ['a b@example.org', undefined],
    ['a@example.org\nBcc: b@example.org', undefined],
    ['"quoted"@example.org', undefined],
    [`${'a'.repeat(64)}@example.org`, `${'a'.repeat(64)}@example.org`],
    [`${'a'.repeat(65)}@example.org`, undefined],
  ])('%j -> %j', (input, expected) => {
    expect(normaliseEmail(input)).toBe(expected);
  });

  it('never returns an address with whitespace or control characters, or longer than 254', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (input) => {
      const result = normaliseEmail(input);
      return result === undefined || (result.length <= 254 && !/[\s\p{Cc}]/u.test(result) && normaliseEmail(result) === result);
    }), { numRuns: 2000 });
  });
});

describe('cleanName', () => {
  it('strips control and bidi characters and collapses whitespace', () => {
    expect(cleanName('  Ada\r\n\tLovelace ')).toBe('Ada Lovelace');
    expect(cleanName('\u202Eevil\u2066')).toBe('evil');
    expect(cleanName('\u0000')).toBeNull();
    expect(cleanName(undefined)).toBeNull();
  });
});
