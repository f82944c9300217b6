// The one table every run prints, writes to bench/results.md and (with --readme) puts in the
// README's "## Benchmarks" section, between two markers.
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import type { AudienceResult } from './audience.js';
import type { ConsentLogResult } from './consent-log.js';
import { type IntegrationsResult, integrationsRows } from './integrations.js';
import { fixed, mb, ROOT } from './lib.js';
import type { SendResult } from './send.js';
import type { SignupResult } from './signup.js';

export interface RenderResult {
  renderUs: number;
  compileUs: number;
  bytes: number;
}

export interface Results {
  signup: SignupResult;
  send: SendResult;
  render: RenderResult;
  audience: AudienceResult;
  consentLog: ConsentLogResult;
  integrations: IntegrationsResult;
  postgres: string;
  totalSeconds: number;
  /** The 1-minute load average when the run started: the figures assume an otherwise idle machine. */
  loadBefore: number;
}

// The consent log may cost a signup at most this much more CPU than before it (issue 17).
const CONSENT_LOG_CPU_LIMIT = 1.05;
const SENDER_RSS_LIMIT = 200 * 1024 * 1024;
// A million recipients' ids alone would be over 50 MB in a JS heap; the call may grow by less.
const AUDIENCE_RSS_SLACK = 32 * 1024 * 1024;
const verdict = (ok: boolean, target: string) => `${target} ${ok ? '✓' : '✗ missed'}`;
const total = (cpuMs: Record<string, number>) => Object.values(cpuMs).reduce((sum, ms) => sum + ms, 0);
/** `1.92 app + 1.40 postgres = 3.32 ms`, in the order given. */
const cpu = (cpuMs: Record<string, number>, names: Record<string, string>) =>
  `${Object.entries(names).map(([key, name]) => `${fixed(cpuMs[key] ?? 0, 2)} ${name}`).join(' + ')} = ${fixed(total(cpuMs), 2)} ms`;

export function machine(postgres: string): string {
  return `${availableParallelism()} CPUs (nproc), ${cpus()[0]?.model ?? 'unknown CPU'}, Node.js ${process.version}, ${postgres}`;
}

