// Campaign templates that cannot render, played for real: refused at creation (a trial
// compile and render in a thread of its own), answered with 422 by preview, and at send
// each such message ends failed with its reason, or is tried again when only the time limit
// stopped it, while every other message of the batch goes; a worker process under the
// production heap cap lives through all of it.
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { SANDBOX_LIMITS, TemplateSandbox } from '../src/campaigns/sandbox.js';
import { MAX_MJML_CHARS } from '../src/campaigns/templates.js';
import { createApp } from '../src/http/app.js';
import { smtpSender } from '../src/mail/transport.js';
import { CampaignWorker } from '../src/workers/campaign.js';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed, snapshotAllTables } from './helpers/http.js';
import { childLogFd } from './helpers/logs.js';
import { API_KEY, TEST_SECRET } from './helpers/service.js';
import { until } from './helpers/wait.js';

const t = useTestService({ smtp: true, lists: ['news', 'preview', 'batch', 'slow', 'crashed', 'process'] });

const wrap = (liquid: string) => `<mjml><mj-body><mj-section><mj-column><mj-text>${liquid}</mj-text></mj-column></mj-section></mj-body></mjml>`;
const HONEST = wrap('Hello {{ subscriber.first_name | default: "there" }}');
/** Runs away for one recipient only, so it passes the trial render (the sample is "Sample"). */
const RUNAWAY_FOR_LOOP = wrap('{% if subscriber.first_name == "Loop" %}{% for i in (1..20000000) %}{% endfor %}{% endif %}Hi');

async function create(list: string, body: { subject?: string; mjml?: string }, app = t.service.app) {
  return app.request('/api/v1/campaigns', {
    method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Templates', list, subject: 'Hello', mjml: HONEST, ...body }),
  });
}

async function started(list: string, body: { subject?: string; mjml?: string } = {}): Promise<string> {
  const response = await create(list, body);
  expect(response.status, await response.clone().text()).toBe(201);
  const { id } = await response.json();
  expect((await t.service.api('POST', `/api/v1/campaigns/${id}/send`)).status).toBe(202);
  return id;
}

/** A template stored before creation tried templates: written as an earlier version left it. */
async function storeTemplate(id: string, html: string): Promise<void> {
  await t.tdb.query('update campaigns set html_template = $2 where id = $1', [id, html]);
}

const messages = async (id: string) => (await t.tdb.query(
  `select s.email, m.status, m.attempts, m.last_error from campaign_messages m join subscribers s on s.id = m.subscriber_id
   where m.campaign_id = $1 order by s.email`, [id])).rows as { email: string; status: string; attempts: number; last_error: string | null }[];

