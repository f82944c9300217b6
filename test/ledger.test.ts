// The consent ledger is append-only (a trigger refuses the rest) and tamper-evident (the
// chain of hashes is recomputed).
import { describe, expect, it } from 'vitest';
import { verifyChain } from '../src/consent/ledger.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, pathOf, postJson } from './helpers/http.js';

const t = useTestService({ smtp: true, lists: ['news', 'offers'] });

/** A subscriber with four events over two lists: requested and confirmed, twice. */
async function confirmedSubscriber(email: string): Promise<string> {
  for (const list of ['news', 'offers']) {
    const count = t.smtp.received.length;
    await postJson(t.service, { email, list });
    await t.service.worker.runOnce();
    const mail = await t.smtp.waitForMailTo(email, count);
    expect((await t.service.app.request(pathOf(confirmLink(mail.parsed.text)), { method: 'POST' })).status).toBe(200);
  }
  const { rows } = await t.tdb.query('select id from subscribers where email = $1', [email]);
  return rows[0].id;
}

describe('append-only', () => {
  it('refuses UPDATE, DELETE and TRUNCATE of consent events, and UPDATE of evidence', async () => {
    const id = await confirmedSubscriber('trigger@example.org');
    await expect(t.tdb.query(`update consent_events set kind = 'withdrawn' where subscriber_id = $1`, [id])).rejects.toThrow(/append-only: UPDATE refused/);
    await expect(t.tdb.query('delete from consent_events where subscriber_id = $1', [id])).rejects.toThrow(/append-only: DELETE refused/);
    await expect(t.tdb.query('truncate consent_events cascade')).rejects.toThrow(/append-only: TRUNCATE refused/);
    await expect(t.tdb.query(`update consent_evidence set evidence = '{}' where event_id in (select id from consent_events where subscriber_id = $1)`, [id]))
      .rejects.toThrow(/append-only: UPDATE refused/);
    await expect(t.tdb.query(`update affinity_events set level = 'engaged' where subscriber_id = $1`, [id])).rejects.toThrow(/append-only/);
    const { rows } = await t.tdb.query('select count(*)::int as n from consent_events where subscriber_id = $1', [id]);
    expect(rows[0].n).toBe(4);
  });
});

describe('verification', () => {
  it('verifies an untouched chain', async () => {
    const id = await confirmedSubscriber('intact@example.org');
    const result = await verifyChain(t.tdb.db, id);
    expect(result.verified).toBe(true);
    expect(result.events.map((event) => event.kind)).toEqual(['requested', 'confirmed', 'requested', 'confirmed']);
  });

  it('finds a tampered evidence row (written around the trigger, as an intruder with superuser rights would)', async () => {
    const id = await confirmedSubscriber('tampered@example.org');
    await t.tdb.query(`
      begin;
      alter table consent_evidence disable trigger consent_evidence_no_update;
      update consent_evidence set evidence = jsonb_set(evidence, '{ip}', '"10.9.8.7"')
        where event_id = (select max(id) from consent_events where subscriber_id = '${id}');
      alter table consent_evidence enable trigger consent_evidence_no_update;
      commit;`);
    const result = await verifyChain(t.tdb.db, id);
    expect(result.verified).toBe(false);
    expect(result.events.map((event) => event.verified)).toEqual([true, true, true, false]);
  });

  it('finds a removed event and a changed time in the chain', async () => {
    const id = await confirmedSubscriber('gap@example.org');
    await t.tdb.query(`
      begin;
      alter table consent_events disable trigger consent_events_append_only;
      delete from consent_evidence where event_id = (select min(id) + 1 from consent_events where subscriber_id = '${id}');
      delete from consent_events where id = (select min(id) + 1 from consent_events where subscriber_id = '${id}');
      alter table consent_events enable trigger consent_events_append_only;
      commit;`);
    expect((await verifyChain(t.tdb.db, id)).verified).toBe(false);

    const other = await confirmedSubscriber('time@example.org');
    await t.tdb.query(`
      begin;
      alter table consent_events disable trigger consent_events_append_only;
      update consent_events set occurred_at = occurred_at - interval '1 day' where id = (select min(id) from consent_events where subscriber_id = '${other}');
      alter table consent_events enable trigger consent_events_append_only;
      commit;`);
    expect((await verifyChain(t.tdb.db, other)).events[0]!.verified).toBe(false);
  });

  it('still verifies once the evidence is erased: the chain of hashes stands alone', async () => {
    const id = await confirmedSubscriber('erased@example.org');
    await t.tdb.query('delete from consent_evidence where event_id in (select id from consent_events where subscriber_id = $1)', [id]);
    const result = await verifyChain(t.tdb.db, id);
    expect(result.verified).toBe(true);
    expect(result.events.every((event) => event.evidence === null)).toBe(true);
  });
});
