import fc from 'fast-check';
import { Migrator } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanName, normaliseEmail } from '../src/consent/address.js';
import { createTestDatabase, migrationFiles, type TestDatabase } from './helpers/db.js';

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

describe('mailbox keys (migration 0004)', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
  });
  afterAll(async () => {
    await tdb.drop();
  });
  const keyOf = async (email: string) => (await tdb.query('select mailbox_key_of($1) as key', [email])).rows[0].key;

  it.each([
    ['Jane.Doe@gmail.com', 'janedoe@gmail.com'],
    ['j.a.n.e.d.o.e+news@googlemail.com', 'janedoe@gmail.com'],
    ['JANEDOE+a+b@GMail.com', 'janedoe@gmail.com'],
    ['Jane.Doe+list@example.org', 'jane.doe@example.org'],
    ['jane.doe@example.org', 'jane.doe@example.org'],
    ['+only-a-tag@example.org', '+only-a-tag@example.org'],
    ['a+@example.org', 'a@example.org'],
    ['j@xn--mller-kva.example', 'j@xn--mller-kva.example'],
  ])('%s is the mailbox %s', async (email, key) => {
    expect(await keyOf(email)).toBe(key);
  });

  it('is kept by the database for every row, and given by the migration to rows written before it', async () => {
    const migrator = new Migrator({ db: tdb.db, provider: { getMigrations: migrationFiles } });
    expect((await migrator.migrateTo('0003_create_campaigns')).error).toBeUndefined();
    await tdb.query(`insert into subscribers (email) values ('Old.Timer+x@googlemail.com'), (null)`);
    expect((await migrator.migrateToLatest()).error).toBeUndefined();
    await tdb.query(`insert into subscribers (email) values ('oldtimer@gmail.com')`);
    const { rows } = await tdb.query('select email, mailbox_key from subscribers order by email');
    expect(rows).toEqual([
      { email: 'Old.Timer+x@googlemail.com', mailbox_key: 'oldtimer@gmail.com' },
      { email: 'oldtimer@gmail.com', mailbox_key: 'oldtimer@gmail.com' },
      { email: null, mailbox_key: null },
    ]);
    // erasure blanks the address, and with it the key
    await tdb.query(`update subscribers set email = null where email = 'oldtimer@gmail.com'`);
    expect((await tdb.query(`select count(*)::int as n from subscribers where mailbox_key is not null`)).rows[0].n).toBe(1);
  });
});
