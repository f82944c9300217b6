// The operator, with full rights on the database (triggers and foreign keys off), rewrites
// history after a person saved their receipt and an auditor saved a checkpoint. Each change
// is caught three ways: `assent log verify --checkpoint <the saved one>`, `assent receipt
// verify` of the saved receipt against the database, and the service itself, which stops
// signing and says why in /readyz and /metrics. The commands run as functions here (what
// src/cli.ts prints) and once as real processes at the end.
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventHash, evidenceHash } from '../src/consent/ledger.js';
import { logVerify, receiptVerify } from '../src/log/commands.js';
import { parseVerifierKey } from '../src/log/note.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { confirmLink, createList, pathOf, postJson } from './helpers/http.js';
import { TEST_LOG_KEY } from './helpers/secrets.js';
import { createTestService, TEST_SECRET, type TestService } from './helpers/service.js';
import { SmtpSink } from './helpers/smtp.js';

let tdb: TestDatabase;
let smtp: SmtpSink;
let service: TestService;

beforeEach(async () => {
  tdb = await createTestDatabase();
  smtp = await new SmtpSink().start();
  service = await createTestService(tdb.db, { smtpUrl: smtp.url });
  await createList(service, 'news');
});
afterEach(async () => {
  service.close();
  await smtp.stop();
  await tdb.drop();
});

async function confirmed(email: string): Promise<string> {
  const count = smtp.received.length;
  expect((await postJson(service, { email, list: 'news' })).status).toBe(202);
  await service.worker.runOnce();
  const mail = await smtp.waitForMailTo(email, count);
  expect((await service.app.request(pathOf(confirmLink(mail.parsed.text)), { method: 'POST' })).status).toBe(200);
  return (await tdb.query('select id from subscribers where email = $1', [email])).rows[0].id;
}

async function unsubscribed(id: string): Promise<void> {
  const token = service.deps.signer.signUnsubscribe({ subscriberId: id, listId: (await tdb.query(`select id from lists where slug = 'news'`)).rows[0].id });
  const response = await service.app.request(`/u/${token}`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click',
  });
  expect(response.status).toBe(200);
}

/** Three people's history, logged and checkpointed; Ada's receipt and the checkpoint kept outside the database. */
async function history() {
  const ada = await confirmed('ada@example.org');
  const bob = await confirmed('bob@example.org');
  const eve = await confirmed('eve@example.org');
  await unsubscribed(ada);
  expect((await service.consentLogWorker.runOnce({ forceCheckpoint: true })).signed).toBeDefined();
  const receipt = await (await service.api('GET', `/api/v1/subscribers/${ada}/consent/receipt`)).text();
  const checkpoint = await (await service.app.request('/consent-log/checkpoint')).text();
  const size = Number(checkpoint.split('\n')[1]);
  return { ada, bob, eve, receipt, checkpoint, size };
}

const asOperator = (statements: string) => tdb.query(`begin; set local session_replication_role = replica; ${statements}; commit;`);

/** What each of the three says after the operator's change. */
async function verdicts(kept: { receipt: string; checkpoint: string; size: number }) {
  const verifierKey = (await (await service.app.request('/consent-log/key')).text()).trim();
  const log = await logVerify(tdb.db, [{ name: 'auditor.txt', note: kept.checkpoint }], parseVerifierKey(verifierKey));
  const receipt = await receiptVerify(kept.receipt, { key: verifierKey, db: tdb.db });
  await postJson(service, { email: 'honest.work.goes.on@example.org', list: 'news' });
  const round = await service.consentLogWorker.runOnce({ forceCheckpoint: true });
  const ready = await (await service.app.request('/readyz')).json();
  const metrics = await (await service.app.request('/metrics')).text();
  const proof = await service.app.request(`/consent-log/proof/consistency?from=1&to=${kept.size}`);
  return { log, receipt, round, ready, metrics, proof };
}

