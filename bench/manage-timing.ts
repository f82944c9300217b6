// "Lost your mail?" as a timing oracle: does POST /manage answer measurably slower for an
// address we hold (and have just mailed, so it is throttled) than for one we do not? Runs
// `assent` as `npm start` does (both roles, one process) over real HTTP on an embedded
// PostgreSQL in a temporary folder, probes both kinds alternately, and then plays the attack:
// guess known or unknown from the median of three probes, with the threshold learnt from the
// first probes. Not part of `npm test`: no test asserts a time.
//
//   node --import tsx bench/manage-timing.ts            # 200 probes of each, 30 guesses
//   PROBES=500 GUESSES=60 node --import tsx bench/manage-timing.ts
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig } from '../src/config.js';
import { startEmbeddedDatabase } from '../src/db/embedded.js';
import { createLogger, startService } from '../src/main.js';

const PROBES = Number(process.env.PROBES ?? 200);
const GUESSES = Number(process.env.GUESSES ?? 30);
const KEY = 'timing-api-key-0123456789abcdef';

const dataDir = await mkdtemp(path.join(tmpdir(), 'assent-timing-'));
const database = await startEmbeddedDatabase(dataDir);
const parsed = parseConfig({
  DATABASE_URL: database.url, DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'silent', SUBSCRIBE_RATE_LIMIT: '0',
  TOKEN_SECRETS: 'timing-secret-0123456789abcdef0123456789', ASSENT_API_KEY: KEY, CONSENT_LOG_KEY: Buffer.alloc(32, 5).toString('base64'),
});
if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
const service = await startService(parsed.config, ['serve', 'worker'], createLogger(parsed.config));
const address = service.server.address();
const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;

let unknownSerial = 0;
const unknown = () => `nobody${(unknownSerial += 1)}@example.org`;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const quantile = (values: number[], q: number) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) * q)]!;

async function probe(email: string): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${base}/manage`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ email }),
  });
  await response.text();
  const ms = performance.now() - started;
  if (response.status !== 200) throw new Error(`POST /manage answered ${response.status}`);
  return ms;
}

try {
  const json = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
  await fetch(`${base}/api/v1/lists`, { method: 'POST', headers: json, body: JSON.stringify({ slug: 'news', name: 'News', consent_text: 'Yes.' }) });
  const held = Array.from({ length: 20 }, (_, i) => `held${i}@example.org`);
  for (const email of held) {
    await fetch(`${base}/subscribe`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, list: 'news' }) });
    await probe(email); // the first asks for a link; every later one is throttled
  }
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // let the worker send what that queued
  for (let i = 0; i < 50; i += 1) await probe(i % 2 ? held[i % held.length]! : unknown()); // warm-up

  const known: number[] = [];
  const strangers: number[] = [];
  for (let i = 0; i < PROBES; i += 1) {
    known.push(await probe(held[i % held.length]!));
    strangers.push(await probe(unknown()));
  }
  const threshold = (median(known) + median(strangers)) / 2;
  let right = 0;
  for (let i = 0; i < GUESSES; i += 1) {
    const isHeld = Math.random() < 0.5;
    const email = isHeld ? held[i % held.length]! : unknown();
    const times = [await probe(email), await probe(email), await probe(email)];
    if ((median(times) > threshold) === isHeld) right += 1;
  }
  const line = (name: string, values: number[]) =>
    `${name}: median ${median(values).toFixed(2)} ms (p25 ${quantile(values, 0.25).toFixed(2)}, p75 ${quantile(values, 0.75).toFixed(2)})`;
  process.stdout.write(`${line('known, throttled', known)}\n${line('unknown         ', strangers)}\n`
    + `guesses from the median of 3 probes, threshold ${threshold.toFixed(2)} ms: ${right} of ${GUESSES} right\n`);
} finally {
  await service.stop();
  await database.stop();
  await rm(dataDir, { recursive: true, force: true });
}
