// Statements sent again and again become named (prepared) statements on each connection, and
// a connection never holds more than the bound of them however many texts the service makes.
// A statement compiled once (precompiled) runs with each call's values, and refuses a build
// that would not pass them through.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { precompiled, type Trx } from '../src/db/database.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

let tdb: TestDatabase;
beforeAll(async () => { tdb = await createTestDatabase(); });
afterAll(async () => { await tdb?.drop(); });

const prepared = async (trx: Trx) =>
  (await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(trx)).rows.map((row) => row.statement);

describe('prepared statements', () => {
  it('a statement run a third time is prepared on its connection and gives the same answers', async () => {
    await tdb.db.transaction().execute(async (trx) => {
      const answers = [];
      for (let i = 0; i < 4; i += 1) {
        answers.push(await trx.selectFrom('lists').select('slug').where('slug', '=', `prepared-${i % 2}`).execute());
        const statements = await prepared(trx);
        const isPrepared = statements.some((statement) => statement.includes('"slug" = $1'));
        // Not on the first two runs; from the third on.
        expect(isPrepared, `after run ${i + 1}`).toBe(i >= 2);
      }
      expect(answers).toEqual([[], [], [], []]);
    });
  });

  it('names at most 500 texts, however many distinct texts run', async () => {
    await tdb.db.transaction().execute(async (trx) => {
      for (let i = 0; i < 600; i += 1) {
        for (let run = 0; run < 3; run += 1) {
          const { rows } = await sql<{ n: number }>`select ${sql.lit(i)}::int + ${run}::int as n`.execute(trx);
          expect(rows[0]!.n).toBe(i + run);
        }
      }
      const statements = await prepared(trx);
      expect(statements.length).toBeGreaterThan(400);
      expect(statements.length).toBeLessThanOrEqual(500);
    });
  });
});

describe('statements compiled once', () => {
  it('runs with each call\'s values, in every position and as often as one is used', async () => {
    const echo = precompiled((db, args: { a: string; b: number; when: Date; bytes: Buffer | null }) => db
      .selectNoFrom((eb) => [
        eb.cast<string>(eb.val(args.a), 'text').as('a'),
        eb.cast<number>(eb.val(args.b), 'integer').as('b'),
        eb.cast<string>(eb.val(args.a), 'text').as('a_again'),
        eb.cast<Date>(eb.val(args.when), 'timestamptz').as('when'),
        eb.cast<Buffer | null>(eb.val(args.bytes), 'bytea').as('bytes'),
        eb.cast<string>(eb.val('constant'), 'text').as('constant'),
      ]));
    const calls = [
      { a: 'first', b: 1, when: new Date('2026-01-02T03:04:05.678Z'), bytes: Buffer.from([1, 2]) },
      { a: "it's \u00e9", b: -7, when: new Date('1999-12-31T23:59:59.000Z'), bytes: null },
    ];
    for (const args of calls) {
      const { rows } = await echo(tdb.db, args);
      expect(rows).toEqual([{ ...args, a_again: args.a, constant: 'constant' }]);
    }
  });

  it('refuses a build that transforms a value, writes it into the text, or leaves it out, and a call without a value', async () => {
    const transformed = precompiled((db, args: { name: string }) => db.selectNoFrom((eb) => eb.val(`${args.name}!`).as('x')));
    await expect(transformed(tdb.db, { name: 'x' })).rejects.toThrow(/transformed/);
    const unrecognisable = precompiled((db, args: { name: string }) => db.selectNoFrom((eb) => eb.val(args.name.toUpperCase()).as('x')));
    await expect(unrecognisable(tdb.db, { name: 'x' })).rejects.toThrow(/not passed as parameters: name/);
    const inlined = precompiled((db, args: { name: string }) => db.selectNoFrom(sql.lit(args.name).as('x')));
    await expect(inlined(tdb.db, { name: 'x' })).rejects.toThrow(/inlined/);
    const unused = precompiled((db, args: { name: string; other: string }) => db.selectNoFrom((eb) => eb.val(args.name).as('x')));
    await expect(unused(tdb.db, { name: 'x', other: 'y' })).rejects.toThrow(/other/);
    const fine = precompiled((db, args: { name: string }) => db.selectNoFrom((eb) => eb.cast<string>(eb.val(args.name), 'text').as('x')));
    expect((await fine(tdb.db, { name: 'x' })).rows).toEqual([{ x: 'x' }]);
    await expect(fine(tdb.db, {} as { name: string })).rejects.toThrow(/no value for "name"/);
  });
});