async function expectCaught(kept: { receipt: string; checkpoint: string; size: number }, reason: RegExp) {
  const v = await verdicts(kept);
  expect(v.log.exitCode).toBe(1);
  expect(v.log.err.join('\n')).toMatch(reason);
  expect(v.receipt.exitCode).toBe(1);
  expect(v.receipt.err.join('\n')).toMatch(reason);
  expect(v.round.signed).toBeUndefined();
  expect(v.round.halted).toBeTruthy();
  expect(v.ready).toMatchObject({ status: 'ready', consent_log: { status: 'halted', reason: expect.any(String) } });
  expect(v.metrics).toMatch(/^assent_consent_log_halted 1$/m);
  expect(v.proof.status).toBe(503);
  const latest = Number((await tdb.query('select max(size) as size from consent_log_checkpoints')).rows[0].size);
  expect(latest).toBe(kept.size);
}

describe('an operator with full database rights', () => {
  it('changes nothing: everything verifies, and the service goes on signing', async () => {
    const kept = await history();
    const v = await verdicts(kept);
    expect(v.log).toMatchObject({ exitCode: 0, err: [] });
    expect(v.receipt).toMatchObject({ exitCode: 0, err: [] });
    expect(v.round.halted).toBeUndefined();
    expect(v.ready).toMatchObject({ consent_log: { status: 'signing' } });
    expect(v.metrics).toMatch(/^assent_consent_log_halted 0$/m);
    expect(v.proof.status).toBe(200);
  });

  it('deletes the last event of a chain (the withdrawal): caught', async () => {
    const kept = await history();
    await asOperator(`delete from consent_evidence where event_id = (select max(id) from consent_events where subscriber_id = '${kept.ada}');
      delete from consent_events where id = (select max(id) from consent_events where subscriber_id = '${kept.ada}')`);
    await expectCaught(kept, /is gone from the database|do not give its root/);
  });

  it('rewrites an event\'s evidence and re-hashes that subscriber\'s whole chain: caught', async () => {
    const kept = await history();
    const { rows } = await tdb.query(`select e.id, e.list_id, e.kind, e.occurred_at, v.evidence from consent_events e
      join consent_evidence v on v.event_id = e.id where e.subscriber_id = $1 order by e.id`, [kept.bob]);
    let prev: Buffer | null = null;
    const sql: string[] = [];
    for (const row of rows) {
      const evidence = row.kind === 'confirmed' ? { ...row.evidence, ip: '203.0.113.99', user_agent: 'rewritten' } : row.evidence;
      const evHash = evidenceHash(evidence);
      const hash = eventHash({ subscriberId: kept.bob, listId: row.list_id, kind: row.kind, occurredAt: row.occurred_at, evidenceHash: evHash, prevHash: prev });
      sql.push(`update consent_evidence set evidence = '${JSON.stringify(evidence).replace(/'/g, "''")}' where event_id = ${row.id}`);
      sql.push(`update consent_events set evidence_hash = '\\x${evHash.toString('hex')}', prev_hash = ${prev ? `'\\x${prev.toString('hex')}'` : 'null'}, hash = '\\x${hash.toString('hex')}' where id = ${row.id}`);
      prev = hash;
    }
    await asOperator(sql.join(';\n'));
    // The rewritten chain verifies on its own: only the log tells.
    const chain = await (await service.api('GET', `/api/v1/subscribers/${kept.bob}/consent`)).json();
    expect(chain.verified).toBe(true);
    await expectCaught(kept, /not what the log holds|do not give its root/);
  });

  it('deletes a whole subscriber with their events: caught', async () => {
    const kept = await history();
    await asOperator(`delete from consent_evidence where event_id in (select id from consent_events where subscriber_id = '${kept.eve}');
      delete from consent_events where subscriber_id = '${kept.eve}'; delete from subscriptions where subscriber_id = '${kept.eve}';
      delete from outbox where subscriber_id = '${kept.eve}'; delete from affinity_events where subscriber_id = '${kept.eve}';
      delete from subscribers where id = '${kept.eve}'`);
    await expectCaught(kept, /is gone from the database|do not give its root/);
  });

  it('reorders two events (their leaves swapped, and the tree rebuilt to match): caught', async () => {
    const kept = await history();
    await asOperator(`
      update consent_log_entries set event_id = -event_id where log_index in (2, 3);
      update consent_log_entries l set event_id = (select -event_id from consent_log_entries where log_index = 5 - l.log_index) where log_index in (2, 3);
      delete from consent_log_tiles; update consent_log_state set tiled_size = 0`);
    await expectCaught(kept, /no longer gives checkpoint|do not give its root|not what the log holds/);
  });

  it('inserts a fabricated confirmation, dated last month, with correct hashes: caught', async () => {
    const kept = await history();
    const last = (await tdb.query(`select hash from consent_events where subscriber_id = $1 order by id desc limit 1`, [kept.ada])).rows[0].hash as Buffer;
    const listId = (await tdb.query(`select id from lists where slug = 'news'`)).rows[0].id;
    const occurredAt = new Date(Date.now() - 30 * 24 * 3600_000);
    const evidence = { ip: '203.0.113.7', user_agent: 'Mozilla/5.0', page: null, time: occurredAt.toISOString() };
    const evHash = evidenceHash(evidence);
    const hash = eventHash({ subscriberId: kept.ada, listId, kind: 'confirmed', occurredAt, evidenceHash: evHash, prevHash: last });
    await tdb.query(`insert into consent_events (subscriber_id, list_id, kind, occurred_at, evidence_hash, prev_hash, hash) values ($1, $2, 'confirmed', $3, $4, $5, $6)`,
      [kept.ada, listId, occurredAt, evHash, last, hash]);
    await expectCaught(kept, /earlier date|not in the log, though checkpoint/);
  });
});

