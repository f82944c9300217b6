#!/usr/bin/env node
// The `assent` command: the TypeScript source through tsx where the source is present (a
// clone), else the compiled JavaScript (the Docker image ships dist/ only). Source first, so
// that a stale dist/ in a working tree is never what runs.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import(new URL('../dist/src/cli.js', import.meta.url).href);
}
