// "Lost your mail?" requests waiting for a worker. POST /manage only adds a row here, the same
// one statement for any address, so how long it takes tells nobody whether the address is
// held (issue 15); the outbox worker looks the address up, applies the limits and queues the
// mail, or drops the request. A row is deleted when it is handled, so no address of someone
// we do not hold stays.
// Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table preferences_link_requests (
      id bigint generated always as identity primary key,
      email text not null,
      locale text not null,
      -- when the person asked: the limits count from here, not from when a worker got to it
      requested_at timestamptz not null
    )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('preferences_link_requests').execute();
}
