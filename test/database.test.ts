// Statements sent again and again become named (prepared) statements on each connection, and
// a connection never holds more than the bound of them however many texts the service makes.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Trx } from '../src/db/database.js';
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
