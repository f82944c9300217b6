// The words issues 18 to 20 add to closed vocabularies (src/domain.ts): consent events for
// bounces, complaints, imports and re-consent, and scheduled campaigns. Each CHECK is
// replaced by a wider one, added NOT VALID and validated after, so the table is not locked
// against writes while its rows are checked. Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

async function widen(db: Kysely<any>, table: string, column: string, values: string[]): Promise<void> {
  const constraint = `${table}_${column}_check`;
  const list = sql.join(values.map((value) => sql.lit(value)));
  await sql`alter table ${sql.table(table)} drop constraint ${sql.ref(constraint)}`.execute(db);
  await sql`alter table ${sql.table(table)} add constraint ${sql.ref(constraint)} check (${sql.ref(column)} in (${list})) not valid`.execute(db);
  await sql`alter table ${sql.table(table)} validate constraint ${sql.ref(constraint)}`.execute(db);
}

export async function up(db: Kysely<any>): Promise<void> {
  await widen(db, 'consent_events', 'kind', ['requested', 'confirmed', 'withdrawn', 'erased', 'bounced', 'complained', 'imported', 'reconsented']);
  await widen(db, 'campaigns', 'status', ['draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled']);
}

export async function down(db: Kysely<any>): Promise<void> {
  await widen(db, 'consent_events', 'kind', ['requested', 'confirmed', 'withdrawn', 'erased']);
  await widen(db, 'campaigns', 'status', ['draft', 'sending', 'paused', 'sent', 'cancelled']);
}