describe('creating a campaign whose template cannot render', () => {
  const REFUSED: [what: string, body: { subject?: string; mjml?: string }, reason: RegExp][] = [
    ['{% include %} of a server file', { mjml: wrap("{% include '/etc/passwd' %}") }, /\{% include %\} is not available/],
    ['{% render %} of a server file', { mjml: wrap("{% render '/etc/passwd' %}") }, /\{% render %\} is not available/],
    ['{% layout %} of a server file', { mjml: wrap("{% layout '/etc/passwd' %}x") }, /\{% layout %\} is not available/],
    ['a loop of 100,000,000', { mjml: wrap('{% for i in (1..100000000) %}x{% endfor %}') }, /memory alloc limit exceeded/],
    ['an empty loop of 20,000,000 (540 MB)', { mjml: wrap('{% for i in (1..20000000) %}{% endfor %}') }, /memory alloc limit exceeded/],
    ['1,700 × 1,000 nested loops', { mjml: wrap('{% for i in (1..1700) %}{% for j in (1..1000) %}x{% endfor %}{% endfor %}') }, /loop limit exceeded/],
    ['text doubled by {% capture %}', { mjml: wrap('{% assign s = "x" %}{% for i in (1..40) %}{% capture s %}{{ s }}{{ s }}{% endcapture %}{% endfor %}{{ s }}') }, /limit exceeded/],
    ['2.7 million characters of output', { mjml: wrap(`{% for i in (1..9000) %}${'x'.repeat(300)}{% endfor %}`) }, /output limit exceeded/],
    ['a runaway loop in the subject', { subject: '{% for i in (1..100000000) %}x{% endfor %}' }, /memory alloc limit exceeded/],
    ['9,000 nested <div>', { mjml: wrap(`${'<div>'.repeat(9_000)}x${'</div>'.repeat(9_000)}`) }, /Maximum call stack size exceeded/],
    ['3,000 nested {% if %}', { mjml: wrap(`${'{% if true %}'.repeat(3_000)}x${'{% endif %}'.repeat(3_000)}`) }, /Maximum call stack size exceeded/],
  ];

  it.each(REFUSED)('refuses %s with 422 and the reason, and changes nothing', async (_what, body, reason) => {
    const before = await snapshotAllTables(t.tdb);
    const response = await create('news', body);
    const answer = await response.json();
    expect(response.status, JSON.stringify(answer)).toBe(422);
    expect(answer.error.code).toBe('template_invalid');
    expect(answer.error.details.map((detail: { message: string }) => detail.message).join('\n')).toMatch(reason);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
  });

  it('refuses MJML over 100,000 characters with 400, before compiling it', async () => {
    const response = await create('news', { mjml: wrap('x'.repeat(MAX_MJML_CHARS)) });
    expect(response.status).toBe(400);
    expect((await response.json()).error.fields).toEqual({ mjml: `at most ${MAX_MJML_CHARS} characters` });
  });

  it('stops a compile that would take a minute (CSS inlined into 2,000 elements) at the time limit with 422, answering /healthz all along', async () => {
    // Each nested :has() rule costs about 66 ms on an idle machine (2026-12-02): a thousand are
    // four times the limit. Plain descendant rules were once 45 s and are now 8, under it.
    const css = Array.from({ length: 1_000 }, (_, i) => `*:has(*:has(.c${i})) span { color: red }`).join('\n');
    const mjml = `<mjml><mj-head><mj-style inline="inline">${css}\np span { color: red }</mj-style></mj-head>`
      + `<mj-body><mj-section><mj-column><mj-text>${'<p><span>x</span></p>'.repeat(2_000)}</mj-text></mj-column></mj-section></mj-body></mjml>`;
    const before = await snapshotAllTables(t.tdb);
    let answered = false;
    const creating = create('news', { mjml }).finally(() => { answered = true; });
    // Ask for /healthz over and over while it compiles: each is answered, the loop is free.
    let healthy = 0;
    while (!answered) {
      expect((await t.service.app.request('/healthz')).status).toBe(200);
      healthy += 1;
      await sleep(50);
    }
    const response = await creating;
    const answer = await response.json();
    expect(response.status, JSON.stringify(answer)).toBe(422);
    expect(answer.error.details[0].message).toBe(`compiling and rendering the template took longer than ${SANDBOX_LIMITS.timeoutMs / 1000} s`);
    expect(healthy).toBeGreaterThan(20);
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
    // the thread it ran in was ended; the next campaign gets a fresh one
    expect((await create('news', {})).status).toBe(201);
  }, 120_000);

  it('ends the thread, not the service, when a template needs more heap than the thread has', async () => {
    // a heap the longest MJML does not fit in, and time enough that the heap is what stops it
    const sandbox = new TemplateSandbox({ ...SANDBOX_LIMITS, heapMb: 32, timeoutMs: 90_000 });
    const app = createApp({ ...t.service.deps, templateSandbox: sandbox });
    const section = '<mj-section><mj-column><mj-text>Hello {{ subscriber.first_name }}, here is the news of the week.</mj-text>'
      + '<mj-button href="https://shop.example/?ref={{ affinity }}">Shop</mj-button><mj-image src="https://img.example/a.png" alt="x" /></mj-column></mj-section>';
    const mjml = `<mjml><mj-body>${section.repeat(Math.floor(MAX_MJML_CHARS / section.length) - 1)}</mj-body></mjml>`;
    const before = await snapshotAllTables(t.tdb);
    const response = await create('news', { mjml }, app);
    const answer = await response.json();
    expect(response.status, JSON.stringify(answer)).toBe(422);
    expect(answer.error.details[0].message).toBe('compiling and rendering the template needs more than 32 MB');
    expect(await snapshotAllTables(t.tdb)).toEqual(before);
    expect((await app.request('/healthz')).status).toBe(200);
    // The service goes on creating campaigns (through its own sandbox: on Node 26 even a small
    // template needs more than this test's 32 MB thread, so that one cannot show it).
    const after = await create('news', {});
    expect(after.status, await after.text()).toBe(201);
    await sandbox.close();
  }, 120_000);
});

