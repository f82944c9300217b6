// A mail the relay accepted must be recorded as sent, even when the first attempt to record
// it fails (the connection drops, the database restarts): otherwise its claim runs out and it
// goes a second time. A trigger makes the first "sent" update fail once, as an outage would.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { useTestService } from './helpers/fixture.js';
import { postJson, seedConfirmed } from './helpers/http.js';

const t = useTestService({ smtp: true, lists: ['news'] });

beforeAll(async () => {
  // nextval() is not rolled back with the failing transaction: exactly one failure per reset
  await t.tdb.query(`
    create sequence record_failures;
    create function fail_first_sent() returns trigger language plpgsql as $$
    begin
      if new.status = 'sent' and old.status <> 'sent' and nextval('record_failures') = 1 then
        raise exception 'simulated: the connection dropped while recording';
      end if;
      return new;
    end $$;
    create trigger outbox_fail_first_sent before update on outbox for each row execute function fail_first_sent();
    create trigger messages_fail_first_sent before update on campaign_messages for each row execute function fail_first_sent();`);
});

afterEach(async () => {
  await t.tdb.query(`select setval('record_failures', 1, false)`);
});

/** Moves every lease into the past, as if the claims had run out, and runs the workers again. */
async function afterLeasesRunOut(): Promise<void> {
  await t.tdb.query(`update outbox set locked_until = now() - interval '1 second' where locked_by is not null`);
  await t.tdb.query(`update campaign_messages set locked_until = now() - interval '1 second' where locked_by is not null`);
  await t.service.worker.runOnce();
  await t.service.campaignWorker.runOnce();
}

describe('a sent mail whose record fails at first', () => {
  it('is recorded on a later try and never sent again (outbox)', async () => {
    const since = t.smtp.received.length;
    expect((await postJson(t.service, { email: 'recorded@example.org', list: 'news' })).status).toBe(202);
    await t.service.worker.runOnce();
    const { rows } = await t.tdb.query(`select status, attempts, locked_by from outbox where recipient = 'recorded@example.org'`);
    expect(rows).toEqual([{ status: 'sent', attempts: 1, locked_by: null }]);
    await afterLeasesRunOut();
    expect(t.smtp.received.slice(since).filter((m) => m.envelopeTo.includes('recorded@example.org'))).toHaveLength(1);
  });

  it('is recorded on its own when the send\'s transaction fails, and never sent again (campaign)', async () => {
    await seedConfirmed(t.tdb, 'news', 3, { prefix: 'recorded-campaign' });
    const created = await t.service.api('POST', '/api/v1/campaigns', {
      name: 'Recorded', list: 'news', subject: 'Once', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Once</mj-text></mj-column></mj-section></mj-body></mjml>',
    });
    const { id } = await created.json();
    expect((await t.service.api('POST', `/api/v1/campaigns/${id}/send`)).status).toBe(202);
    const since = t.smtp.received.length;
    await t.service.campaignWorker.runOnce();
    const { rows } = await t.tdb.query(`select status, count(*)::int as n, count(locked_by)::int as held from campaign_messages where campaign_id = $1 group by status`, [id]);
    expect(rows).toEqual([{ status: 'sent', n: 3, held: 0 }]);
    await afterLeasesRunOut();
    const counts = new Map<string, number>();
    for (const mail of t.smtp.received.slice(since)) counts.set(mail.envelopeTo[0]!, (counts.get(mail.envelopeTo[0]!) ?? 0) + 1);
    expect(counts.size).toBe(3);
    expect([...counts.values()]).toEqual([1, 1, 1]);
    expect(Number((await t.tdb.query(`select last_value from record_failures`)).rows[0].last_value)).toBeGreaterThanOrEqual(1);
  });
});
