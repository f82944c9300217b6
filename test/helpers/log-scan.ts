// Run by the global teardown over the folder every test's logs went to (see logs.ts).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const ADDRESS = /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)+/u;

/**
 * Lines of the folder's logs that hold something shaped like an email address, or any of
 * `secrets` (the run's token secret, API key and database password).
 */
export function findLeaks(dir: string, secrets: string[]): { file: string; line: string }[] {
  const found: { file: string; line: string }[] = [];
  for (const file of readdirSync(dir)) {
    for (const line of readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      if (ADDRESS.test(line) || secrets.some((secret) => line.includes(secret))) found.push({ file, line: line.slice(0, 300) });
    }
  }
  return found;
}

/** How many lines the folder's logs hold, so the teardown can say what it checked. */
export function countLines(dir: string): number {
  return readdirSync(dir).reduce((sum, file) => sum + readFileSync(path.join(dir, file), 'utf8').split('\n').filter(Boolean).length, 0);
}
