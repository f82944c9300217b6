// The development signing key under DATA_DIR: made once, by whichever process starts first,
// and read whole by every other (workers.test.ts starts two workers on one DATA_DIR at once).
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const KEYS = new URL('../src/log/keys.ts', import.meta.url).pathname;
const PROGRAM = `const { loadOrCreateDevLogKey } = await import(${JSON.stringify(KEYS)});
process.stdout.write(loadOrCreateDevLogKey(process.argv[1], 'assent.test/log').publicKey.toString('hex'));`;

describe('the development consent-log key', () => {
  it('is the same key for processes that start on one empty DATA_DIR at the same moment, and none reads it half-written', async () => {
    for (let round = 0; round < 3; round += 1) {
      const dataDir = mkdtempSync(path.join(tmpdir(), 'assent-log-key-'));
      try {
        const keys = await Promise.all(Array.from({ length: 6 }, () =>
          run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', PROGRAM, dataDir]).then(({ stdout }) => stdout)));
        expect(new Set(keys).size).toBe(1);
        expect(keys[0]).toMatch(/^[0-9a-f]{64}$/);
        // Only the key is left: each process's draft is gone.
        expect(readdirSync(dataDir)).toEqual(['consent-log-key']);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    }
  }, 120_000);
});
