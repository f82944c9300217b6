// Campaign workers as separate processes (`assent worker`) sharing one PostgreSQL: two share
// a campaign with no duplicate; one stopped with SIGTERM mid-campaign (a deploy) gives its
// claims back and a restart finishes exactly once; one killed with SIGKILL loses nothing.
import { type ChildProcess, spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed } from './helpers/http.js';
import { childLogFd } from './helpers/logs.js';
import { TEST_SECRET } from './helpers/service.js';
import { until } from './helpers/wait.js';
import { DEFAULT_CAMPAIGN_OPTIONS } from '../src/workers/campaign.js';

const t = useTestService({ smtp: true, lists: ['shared', 'killed', 'deploy'] });
const MJML = '<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ subscriber.email }}</mj-text></mj-column></mj-section></mj-body></mjml>';
const children: ChildProcess[] = [];

function startWorker(): ChildProcess {
  const child = spawn(process.execPath, ['bin/assent.js', 'worker'], {
    env: {
      ...process.env, NODE_ENV: 'development', DATABASE_URL: t.tdb.url, SMTP_URL: t.smtp.url, TOKEN_SECRETS: TEST_SECRET,
      PUBLIC_URL: 'https://assent.test', MAIL_FROM: 'News <news@assent.test>', LOG_LEVEL: 'debug', PORT: '0',
    },
    stdio: ['ignore', childLogFd('worker'), 'inherit'],
  });
  children.push(child);
  return child;
}

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
});

async function startCampaign(list: string): Promise<string> {
  const created = await t.service.api('POST', '/api/v1/campaigns', { name: list, list, subject: 'Hello', mjml: MJML });
  const { id } = await created.json();
  expect((await t.service.api('POST', `/api/v1/campaigns/${id}/send`)).status).toBe(202);
  return id;
}


const campaignStatus = async (id: string) => (await t.tdb.query('select status from campaigns where id = $1', [id])).rows[0].status;

function perRecipient(since: number, prefix: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const mail of t.smtp.received.slice(since)) {
    const to = mail.envelopeTo[0]!;
    if (to.startsWith(prefix)) counts.set(to, (counts.get(to) ?? 0) + 1);
  }
  return counts;
}

// Child processes sending hundreds of mails: on two busy cores that can take more than vitest's
// default 30 s. No time is asserted by the timeout; the 10 s shutdown bound is asserted below.
describe('worker processes', { timeout: 120_000 }, () => {
  it('two share one campaign and send no mail twice', async () => {
    await seedConfirmed(t.tdb, 'shared', 400, { prefix: 'shared' });
    t.smtp.delayMs = 2;
    const before = t.smtp.received.length;
    const id = await startCampaign('shared');
    startWorker();
    startWorker();
    await until('the campaign to be sent', async () => (await campaignStatus(id)) === 'sent');
    t.smtp.delayMs = 0;
    const counts = perRecipient(before, 'shared');
    expect(counts.size).toBe(400);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
  });

  it('one killed with SIGKILL mid-campaign loses nothing; the next takes over once the lease runs out', async () => {
    await seedConfirmed(t.tdb, 'killed', 300, { prefix: 'killed' });
    t.smtp.delayMs = 10;
    const before = t.smtp.received.length;
    const id = await startCampaign('killed');
    const doomed = startWorker();
    await until('some mails to arrive', async () => perRecipient(before, 'killed').size >= 40);
    doomed.kill('SIGKILL');
    await new Promise((resolve) => doomed.once('exit', resolve));
    const { rows: held } = await t.tdb.query(`select count(*)::int as n from campaign_messages where campaign_id = $1 and locked_by is not null and status = 'queued'`, [id]);
    expect(held[0].n).toBeGreaterThan(0);
    // the dead worker's leases run out (5 minutes in production; moved on here)
    await t.tdb.query(`update campaign_messages set locked_until = now() - interval '1 second' where campaign_id = $1 and locked_by is not null`, [id]);
    t.smtp.delayMs = 0;
    startWorker();
    await until('the campaign to be sent', async () => (await campaignStatus(id)) === 'sent');

    const counts = perRecipient(before, 'killed');
    const duplicates = [...counts.values()].filter((n) => n > 1).length;
    expect(counts.size).toBe(300); // nothing lost
    // at most the sends of the transactions open when it died went twice: its concurrency (5)
    // times the sends one transaction covers (10)
    const { concurrency, sendsPerTransaction } = DEFAULT_CAMPAIGN_OPTIONS;
    expect(duplicates).toBeLessThanOrEqual(concurrency * sendsPerTransaction);
    const { rows } = await t.tdb.query(`select status, count(*)::int as n from campaign_messages where campaign_id = $1 group by status`, [id]);
    expect(rows).toEqual([{ status: 'sent', n: 300 }]);
  });

  it('one stopped with SIGTERM mid-campaign exits within 10 s, gives its claims back, and a restart sends each mail exactly once', async () => {
    await seedConfirmed(t.tdb, 'deploy', 1000, { prefix: 'deploy' });
    t.smtp.delayMs = 10;
    const before = t.smtp.received.length;
    const id = await startCampaign('deploy');
    const first = startWorker();
    await until('some mails to arrive', async () => perRecipient(before, 'deploy').size >= 150);
    const signalled = Date.now();
    first.kill('SIGTERM');
    const code = await new Promise((resolve) => first.once('exit', resolve));
    expect(code).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(10_000);

    const { rows: left } = await t.tdb.query(`select status, count(*)::int as n, count(locked_by)::int as held from campaign_messages where campaign_id = $1 group by status order by status`, [id]);
    const queued = left.find((row) => row.status === 'queued');
    expect(queued?.n).toBeGreaterThan(0); // it really stopped mid-campaign
    expect(left.every((row) => row.held === 0)).toBe(true); // every claim given back, no lease to wait out
    // every mail it marked sent reached the relay, and nothing it did not mark
    const sentBefore = left.find((row) => row.status === 'sent')?.n;
    expect(perRecipient(before, 'deploy').size).toBe(sentBefore);

    t.smtp.delayMs = 0;
    startWorker();
    await until('the campaign to be sent', async () => (await campaignStatus(id)) === 'sent');
    const counts = perRecipient(before, 'deploy');
    expect(counts.size).toBe(1000);
    expect([...counts.values()].filter((n) => n !== 1)).toEqual([]);
  });
});
