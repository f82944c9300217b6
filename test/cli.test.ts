// The admin CLI, run as an operator would: `assent lists create`, `assent verify`, `assent migrate`.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { addressTag } from '../src/log.js';
import { postJson, seedConfirmed } from './helpers/http.js';
import { createTestService, TEST_SECRET } from './helpers/service.js';
import { SmtpSink } from './helpers/smtp.js';

const run = promisify(execFile);
let tdb: TestDatabase;

beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => {
  await tdb.drop();
});

async function assent(...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/assent.js', ...args], {
      env: { ...process.env, DATABASE_URL: tdb.url, TOKEN_SECRETS: TEST_SECRET, LOG_LEVEL: 'warn' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('assent CLI', () => {
  it('creates a list', async () => {
    const result = await assent('lists', 'create', '--slug', 'cli-news', '--name', 'CLI News', '--consent-text', 'Mail me.', '--fields', 'first_name');
    expect(result).toMatchObject({ code: 0, stdout: 'created list cli-news (consent version 1)\n' });
    const { rows } = await tdb.query(`select l.fields, v.text from lists l join list_consent_versions v on v.list_id = l.id where slug = 'cli-news'`);
    expect(rows).toEqual([{ fields: ['first_name'], text: 'Mail me.' }]);
  });

  it('creates, lists and revokes API keys, printing the key once', async () => {
    const created = await assent('keys', 'create', '--name', 'ops script');
    expect(created.code).toBe(0);
    const key = /^(as_([a-z0-9]{10})_\S+)$/m.exec(created.stdout);
    expect(key).not.toBeNull();
    const listed = await assent('keys', 'list');
    expect(listed.stdout).toContain(`${key![2]}\tops script`);
    expect(listed.stdout).not.toContain(key![1]);
    expect(await assent('keys', 'revoke', key![2]!)).toMatchObject({ code: 0 });
    const { rows } = await tdb.query('select revoked_at from api_keys where prefix = $1', [key![2]]);
    expect(rows[0].revoked_at).toBeInstanceOf(Date);
    expect(await assent('keys', 'revoke', key![2]!)).toMatchObject({ code: 1, stderr: expect.stringContaining('no active key') });
  });

  it('says what is wrong with a bad command, exiting non-zero', async () => {
    expect(await assent('lists', 'create', '--slug', 'x')).toMatchObject({ code: 1, stderr: expect.stringContaining('--name') });
    expect(await assent('lists', 'create', '--slug', 'cli-news', '--name', 'n', '--consent-text', 't')).toMatchObject({ code: 1, stderr: expect.stringContaining('already exists') });
    expect(await assent('frobnicate')).toMatchObject({ code: 2, stderr: expect.stringContaining('usage: assent') });
  });

  it('migrates, verifies every chain, and names the subscriber whose chain was tampered with', async () => {
    expect(await assent('migrate')).toMatchObject({ code: 0, stdout: 'migrations applied\n' });
    const service = await createTestService(tdb.db);
    for (const email of ['v1@example.org', 'v2@example.org']) await postJson(service, { email, list: 'cli-news' });
    service.close();
    expect(await assent('verify')).toMatchObject({ code: 0, stdout: '2 consent chains verify, 0 do not\n' });
    const { rows } = await tdb.query(`select id from subscribers where email = 'v2@example.org'`);
    await tdb.query(`begin; alter table consent_evidence disable trigger consent_evidence_no_update;
      update consent_evidence set evidence = evidence || '{"ip":"1.2.3.4"}'; alter table consent_evidence enable trigger consent_evidence_no_update; commit;`);
    const tampered = await assent('verify');
    expect(tampered.code).toBe(1);
    expect(tampered.stdout).toContain(`does not verify: subscriber ${rows[0].id}`);
  });

  it('shows a campaign\'s progress as its workers send it', async () => {
    const smtp = await new SmtpSink().start();
    const service = await createTestService(tdb.db, { smtpUrl: smtp.url });
    try {
      await seedConfirmed(tdb, 'cli-news', 150, { prefix: 'progress' });
      const created = await service.api('POST', '/api/v1/campaigns', {
        name: 'Progress', list: 'cli-news', subject: 'Hi', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>',
      });
      const { id } = await created.json();
      expect((await assent('campaigns', 'show', id)).stdout).toMatch(new RegExp(`^campaign ${id}: Progress\nlist +cli-news\nstatus +draft\nprogress +0 of 0 handled`));
      expect((await service.api('POST', `/api/v1/campaigns/${id}/send`)).status).toBe(202);
      await service.campaignWorker.runOnce(); // one batch of 100
      const shown = await assent('campaigns', 'show', id);
      expect(shown.code).toBe(0);
      expect(shown.stdout).toMatch(/status +sending\nprogress +100 of 150 handled \(66%\)\nsent +100\nfailed +0\nskipped +0\nqueued +50\n/);
      expect(await assent('campaigns', 'show', '999999')).toMatchObject({ code: 1, stderr: expect.stringContaining('there is no campaign 999999') });
    } finally {
      service.close();
      await smtp.stop();
    }
  });

  it('prints the tag that stands for an address in the logs', async () => {
    const result = await assent('log-tag', 'Someone@Example.org');
    expect(result).toMatchObject({ code: 0, stdout: `${addressTag(TEST_SECRET, 'someone@example.org')}\n` });
    expect(result.stdout).toMatch(/^addr#[A-Za-z0-9_-]{12}\n$/);
  });
  it('imports a listmonk and a Mailchimp export from a file, with progress lines and the rejections by line', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'assent-cli-import-'));
    try {
      const listmonk = path.join(dir, 'listmonk.csv');
      await writeFile(listmonk, [
        'uuid,email,name,attributes,status,created_at,updated_at',
        'a1,cli-lm@example.org,Linus Monk,"{""city"": ""Bengaluru""}",enabled,2023-01-01 00:00:00,2023-01-01 00:00:00',
        'a2,not-an-address,Nobody,{},enabled,2023-01-01 00:00:00,2023-01-01 00:00:00',
        'a3,cli-blocked@example.org,Blocked,{},blocklisted,2023-01-01 00:00:00,2023-01-01 00:00:00',
      ].join('\n'));
      const lm = await assent('import', listmonk, '--list', 'cli-news');
      expect(lm.code, lm.stderr).toBe(0);
      expect(lm.stdout).toMatch(/ finished: 3 rows read, 0 imported, 1 pending .*, 0 unchanged, 2 rejected\n/);
      expect(lm.stdout).toContain('line 3: email: not a valid email address\n');
      expect(lm.stdout).toMatch(/line 4: blocklisted/);
      // Not a terminal: plain progress lines, no carriage returns.
      expect(lm.stderr).toMatch(/^100% 3 rows read/m);
      expect(lm.stderr).not.toContain('\r');

      const mailchimp = path.join(dir, 'mailchimp.csv');
      await writeFile(mailchimp, [
        '"Email Address","First Name","Last Name",MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS',
        'cli-mc@example.org,Mail,Chimp,2,"2022-06-01 09:00:00",198.51.100.1,"2022-06-01 09:05:00",198.51.100.2,,,,,,,,"2022-06-01 09:05:00",1,abc,,',
      ].join('\n'));
      expect(await assent('import', mailchimp, '--list', 'cli-news')).toMatchObject({ code: 0, stdout: expect.stringContaining('1 imported') });
      const { rows } = await tdb.query(`select s.email, x.status, v.evidence from subscribers s join subscriptions x on x.subscriber_id = s.id
        join consent_events e on e.subscriber_id = s.id join consent_evidence v on v.event_id = e.id where s.email like 'cli-%' order by s.email`);
      expect(rows.map((r) => [r.email, r.status])).toEqual([['cli-lm@example.org', 'pending'], ['cli-mc@example.org', 'confirmed']]);
      expect(rows[1].evidence).toMatchObject({ row: { consented_at: '2022-06-01T09:05:00.000Z', consent_ip: '198.51.100.2' }, api_key: { name: expect.stringMatching(/^cli:/) } });

      const noEmail = path.join(dir, 'no-email.csv');
      await writeFile(noEmail, 'mail,first_name\nsomeone@example.org,Ada\n');
      const imports = (await tdb.query('select count(*)::int as n from imports')).rows[0].n;
      expect(await assent('import', noEmail, '--list', 'cli-news')).toMatchObject({ code: 1, stderr: expect.stringContaining('no email column') });
      expect(await assent('import', listmonk, '--list', 'no-such-list')).toMatchObject({ code: 1, stderr: expect.stringContaining('no-such-list') });
      expect((await tdb.query('select count(*)::int as n from imports')).rows[0].n).toBe(imports);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
