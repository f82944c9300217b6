// Soak: the service as production runs it (`node bin/assent.js`, HTTP and mail workers in one
// process, NODE_ENV=production, a real PostgreSQL, SMTP to a real peer) under a steady 200
// signups a second for SOAK_SECONDS (default 600), the link in every confirmation mail
// clicked, and one campaign sending throughout at SEND_RATE. Afterwards: no request failed,
// nothing accepted was lost, every mail arrived exactly once, and the process's memory stayed
// flat (its RSS and heap are sampled and printed).
//
//   npm run soak                       # 10 minutes
//   SOAK_SECONDS=60 npm run soak       # a quick check that the soak itself works
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../src/db/embedded.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { seedConfirmed } from '../helpers/http.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const RATE = Number(process.env.SOAK_RATE ?? 200); // signups a second
/** Every how many signups the link in the mail is clicked (double opt-in is never 100%). */
const CONFIRM_EVERY = Number(process.env.SOAK_CONFIRM_EVERY ?? 2);
const SEND_RATE = 50; // campaign mails a second, the service's own SEND_RATE
const CAMPAIGN_SIZE = Math.round(SEND_RATE * SECONDS * 0.8); // sends for about 80% of the run
// Signups come from this many client addresses in turn: 0.2 a second each, within the default
// SUBSCRIBE_RATE_LIMIT (20/min), which stays on as in production.
const CLIENTS = 1_000;
const KEY = 'soak-api-key-0123456789abcdef';
const SECRET = 'soak-secret-0123456789abcdef0123456789abcdef';
const METRICS_TOKEN = 'soak-metrics-token-0123456789abcdef';
const DRAIN_MS = 240_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const clientIp = (n: number) => `198.18.${Math.floor((n % CLIENTS) / 250)}.${(n % 250) + 1}`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/**
 * An SMTP peer that keeps counts, not mails: 120,000 parsed mails would weigh on this process
 * for nothing. Confirmation links are taken from the raw text.
 */
class CountingSink {
  readonly perRecipient = new Map<string, number>();
  received = 0;
  private readonly server: SMTPServer;
  port = 0;

  constructor(onConfirmation: (to: string, link: string) => void) {
    this.server = new SMTPServer({
      authOptional: true, disabledCommands: ['STARTTLS'], logger: false, closeTimeout: 200,
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          this.received += 1;
          for (const { address } of session.envelope.rcptTo) {
            this.perRecipient.set(address, (this.perRecipient.get(address) ?? 0) + 1);
            if (address.startsWith('soak-') && Number(address.slice(5, address.indexOf('@'))) % CONFIRM_EVERY === 0) void confirmLink(Buffer.concat(chunks)).then((link) => onConfirmation(address, link));
          }
          callback();
        });
      },
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.server.address() as AddressInfo).port;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const LINK = /https:\/\/assent\.test\/confirm\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/;
/** The confirm link: from the raw quoted-printable text where it can be, else parsed. */
async function confirmLink(raw: Buffer): Promise<string> {
  const found = LINK.exec(raw.toString('latin1').replace(/=\r?\n/g, ''));
  if (found) return found[0];
  const parsed = await simpleParser(raw);
  const link = LINK.exec(parsed.text ?? '');
  if (!link) throw new Error('a confirmation mail without a confirm link');
  return link[0];
}

interface Sample {
  second: number;
  rss: number;
  heap: number;
}

let tdb: TestDatabase;
let sink: CountingSink;
let child: ChildProcess;
let logDir: string;
let base: string;
const confirmQueue: { to: string; link: string }[] = [];

