// TSA_URL end to end: the service asks a real RFC 3161 authority (`openssl ts -reply`) to
// time-stamp each checkpoint it signs, serves the token, puts it in the receipt, and a
// regulator checks it with `openssl ts -verify`; an authority that is down delays the stamp
// and never the log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { receiptVerify } from '../src/log/commands.js';
import { DEFAULT_CONSENT_LOG_OPTIONS } from '../src/log/worker.js';
import { openNote, parseCheckpoint, parseVerifierKey } from '../src/log/note.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import { confirmLink, pathOf, postJson } from './helpers/http.js';
import { createTestService, type TestService } from './helpers/service.js';
import { SmtpSink } from './helpers/smtp.js';
import { LocalTsa } from './helpers/tsa.js';

let tdb: TestDatabase;
let smtp: SmtpSink;
let tsa: LocalTsa;
let service: TestService;

beforeAll(async () => {
  tdb = await createTestDatabase();
  smtp = await new SmtpSink().start();
  tsa = await new LocalTsa().start();
  service = await createTestService(tdb.db, { smtpUrl: smtp.url, env: { TSA_URL: tsa.url } });
  expect((await service.api('POST', '/api/v1/lists', { slug: 'news', name: 'News', consent_text: 'Send me news.' })).status).toBe(201);
});

afterAll(async () => {
  service?.close();
  await tsa?.stop();
  await smtp?.stop();
  await tdb?.drop();
});

async function confirmedPerson(email: string): Promise<string> {
  const count = smtp.received.length;
  expect((await postJson(service, { email, list: 'news' })).status).toBe(202);
  await service.worker.runOnce();
  const mail = await smtp.waitForMailTo(email, count);
  expect((await service.app.request(pathOf(confirmLink(mail.parsed.text)), { method: 'POST' })).status).toBe(200);
  return (await tdb.query('select id from subscribers where email = $1', [email])).rows[0].id as string;
}

describe('TSA_URL', () => {
  it('time-stamps each signed checkpoint: served as DER that openssl ts -verify accepts, and carried in the receipt', async () => {
    const id = await confirmedPerson('stamped@example.org');
    const round = await service.consentLogWorker.runOnce({ forceCheckpoint: true });
    expect(round.signed).toBeDefined();
    const note = round.signed!.note;
    const size = parseCheckpoint(openNote(note, [parseVerifierKey(await (await service.app.request('/consent-log/key')).text())]).text).size;

    const response = await service.app.request(`/consent-log/checkpoint/${size}/timestamp`);
    expect(response.status).toBe(200);
    const token = Buffer.from(await response.arrayBuffer());
    expect(await tsa.opensslVerifies(token, note)).toBe(true);
    expect(await tsa.opensslVerifies(token, `${note} `)).toBe(false);

    const receipt = await (await service.api('GET', `/api/v1/subscribers/${id}/consent/receipt`)).json();
    expect(receipt.consent_log.timestamp_token).toBe(token.toString('base64'));
    const result = await receiptVerify(JSON.stringify(receipt), {});
    expect(result.err).toEqual([]);
    expect(result.out.join('\n')).toMatch(/time-stamped at .* by an RFC 3161 authority/);

    receipt.consent_log.timestamp_token = Buffer.concat([token.subarray(0, -8), Buffer.alloc(8)]).toString('base64');
    const forged = await receiptVerify(JSON.stringify(receipt), {});
    expect(forged.exitCode).toBe(1);
    expect(forged.err.join('\n')).toMatch(/the time-stamp token/);
  });

  it('goes on signing while the authority is down, and stamps the checkpoint once it is back', async () => {
    tsa.failWith = 503;
    await confirmedPerson('unstamped@example.org');
    const round = await service.consentLogWorker.runOnce({ forceCheckpoint: true });
    expect(round.signed).toBeDefined();
    const size = round.signed!.size;
    expect((await service.app.request(`/consent-log/checkpoint/${size}`)).status).toBe(200);
    expect((await service.app.request(`/consent-log/checkpoint/${size}/timestamp`)).status).toBe(404);

    tsa.failWith = undefined;
    const asked = tsa.requests;
    await service.consentLogWorker.runOnce();
    expect(tsa.requests).toBe(asked); // an authority that failed is left alone for tsaRetryMs
    service.clock.advance(DEFAULT_CONSENT_LOG_OPTIONS.tsaRetryMs);
    await service.consentLogWorker.runOnce();
    const again = await service.app.request(`/consent-log/checkpoint/${size}/timestamp`);
    expect(again.status).toBe(200);
    expect(await tsa.opensslVerifies(Buffer.from(await again.arrayBuffer()), round.signed!.note)).toBe(true);
  });
});
