// The mailbox an address delivers to, which the signup throttles count on.
// Frozen once landed: fix forward in a new file.
import { type Kysely, sql } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // Spellings that reach one inbox share one key: the address lower-cased, a `+tag` dropped
  // (sub-addressing, RFC 5233), and for Gmail the dots of the local part too, googlemail.com
  // being gmail.com. The address itself stays as typed; only the throttles use the key. A
  // probe of 20 spellings of one Gmail mailbox got 13 confirmation mails past a cap of 5.
  // A generated column rather than a value the signup writes, so that every writer of
  // `subscribers` (signup, imports, erasure) keeps it right without knowing of it, and the
  // rows already held get it by the same rule as new ones.
  await sql`
    create function mailbox_key_of(email text) returns text
    language plpgsql immutable strict parallel safe
    as $$
    declare
      -- lower-cased, and a +tag dropped (not a leading +: that is the local part itself)
      untagged text := regexp_replace(lower(email), '^(.[^+@]*)\\+[^@]*@', '\\1@');
    begin
      if untagged ~ '@(gmail|googlemail)\\.com$' then
        return replace(split_part(untagged, '@', 1), '.', '') || '@gmail.com';
      end if;
      return untagged;
    end $$`.execute(db);
  // Stored, not virtual (PostgreSQL 18's default): it is indexed. Computed for every row that
  // exists now as the table is rewritten; an erased row's null address gives a null key.
  await sql`alter table subscribers add column mailbox_key text generated always as (mailbox_key_of(email)) stored`.execute(db);
  await sql`create index subscribers_mailbox_key on subscribers (mailbox_key)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table subscribers drop column mailbox_key`.execute(db);
  await sql`drop function mailbox_key_of(text)`.execute(db);
}
