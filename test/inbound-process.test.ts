// `assent inbound` as an operator runs it: a child process on the test database, one
// published DSN sent to it over SMTP, its effect in the database, then SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import { afterAll, describe, expect, it } from 'vitest';
import { useTestService } from './helpers/fixture.js';
import { seedConfirmed } from './helpers/http.js';
import { TEST_SECRET } from './helpers/service.js';

const BOUNCE_ADDRESS = 'bounces@assent.test';
const SAMPLE = 'dsn-postfix-550-5.1.1-address-rejected.eml';
const SAMPLE_RECIPIENT = 'kijitora@example.co.jp';

const t = useTestService({ smtp: true, lists: ['news'], env: { BOUNCE_ADDRESS } });

let child: ChildProcess | undefined;
let output = '';

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGKILL');
    await new Promise((resolve) => child!.once('exit', resolve));
  }
});

/** Starts `assent inbound` on a free port and resolves with the port its log says it took. */
async function startInbound(): Promise<number> {
  child = spawn(process.execPath, ['bin/assent.js', 'inbound'], {
    env: { ...process.env, DATABASE_URL: t.tdb.url, TOKEN_SECRETS: TEST_SECRET, BOUNCE_ADDRESS, INBOUND_SMTP_PORT: '0', INBOUND_SMTP_HOST: '127.0.0.1', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.on('data', (chunk) => { output += chunk; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listener in 30 s; output:\n${output.slice(-3000)}`)), 30_000);
    child!.stdout!.on('data', (chunk) => {
      output += chunk;
      const listening = output.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as { msg: string; port?: number })
        .find((line) => line.msg === 'listening for bounces and complaints by SMTP');
      if (listening?.port) { clearTimeout(timer); resolve(listening.port); }
    });
    child!.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited with ${code}; output:\n${output.slice(-3000)}`)); });
  });
}

describe('assent inbound', () => {
  it('takes a DSN over SMTP, bounces the person it names, and stops on SIGTERM with exit code 0', async () => {
    const [subscriberId] = await seedConfirmed(t.tdb, 'news', 1, { prefix: 'process' });
    const draft = await (await t.service.api('POST', '/api/v1/campaigns', {
      name: 'Process', list: 'news', subject: 'News', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>',
    })).json() as { id: string };
    expect((await t.service.api('POST', `/api/v1/campaigns/${draft.id}/send`)).status).toBe(202);
    while ((await t.service.campaignWorker.runOnce()) > 0);
    const [mail] = await t.smtp.waitFor(1);
    const email = mail!.envelopeTo[0]!;

    const port = await startInbound();
    const sample = readFileSync(new URL(`./fixtures/bounces/${SAMPLE}`, import.meta.url), 'latin1').replaceAll(SAMPLE_RECIPIENT, email);
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
    const info = await transport.sendMail({ envelope: { from: 'MAILER-DAEMON@remote.test', to: [mail!.envelopeFrom] }, raw: Buffer.from(sample, 'latin1') });
    transport.close();
    expect(String(info.response)).toMatch(/^250/);

    const { rows } = await t.tdb.query<{ status: string }>(`select status from subscriptions where subscriber_id = $1`, [subscriberId]);
    expect(rows).toEqual([{ status: 'bounced' }]);
    const events = await t.tdb.query<{ kind: string }>(`select kind from consent_events where subscriber_id = $1 order by id`, [subscriberId]);
    expect(events.rows.at(-1)).toEqual({ kind: 'bounced' });

    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 60_000);
});
