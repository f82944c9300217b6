// API keys' SQL.
import { sql } from 'kysely';
import type { Database } from '../db/database.js';

export async function insertApiKey(db: Database, key: { name: string; prefix: string; secretHash: string }) {
  return db.insertInto('api_keys')
    .values({ name: key.name, prefix: key.prefix, secret_hash: key.secretHash })
    .returning(['id', 'name', 'prefix', 'created_at'])
    .executeTakeFirstOrThrow();
}

export async function findActiveApiKeyByPrefix(db: Database, prefix: string) {
  return db.selectFrom('api_keys').select(['id', 'name', 'prefix', 'secret_hash'])
    .where('prefix', '=', prefix).where('revoked_at', 'is', null)
    .executeTakeFirst();
}

export async function listApiKeys(db: Database) {
  return db.selectFrom('api_keys').select(['id', 'name', 'prefix', 'created_at', 'last_used_at', 'revoked_at'])
    .orderBy('id').execute();
}

export async function revokeApiKey(db: Database, prefix: string): Promise<boolean> {
  const result = await db.updateTable('api_keys').set({ revoked_at: sql`now()` })
    .where('prefix', '=', prefix).where('revoked_at', 'is', null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function touchApiKey(db: Database, id: string): Promise<void> {
  await db.updateTable('api_keys').set({ last_used_at: sql`now()` }).where('id', '=', id).execute();
}