describe('the commands, as processes', () => {
  const run = promisify(execFile);
  async function assent(...args: string[]) {
    try {
      const { stdout, stderr } = await run(process.execPath, ['bin/assent.js', ...args], {
        env: { ...process.env, DATABASE_URL: tdb.url, TOKEN_SECRETS: TEST_SECRET, CONSENT_LOG_KEY: TEST_LOG_KEY, PUBLIC_URL: 'https://assent.test', LOG_LEVEL: 'warn' },
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  it('log checkpoint, log verify --checkpoint and receipt verify exit 0, then 1 naming where the log parts once the withdrawal is deleted', async () => {
    const kept = await history();
    const dir = await mkdtemp(path.join(tmpdir(), 'assent-auditor-'));
    const checkpointFile = path.join(dir, 'checkpoint.txt');
    const receiptFile = path.join(dir, 'receipt.json');
    await writeFile(checkpointFile, kept.checkpoint);
    await writeFile(receiptFile, kept.receipt);
    const vkey = (await (await service.app.request('/consent-log/key')).text()).trim();

    expect(await assent('log', 'checkpoint')).toMatchObject({ code: 0, stdout: kept.checkpoint });
    expect(await assent('log', 'verify', '--checkpoint', checkpointFile)).toMatchObject({ code: 0, stdout: expect.stringContaining('the log verifies') });
    expect(await assent('receipt', 'verify', receiptFile, '--key', vkey)).toMatchObject({ code: 0, stdout: expect.stringContaining('the receipt verifies') });

    await asOperator(`delete from consent_evidence where event_id = (select max(id) from consent_events where subscriber_id = '${kept.ada}');
      delete from consent_events where id = (select max(id) from consent_events where subscriber_id = '${kept.ada}')`);
    const log = await assent('log', 'verify', '--checkpoint', checkpointFile);
    expect(log.code).toBe(1);
    expect(log.stderr).toMatch(new RegExp(`the log parts from (stored checkpoint ${kept.size}|${checkpointFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}) at tree size ${kept.size}`));
    expect((await assent('receipt', 'verify', receiptFile, '--key', vkey, '--database'))).toMatchObject({ code: 1 });
    // Offline, the receipt itself is still whole: it is the database that changed.
    expect((await assent('receipt', 'verify', receiptFile, '--key', vkey)).code).toBe(0);
  }, 120_000); // seven processes, each starting Node and tsx
});

