// The transactional outbox: nothing accepted is lost when SMTP is down, temporary failures
// come back, permanent ones are recorded, and workers never send a row twice.
import { beforeEach, describe, expect, it } from 'vitest';
import { smtpSender } from '../src/mail/transport.js';
import { OutboxWorker } from '../src/workers/outbox.js';
import { useTestService } from './helpers/fixture.js';
import { createTestService } from './helpers/service.js';
import { postJson } from './helpers/http.js';

const t = useTestService({ smtp: true, lists: ['news'] });
beforeEach(async () => {
  t.smtp.refuse = undefined;
  await t.tdb.query(`update outbox set status = 'sent' where status = 'queued'`);
});

const rowsFor = async (emails: string[]) =>
  (await t.tdb.query('select recipient, status, attempts, last_error, smtp_response from outbox where recipient = any($1) order by id', [emails])).rows;

describe('SMTP down, then up', () => {
  it('keeps the mail queued while the relay refuses connections, and sends it once it is back', async () => {
    await t.smtp.stop();
    const response = await postJson(t.service, { email: 'patient@example.org', list: 'news' });
    expect(response.status).toBe(202);
    expect(await t.service.worker.runOnce()).toBe(1);
    let [row] = await rowsFor(['patient@example.org']);
    expect(row).toMatchObject({ status: 'queued', attempts: 1 });
    expect(row.last_error).toMatch(/ECONNREFUSED|connect/i);
    expect(await t.service.worker.runOnce()).toBe(1);

    await t.smtp.restart();
    const count = t.smtp.received.length;
    expect(await t.service.worker.runOnce()).toBe(1);
    await t.smtp.waitFor(count + 1);
    [row] = await rowsFor(['patient@example.org']);
    expect(row).toMatchObject({ status: 'sent', attempts: 3, last_error: null });
    expect(row.smtp_response).toMatch(/^250/);
    expect(t.smtp.received.filter((mail) => mail.envelopeTo[0] === 'patient@example.org')).toHaveLength(1);
  });

  it('retries a 421 and sends once the relay accepts', async () => {
    t.smtp.refuse = { code: 421, message: 'Try again later' };
    await postJson(t.service, { email: 'busy@example.org', list: 'news' });
    await t.service.worker.runOnce();
    expect((await rowsFor(['busy@example.org']))[0]).toMatchObject({ status: 'queued', last_error: expect.stringContaining('421') });
    t.smtp.refuse = undefined;
    await t.service.worker.runOnce();
    expect((await rowsFor(['busy@example.org']))[0]).toMatchObject({ status: 'sent' });
  });

  it('marks a 5xx answer failed at once and keeps the answer', async () => {
    // as real relays do, the refusal names the address: the log filter must tag it
    t.smtp.refuse = { code: 550, message: '5.1.1 <nobody@example.org>: No such user here' };
    await postJson(t.service, { email: 'nobody@example.org', list: 'news' });
    await t.service.worker.runOnce();
    expect((await rowsFor(['nobody@example.org']))[0]).toMatchObject({ status: 'failed', attempts: 1, last_error: expect.stringContaining('No such user here') });
    expect(await t.service.worker.runOnce()).toBe(0);
  });

  it('waits out the backoff before trying again', async () => {
    const slow = await createTestService(t.tdb.db, { smtpUrl: 'smtp://127.0.0.1:9', worker: { retryBaseMs: 60_000 } });
    await postJson(slow, { email: 'backoff@example.org', list: 'news' });
    expect(await slow.worker.runOnce()).toBe(1);
    expect(await slow.worker.runOnce()).toBe(0);
    const { rows } = await t.tdb.query(`select run_at - now() > interval '50 seconds' as later from outbox where recipient = 'backoff@example.org'`);
    expect(rows[0].later).toBe(true);
    slow.close();
    await t.tdb.query(`update outbox set status = 'sent' where recipient = 'backoff@example.org'`);
  });
});

describe('several workers', () => {
  it('share the queue without sending any mail twice', async () => {
    const emails = Array.from({ length: 60 }, (_, i) => `share${i}@example.org`);
    for (const email of emails) await postJson(t.service, { email, list: 'news' });
    const senders = [smtpSender(t.smtp.url, { maxConnections: 2 }), smtpSender(t.smtp.url, { maxConnections: 2 })];
    const workers = senders.map((sender) => new OutboxWorker({ ...t.service.deps, sender }, { batchSize: 7 }));
    const before = t.smtp.received.length;
    await Promise.all(workers.map(async (worker) => { while ((await worker.runOnce()) > 0); }));
    const received = t.smtp.received.slice(before).map((mail) => mail.envelopeTo[0]);
    expect(received.sort()).toEqual([...emails].sort());
    expect((await rowsFor(emails)).every((row) => row.status === 'sent' && row.attempts === 1)).toBe(true);
    for (const sender of senders) sender.close();
  });

  it('takes over a row whose worker died once its lease runs out, and refuses the dead worker\'s late update', async () => {
    await postJson(t.service, { email: 'orphan@example.org', list: 'news' });
    await t.tdb.query(`update outbox set locked_by = 'dead-worker', locked_until = now() + interval '1 hour', attempts = 1 where recipient = 'orphan@example.org'`);
    expect(await t.service.worker.runOnce()).toBe(0);
    await t.tdb.query(`update outbox set locked_until = now() - interval '1 second' where recipient = 'orphan@example.org'`);
    expect(await t.service.worker.runOnce()).toBe(1);
    expect((await rowsFor(['orphan@example.org']))[0]).toMatchObject({ status: 'sent', attempts: 2 });
    const { markMailFailed } = await import('../src/workers/outbox-store.js');
    const { rows } = await t.tdb.query(`select id from outbox where recipient = 'orphan@example.org'`);
    expect(await markMailFailed(t.tdb.db, 'dead-worker', rows[0].id, 'late')).toBe(false);
  });

  it('runs in the background and picks up a new mail at once when woken', async () => {
    const sender = smtpSender(t.smtp.url, {});
    const background = new OutboxWorker({ ...t.service.deps, sender }, { pollMs: 60_000 });
    background.start();
    const count = t.smtp.received.length;
    await postJson(t.service, { email: 'woken@example.org', list: 'news' });
    background.wake();
    await t.smtp.waitFor(count + 1, 5_000);
    await background.stop();
    sender.close();
    expect((await rowsFor(['woken@example.org']))[0]).toMatchObject({ status: 'sent' });
  });
});