describe('preview of a template that cannot render for this subscriber', () => {
  it('answers 422 with the reason, never 500; for others it renders', async () => {
    const [loop] = await seedConfirmed(t.tdb, 'preview', 1, { prefix: 'preview-loop', firstName: 'Loop', level: 'known' });
    const [other] = await seedConfirmed(t.tdb, 'preview', 1, { prefix: 'preview-other', firstName: 'Ada', level: 'known' });
    const created = await create('preview', { mjml: RUNAWAY_FOR_LOOP });
    expect(created.status).toBe(201);
    const { id } = await created.json();
    const preview = (subscriber: string) => t.service.api('POST', `/api/v1/campaigns/${id}/preview`, { subscriber_id: subscriber });

    const refused = await preview(loop!);
    const answer = await refused.json();
    expect(refused.status, JSON.stringify(answer)).toBe(422);
    expect(answer.error).toMatchObject({ code: 'template_invalid', details: [expect.objectContaining({ source: 'html', message: 'memory alloc limit exceeded' })] });
    expect((await preview(other!)).status).toBe(200);

    await storeTemplate(id, "{% include '/etc/passwd' %}");
    const unparsed = await preview(other!);
    expect(unparsed.status).toBe(422);
    expect(await unparsed.text()).not.toContain('root:');
  });
});

describe('sending a template that cannot render', () => {
  const worker = (options: { maxAttempts?: number } = {}) =>
    new CampaignWorker({ ...t.service.deps, sender: smtpSender(t.smtp.url, {}) }, { retryBaseMs: 0, ...options });

  it('fails that message with the reason at once, and sends every other message of the batch', async () => {
    await seedConfirmed(t.tdb, 'batch', 1, { prefix: 'batch-loop', firstName: 'Loop', level: 'known' });
    await seedConfirmed(t.tdb, 'batch', 2, { prefix: 'batch-ada', firstName: 'Ada', level: 'known' });
    const honest = await started('batch');
    const runaway = await started('batch', { mjml: RUNAWAY_FOR_LOOP });
    const unparsable = await started('batch');
    await storeTemplate(unparsable, "{% include '/etc/passwd' %}");
    const since = t.smtp.received.length;

    expect(await worker().runOnce()).toBe(9);
    expect(await messages(honest)).toEqual([
      { email: 'batch-ada1@example.org', status: 'sent', attempts: 1, last_error: null },
      { email: 'batch-ada2@example.org', status: 'sent', attempts: 1, last_error: null },
      { email: 'batch-loop1@example.org', status: 'sent', attempts: 1, last_error: null },
    ]);
    expect(await messages(runaway)).toEqual([
      { email: 'batch-ada1@example.org', status: 'sent', attempts: 1, last_error: null },
      { email: 'batch-ada2@example.org', status: 'sent', attempts: 1, last_error: null },
      { email: 'batch-loop1@example.org', status: 'failed', attempts: 1, last_error: expect.stringMatching(/^the html cannot be rendered: memory alloc limit exceeded \(line \d+\)$/) },
    ]);
    for (const message of await messages(unparsable)) {
      expect(message).toMatchObject({ status: 'failed', attempts: 1, last_error: expect.stringMatching(/^the html template does not parse: \{% include %\} is not available/) });
    }
    await t.smtp.waitFor(since + 5);
    expect(t.smtp.received.length - since).toBe(5);
    for (const id of [honest, runaway, unparsable]) {
      expect((await t.tdb.query('select status from campaigns where id = $1', [id])).rows[0].status).toBe('sent');
    }
  });

  it('tries again a mail stopped by the time limit alone, and fails it after maxAttempts', async () => {
    await seedConfirmed(t.tdb, 'slow', 1, { prefix: 'slow' });
    const honest = await started('slow');
    const slow = await started('slow');
    // 10,000 iterations of 4,000 nodes: work for seconds, within every other limit.
    await storeTemplate(slow, `{% for i in (1..10000) %}${'{% if false %}{% endif %}'.repeat(4_000)}{% endfor %}`);
    const sender = worker({ maxAttempts: 2 });

    expect(await sender.runOnce()).toBe(2);
    expect(await messages(honest)).toMatchObject([{ status: 'sent' }]);
    expect(await messages(slow)).toEqual([
      { email: 'slow1@example.org', status: 'queued', attempts: 1, last_error: 'the html cannot be rendered: template render limit exceeded (line 1)' },
    ]);
    expect(await sender.runOnce()).toBe(1);
    expect(await messages(slow)).toEqual([
      { email: 'slow1@example.org', status: 'failed', attempts: 2, last_error: 'the html cannot be rendered: template render limit exceeded (line 1)' },
    ]);
    expect(await sender.runOnce()).toBe(0);
  });

  it('fails, unsent, a message claimed more often than maxAttempts: each attempt died with it', async () => {
    await seedConfirmed(t.tdb, 'crashed', 2, { prefix: 'crashed' });
    const id = await started('crashed');
    // what a worker killed at every attempt leaves: claims counted, no outcome recorded
    await t.tdb.query(`update campaign_messages set attempts = 3 from subscribers s
      where campaign_id = $1 and s.id = subscriber_id and s.email = 'crashed1@example.org'`, [id]);
    const since = t.smtp.received.length;
    expect(await worker({ maxAttempts: 3 }).runOnce()).toBe(2);
    expect(await messages(id)).toEqual([
      { email: 'crashed1@example.org', status: 'failed', attempts: 4, last_error: 'no outcome in 3 attempts: each ended with the worker stopping or dying' },
      { email: 'crashed2@example.org', status: 'sent', attempts: 1, last_error: null },
    ]);
    await t.smtp.waitFor(since + 1);
    expect(t.smtp.received.slice(since).map((mail) => mail.envelopeTo)).toEqual([['crashed2@example.org']]);
  });
});

