// A landed migration is never edited: Kysely checks names and order, not content, so this
// compares every migration file with the hash recorded when it landed.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../src/db/migrate.js';

const landed = JSON.parse(readFileSync(new URL('./migrations.lock.json', import.meta.url), 'utf8')) as Record<string, string>;

describe('migrations', () => {
  it('are unchanged since they landed, and every one is recorded', () => {
    const files = readdirSync(MIGRATIONS_DIR).filter((file) => /^\d{4}_\w+\.ts$/.test(file)).sort();
    const hashes = Object.fromEntries(files.map((file) =>
      [file, createHash('sha256').update(readFileSync(`${MIGRATIONS_DIR}${file}`)).digest('hex')]));
    expect(hashes).toEqual(landed);
  });
});