export function table(r: Results): string {
  const { signup, send, render, audience, consentLog: log } = r;
  const s = signup.service;
  const b = signup.baseline;
  const signupRatio = s.requestsPerSecond / b.requestsPerSecond;
  const sendRatio = send.mailsPerSecond / send.ceiling.mailsPerSecond;
  const c = signup.check;
  const rows = [
    ['part', 'measure', 'assent', 'baseline or ceiling', 'ratio', 'target'],
    ['---', '---', '---', '---', '---', '---'],
    ['signup: JSON, 64 connections, 20 s', 'requests/s', fixed(s.requestsPerSecond), `${fixed(b.requestsPerSecond)} (bare Hono route, one INSERT)`,
      fixed(signupRatio, 2), verdict(signupRatio >= 0.5, '≥ 0.5')],
    ['', 'CPU per signup', cpu(s.cpuMs, { app: 'assent', postgres: 'PostgreSQL', sink: 'sink' }),
      cpu(b.cpuMs, { app: 'route', postgres: 'PostgreSQL', sink: 'sink' }), fixed(total(b.cpuMs) / total(s.cpuMs), 2), ''],
    ...(signup.before ? [['', `CPU per signup, ${signup.before.label}`, cpu(s.cpuMs, { app: 'assent', postgres: 'PostgreSQL', sink: 'sink' }),
      cpu(signup.before.result.cpuMs, { app: 'assent', postgres: 'PostgreSQL', sink: 'sink' }), `${fixed(total(s.cpuMs) / total(signup.before.result.cpuMs), 2)} (now / before)`,
      verdict(total(s.cpuMs) / total(signup.before.result.cpuMs) <= CONSENT_LOG_CPU_LIMIT, `≤ ${CONSENT_LOG_CPU_LIMIT}`)]] : []),
    ['', 'latency p50 / p99', `${s.p50Ms} / ${s.p99Ms} ms`, `${b.p50Ms} / ${b.p99Ms} ms`, '', ''],
    ['', 'errors / non-2xx', `${s.errors} / ${s.non2xx}`, `${b.errors} / ${b.non2xx}`, '', verdict(s.errors === 0 && s.non2xx === 0, '0 / 0')],
    ['', 'rows after the run', `${fixed(c.accepted)} accepted (warm-up included) → ${fixed(c.subscribers)} subscribers `
      + `(${fixed(c.subscribers - c.accepted)} more: in flight when the load stopped), ${fixed(c.events)} consent events, `
      + `${fixed(c.mails)} outbox mails, ${c.missing} incomplete`, '', '', verdict(c.ok, 'each accepted signup complete')],
    [`send: campaign to ${fixed(send.recipients)}, pool of ${send.poolSize}`, 'mails/s', `${fixed(send.mailsPerSecond)} (${fixed(send.sent)} in ${fixed(send.seconds, 1)} s)`,
      `${fixed(send.ceiling.mailsPerSecond)} (nodemailer pool, prebuilt ${fixed(send.messageBytes)}-byte messages)`,
      fixed(sendRatio, 2), verdict(sendRatio >= 0.8, '≥ 0.8')],
    ['', 'CPU per mail', cpu(send.cpuMs, { worker: 'worker', postgres: 'PostgreSQL', sink: 'sink' }),
      cpu(send.ceiling.cpuMs, { sender: 'sender', sink: 'sink' }), fixed(total(send.ceiling.cpuMs) / total(send.cpuMs), 2), ''],
    ['', 'peak RSS', `${mb(send.workerPeakRss)} (assent worker)`, `${mb(send.ceiling.maxRssBytes)}`, '', ''],
    ['render: per recipient vs once per campaign', 'µs', `${fixed(render.renderUs)} µs (links, context, Liquid, MIME; ${fixed(render.bytes)} bytes)`,
      `${fixed(render.compileUs)} µs (MJML compile)`, `1 compile = ${fixed(render.compileUs / render.renderUs)} renders`, ''],
    [`audience: list of ${fixed(audience.subscribers)}`, 'fix the audience (POST …/send)', `${fixed(audience.fixSeconds, 1)} s for ${fixed(audience.audience)} recipients`,
      '', '', ''],
    ['', 'serve process RSS', `${mb(audience.serveRssBefore)} before, ${mb(audience.servePeakRss)} peak during the call`, '', '',
      verdict(audience.servePeakRss - audience.serveRssBefore < AUDIENCE_RSS_SLACK, 'audience never in memory')],
    ['', 'GET /campaigns/{id} (counts)', `${fixed(audience.statusReadMs)} ms`, '', '', ''],
    ['', 'fix with a segment and the terms rule', `${fixed(audience.segmented.fixSeconds, 1)} s for ${fixed(audience.segmented.audience)} recipients`,
      `${fixed(audience.fixSeconds, 1)} s (plain)`, fixed(audience.segmented.fixSeconds / audience.fixSeconds, 2),
      verdict(audience.segmented.fixSeconds <= 1.5 * audience.fixSeconds, '≤ 1.5× plain')],
    ['', 'POST /campaigns/{id}/audience (segment, terms)', `${fixed(audience.segmented.countMs)} ms`, '', '',
      verdict(audience.segmented.countMs < 1000, '< 1 s')],
    ['', 'sender on the million, 60 s', `${fixed(audience.sender.mailsPerSecond)} mails/s, peak RSS ${mb(audience.sender.peakRss)}`, '', '',
      verdict(audience.sender.peakRss < SENDER_RSS_LIMIT && send.workerPeakRss < SENDER_RSS_LIMIT, '< 200 MB')],
    [`consent log: ${fixed(log.events)} events`, 'sequenced: leaves, tiles, checkpoint (events/s)', `${fixed(log.events / log.sequenceSeconds)} (${fixed(log.sequenceSeconds, 1)} s)`,
      `${fixed(log.events / log.insertSeconds)} (the same events written by one INSERT … SELECT)`, fixed(log.insertSeconds / log.sequenceSeconds, 2), ''],
    ['', `inclusion proof, tree of ${fixed(log.treeSize)} (µs, over HTTP's code path minus HTTP)`, `${fixed(log.inclusionUs)} µs`,
      `${fixed(log.lookupUs)} µs (one consent event read by primary key)`, fixed(log.lookupUs / log.inclusionUs, 2), ''],
    ['', 'consistency proof to the whole tree (µs)', `${fixed(log.consistencyUs)} µs`, `${fixed(log.lookupUs)} µs (same)`, fixed(log.lookupUs / log.consistencyUs, 2), ''],
    ...integrationsRows(r.integrations),
  ];
  return rows.map((row) => `| ${row.join(' | ')} |`).join('\n');
}

export function markdown(r: Results): string {
  return [
    `Measured with \`npm run bench\` on ${machine(r.postgres)}; the whole run took ${fixed(r.totalSeconds / 60, 1)} minutes `
      + `(load average ${fixed(r.loadBefore, 1)} when it started).`,
    'Every ratio compares two runs on the same machine in the same run.',
    '',
    table(r),
    '',
  ].join('\n');
}

const BEGIN = '<!-- bench results: npm run bench -- --readme rewrites from here -->';
const END = '<!-- bench results end -->';

/** bench/results.md always; with `readme`, also the README between the markers in its "## Benchmarks" section. */
export function writeResults(text: string, options: { readme: boolean }): void {
  writeFileSync(path.join(ROOT, 'bench/results.md'), `# Benchmark results\n\n${text}`);
  if (!options.readme) return;
  const readmePath = path.join(ROOT, 'README.md');
  const readme = readFileSync(readmePath, 'utf8');
  const section = readme.indexOf('## Benchmarks\n');
  const start = readme.indexOf(BEGIN, section);
  const end = readme.indexOf(END, start);
  if (section < 0 || start < 0 || end < 0) throw new Error(`README.md's "## Benchmarks" section lacks the markers ${BEGIN} … ${END}`);
  writeFileSync(readmePath, `${readme.slice(0, start + BEGIN.length)}\n${text}\n${readme.slice(end)}`);
}