describe('a worker process under the production heap cap (128 MB)', () => {
  const children: ChildProcess[] = [];
  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.once('exit', resolve));
      }
    }
  });

  it('delivers an honest campaign beside hostile ones, fails each hostile message with its reason, and lives', async () => {
    await seedConfirmed(t.tdb, 'process', 2, { prefix: 'process-loop', firstName: 'Loop', level: 'known' });
    await seedConfirmed(t.tdb, 'process', 60, { prefix: 'process-ada', firstName: 'Ada', level: 'known' });
    const honest = await started('process');
    // the one that killed the process (exit 134) at every retry, as an earlier version stored it
    const killer = await started('process');
    await storeTemplate(killer, '{% for i in (1..20000000) %}{% endfor %}');
    const runaway = await started('process', { mjml: RUNAWAY_FOR_LOOP });
    const since = t.smtp.received.length;

    const child = spawn(process.execPath, ['bin/assent.js', 'worker'], {
      env: {
        ...process.env, NODE_ENV: 'development', DATABASE_URL: t.tdb.url, SMTP_URL: t.smtp.url, TOKEN_SECRETS: TEST_SECRET,
        PUBLIC_URL: 'https://assent.test', MAIL_FROM: 'News <news@assent.test>', LOG_LEVEL: 'debug', PORT: '0',
        NODE_OPTIONS: '--max-old-space-size=128',
      },
      stdio: ['ignore', childLogFd('worker'), 'inherit'],
    });
    children.push(child);
    const finished = async () => {
      const { rows } = await t.tdb.query(`select count(*)::int as n from campaigns where id = any($1) and status = 'sent'`, [[honest, killer, runaway]]);
      return rows[0].n === 3;
    };
    const ended = await until('the three campaigns to finish, or the worker to die', async () =>
      (child.exitCode !== null || child.signalCode !== null ? `died: ${child.exitCode ?? child.signalCode}` : (await finished()) && 'finished'), 120_000);
    expect(ended).toBe('finished');

    expect((await messages(honest)).every((message) => message.status === 'sent' && message.attempts === 1)).toBe(true);
    expect(new Set((await messages(killer)).map((message) => `${message.status} ${message.attempts} ${message.last_error}`)))
      .toEqual(new Set(['failed 1 the html cannot be rendered: memory alloc limit exceeded (line 1)']));
    const runawayOutcomes = await messages(runaway);
    const runawayReason = expect.stringMatching(/^the html cannot be rendered: memory alloc limit exceeded \(line \d+\)$/);
    expect(runawayOutcomes.filter((message) => message.status === 'failed')).toEqual([
      { email: 'process-loop1@example.org', status: 'failed', attempts: 1, last_error: runawayReason },
      { email: 'process-loop2@example.org', status: 'failed', attempts: 1, last_error: runawayReason },
    ]);
    expect(runawayOutcomes.filter((message) => message.status === 'sent')).toHaveLength(60);
    await t.smtp.waitFor(since + 62 + 60);
    const perRecipient = new Map<string, number>();
    for (const mail of t.smtp.received.slice(since)) perRecipient.set(mail.envelopeTo.join(), (perRecipient.get(mail.envelopeTo.join()) ?? 0) + 1);
    expect(perRecipient.get('process-loop1@example.org')).toBe(1); // the honest campaign's mail only
    expect(t.smtp.received.length - since).toBe(62 + 60);

    child.kill('SIGTERM');
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(0);
  }, 180_000);
});