beforeAll(async () => {
  tdb = await createTestDatabase();
  sink = new CountingSink((to, link) => confirmQueue.push({ to, link }));
  await sink.start();
  logDir = await mkdtemp(path.join(tmpdir(), 'assent-soak-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const log = createWriteStream(path.join(logDir, 'service.log'));
  child = spawn(process.execPath, ['bin/assent.js'], {
    env: {
      ...process.env, NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), DATABASE_URL: tdb.url,
      SMTP_URL: `smtp://127.0.0.1:${sink.port}`, PUBLIC_URL: 'https://assent.test', TOKEN_SECRETS: SECRET, CONSENT_LOG_KEY: Buffer.alloc(32, 3).toString('base64'),
      ASSENT_API_KEY: KEY, MAIL_FROM: 'News <news@assent.test>', SEND_RATE: String(SEND_RATE), TRUST_PROXY: '1', LOG_LEVEL: 'info',
      METRICS_TOKEN,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const deadline = Date.now() + 60_000;
  while (!(await fetch(`${base}/readyz`).then((r) => r.ok, () => false))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the service did not start: ${await readFile(path.join(logDir, 'service.log'), 'utf8')}`);
    await sleep(200);
  }
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
  await sink?.stop();
  await tdb?.drop();
  if (logDir) await rm(logDir, { recursive: true, force: true });
});

const api = (method: string, route: string, body?: unknown) => fetch(`${base}${route}`, {
  method, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, ...(body !== undefined && { body: JSON.stringify(body) }),
});

/** The service's resident memory (Linux /proc) and V8 heap in use (its own /metrics). */
async function sample(second: number): Promise<Sample> {
  const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
  const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) * 1024;
  const metrics = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
  const heap = Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)?.[1] ?? 0);
  return { second, rss, heap };
}

it(`takes ${RATE} signups a second for ${SECONDS} s with confirmations and a campaign, loses nothing, and keeps its memory flat`, async () => {
  expect((await api('POST', '/api/v1/lists', { slug: 'news', name: 'News', consent_text: 'Send me the news.' })).status).toBe(201);
  expect((await api('POST', '/api/v1/lists', { slug: 'weekly', name: 'Weekly', consent_text: 'Send me the weekly.' })).status).toBe(201);
  await seedConfirmed(tdb, 'weekly', CAMPAIGN_SIZE, { prefix: 'reader' });
  const created = await api('POST', '/api/v1/campaigns', {
    name: 'Soak', list: 'weekly', subject: 'Hello {{ subscriber.email }}',
    mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hello {{ subscriber.email }}, this is {{ list.name }}.</mj-text></mj-column></mj-section></mj-body></mjml>',
  });
  const { id: campaignId } = await created.json() as { id: string };
  expect((await api('POST', `/api/v1/campaigns/${campaignId}/send`)).status).toBe(202);

  const accepted: string[] = [];
  const failures: string[] = [];
  /** Failures by the minute of the run in which they were asked, to tell a bad patch from a trend. */
  const failuresByMinute = new Map<number, number>();
  const failed = (n: number, what: string) => {
    failures.push(what);
    const minute = Math.floor(n / RATE / 60);
    failuresByMinute.set(minute, (failuresByMinute.get(minute) ?? 0) + 1);
  };
  const pending = new Set<Promise<void>>();
  const track = (work: Promise<void>) => {
    pending.add(work);
    void work.finally(() => pending.delete(work));
  };
  const signUp = (n: number) => track((async () => {
    const email = `soak-${n}@example.org`;
    try {
      const response = await fetch(`${base}/subscribe`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': clientIp(n) },
        body: JSON.stringify({ email, list: 'news' }), signal: AbortSignal.timeout(30_000),
      });
      const text = await response.text();
      if (response.status === 202) accepted.push(email);
      else failed(n, `signup ${email}: ${response.status} ${text.slice(0, 200)}`);
    } catch (error) {
      failed(n, `signup ${email}: ${String(error)} ${String((error as Error).cause ?? '')}`);
    }
  })());
  let confirmed = 0;
  const confirm = ({ to, link }: { to: string; link: string }) => track((async () => {
    const n = Number(to.slice(5, to.indexOf('@')));
    try {
      const response = await fetch(link.replace('https://assent.test', base), {
        method: 'POST', headers: { 'x-forwarded-for': clientIp(n) }, signal: AbortSignal.timeout(30_000),
      });
      await response.text();
      if (response.status === 200) confirmed += 1;
      else failed(n, `confirm ${to}: ${response.status}`);
    } catch (error) {
      failed(n, `confirm ${to}: ${String(error)} ${String((error as Error).cause ?? '')}`);
    }
  })());

  // The load: open loop, so a slow answer does not slow the arrivals, as with real visitors.
  const samples: Sample[] = [await sample(0)];
  const started = Date.now();
  let launched = 0;
  let nextSample = 2;
  for (;;) {
    const elapsed = (Date.now() - started) / 1000;
    if (elapsed >= SECONDS) break;
    const due = Math.floor(elapsed * RATE);
    while (launched < due) signUp(launched++);
    while (confirmQueue.length > 0) confirm(confirmQueue.shift()!);
    if (elapsed >= nextSample) {
      samples.push(await sample(Math.round(elapsed)));
      nextSample = elapsed + 2; // after a stall, one sample, not a burst of them
    }
    await sleep(5);
  }
  const loadSeconds = (Date.now() - started) / 1000;
  samples.push(await sample(Math.round(loadSeconds)));

  // Drain: every accepted signup's mail arrives and is clicked, and the campaign finishes.
  const drainDeadline = Date.now() + DRAIN_MS;
  const confirmationsArrived = () => accepted.every((email) => sink.perRecipient.has(email));
  const campaignStatus = async () => (await tdb.query('select status from campaigns where id = $1', [campaignId])).rows[0].status;
  while (pending.size > 0 || confirmQueue.length > 0 || !confirmationsArrived() || (await campaignStatus()) !== 'sent') {
    if (Date.now() > drainDeadline) break;
    while (confirmQueue.length > 0) confirm(confirmQueue.shift()!);
    await sleep(100);
  }
  await Promise.all(pending);

  // Every accepted signup has its subscriber, its request with evidence and its sent mail;
  // every clicked link its confirmation, and no other subscription is confirmed.
  const { rows: [lost] } = await tdb.query(`
    with accepted(email, clicked) as (
      select email, substring(email from '^soak-(\\d+)@')::bigint % $2 = 0 from unnest($1::text[]) email
    ), held as (
      select a.clicked, s.id,
             (select count(*) from consent_events e join consent_evidence v on v.event_id = e.id
              where e.subscriber_id = s.id and e.kind = 'requested') as requested,
             (select count(*) from consent_events e where e.subscriber_id = s.id and e.kind = 'confirmed') as confirmed,
             (select count(*) from outbox o where o.subscriber_id = s.id and o.kind = 'confirmation' and o.status = 'sent') as mails,
             (select status from subscriptions x where x.subscriber_id = s.id) as status
      from accepted a left join subscribers s on s.email = a.email
    )
    select count(*)::int as accepted,
           count(id)::int as subscribers,
           count(*) filter (where requested = 1)::int as requested_events,
           count(*) filter (where mails = 1)::int as mails_sent,
           count(*) filter (where clicked)::int as clicked,
           count(*) filter (where clicked and confirmed = 1 and status = 'confirmed')::int as confirmed,
           count(*) filter (where not clicked and confirmed = 0 and status = 'pending')::int as still_pending
    from held`, [accepted, CONFIRM_EVERY]);
  const { rows: campaign } = await tdb.query(`select status, count(*)::int as n from campaign_messages where campaign_id = $1 group by status`, [campaignId]);
  const log = await readFile(path.join(logDir, 'service.log'), 'utf8');
  const logErrors = log.split('\n').filter((line) => /"level":(50|60)/.test(line));
  const confirmationMails = accepted.map((email) => sink.perRecipient.get(email) ?? 0);
  const readerMails = [...sink.perRecipient].filter(([to]) => to.startsWith('reader'));
  // The first half minute or so fills pools, compiles code and grows V8's heap to its working
  // size; flat means that after it the peaks stop rising.
  const warmUp = Math.min(60, SECONDS / 2);
  const warm = samples.find((s) => s.second >= warmUp) ?? samples[0]!;
  const end = samples.at(-1)!;
  // RSS by its peaks; the heap by its troughs, the live set after a collection (its peaks are
  // only where the next collection happened to start).
  const window = (from: number, to: number) => samples.filter((s) => s.second >= from && s.second <= to && s.heap > 0);
  const summary = (from: number, to: number) => ({
    rss: Math.max(...window(from, to).map((s) => s.rss)), heap: Math.min(...window(from, to).map((s) => s.heap)),
  });
  const early = summary(warmUp, Math.max(SECONDS / 2, warmUp + 5));
  const late = summary(SECONDS * 0.75, SECONDS);

  console.log([
    `soak: ${SECONDS} s at ${RATE} signups/s: ${launched} sent in ${loadSeconds.toFixed(0)} s (${(launched / loadSeconds).toFixed(1)}/s), `
      + `${accepted.length} accepted (202), ${confirmed} confirmed, ${failures.length} errors`,
    `errors by minute of the run: ${JSON.stringify(Object.fromEntries([...failuresByMinute].sort(([a], [b]) => a - b)))}; `
      + `by kind: ${JSON.stringify(Object.entries(failures.reduce<Record<string, number>>((kinds, f) => {
        const kind = f.replace(/soak-\d+@example\.org/, '').replace(/\{.*$/, '').trim();
        kinds[kind] = (kinds[kind] ?? 0) + 1;
        return kinds;
      }, {})))}`,
    `lost: ${JSON.stringify(lost)}`,
    `mails: ${sink.received} received; confirmation mails per accepted signup: ${Math.min(...confirmationMails)}..${Math.max(...confirmationMails)}; `
      + `campaign ${JSON.stringify(campaign)}, ${readerMails.length} readers mailed, at most ${Math.max(0, ...readerMails.map(([, n]) => n))} each`,
    `error log lines: ${logErrors.length}`,
    `memory: RSS at start ${mib(samples[0]!.rss)}, after warm-up (${warm.second} s) ${mib(warm.rss)}, at end ${mib(end.rss)}; `
      + `heap used ${mib(samples[0]!.heap)} / ${mib(warm.heap)} / ${mib(end.heap)}; `
      + `warm-up to half-time: RSS peak ${mib(early.rss)}, heap trough ${mib(early.heap)}; last quarter: RSS peak ${mib(late.rss)}, heap trough ${mib(late.heap)}`,
    `samples (s: RSS, heap), one per 10 s: ${samples.filter((s, i) => i === 0 || Math.floor(s.second / 10) > Math.floor(samples[i - 1]!.second / 10))
      .map((s) => `${s.second}: ${mib(s.rss)}, ${mib(s.heap)}`).join('; ')}`,
    ...failures.slice(0, 10),
    ...logErrors.slice(0, 5),
  ].join('\n'));

  expect(failures).toEqual([]);
  expect(logErrors).toEqual([]);
  expect(accepted).toHaveLength(launched);
  const clicked = Math.ceil(launched / CONFIRM_EVERY);
  expect(lost).toEqual({
    accepted: launched, subscribers: launched, requested_events: launched, mails_sent: launched,
    clicked, confirmed: clicked, still_pending: launched - clicked,
  });
  expect(confirmed).toBe(clicked);
  expect(confirmationMails.every((n) => n === 1)).toBe(true);
  expect(campaign).toEqual([{ status: 'sent', n: CAMPAIGN_SIZE }]);
  expect(readerMails).toHaveLength(CAMPAIGN_SIZE);
  expect(readerMails.every(([, n]) => n === 1)).toBe(true);
  // Flat: the last quarter's RSS peak and heap trough are not above those between warm-up and
  // half-time (with room for GC's timing). A leak of a kilobyte per signup would add 117 MiB in
  // 10 minutes.
  expect(late.rss).toBeLessThan(early.rss * 1.2 + 32 * 1024 * 1024);
  expect(late.heap).toBeLessThan(early.heap * 1.2 + 32 * 1024 * 1024);
});
