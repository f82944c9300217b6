// The consent log as its users meet it: a person signs up and confirms through a real mail,
// the sequencer logs and signs, and anyone checks the checkpoints and proofs over HTTP; the
// marketer's receipt and certificate; the person's own copy from the "confirmed" page and the
// preferences page; the controller named in mail and pages.
import { describe, expect, it } from 'vitest';
import { receiptVerify, type LogSource } from '../src/log/commands.js';
import { leafHash, verifyConsistency, verifyInclusion } from '../src/log/merkle.js';
import { openNote, parseCheckpoint, parseVerifierKey } from '../src/log/note.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, pathOf, postJson } from './helpers/http.js';

const CONTROLLER = { CONTROLLER_NAME: 'Example Ltd & Co', CONTROLLER_CONTACT: 'privacy@example.org', PRIVACY_URL: 'https://example.org/privacy' };
const t = useTestService({ smtp: true, lists: ['news', 'offers'], env: CONTROLLER });

const b64 = (text: string) => Buffer.from(text, 'base64');

/** Signs up and confirms through the real mail; returns the subscriber's id and the confirmed page. */
async function confirmedPerson(email: string, list = 'news') {
  const count = t.smtp.received.length;
  expect((await postJson(t.service, { email, list })).status).toBe(202);
  await t.service.worker.runOnce();
  const mail = await t.smtp.waitForMailTo(email, count);
  const page = await t.service.app.request(pathOf(confirmLink(mail.parsed.text)), { method: 'POST' });
  expect(page.status).toBe(200);
  const { rows } = await t.tdb.query('select id from subscribers where email = $1', [email]);
  return { id: rows[0].id as string, page: await page.text(), mail };
}

const get = (path: string) => t.service.app.request(path);
const logged = () => t.service.consentLogWorker.runOnce({ forceCheckpoint: true });

async function verifier() {
  return parseVerifierKey(await (await get('/consent-log/key')).text());
}

describe('the public log', () => {
  it('serves a signed checkpoint and proofs that every event of a person is in it', async () => {
    const { id } = await confirmedPerson('logged@example.org');
    const round = await logged();
    expect(round.signed).toBeDefined();
    const key = await verifier();
    const latest = await get('/consent-log/checkpoint');
    expect(latest.headers.get('content-type')).toMatch(/^text\/plain/);
    const checkpoint = parseCheckpoint(openNote(await latest.text(), [key]).text);
    expect(checkpoint.origin).toBe('assent.test/consent-log');
    expect(await (await get(`/consent-log/checkpoint/${checkpoint.size}`)).text()).toBe(round.signed!.note);

    const record = await (await t.service.api('GET', `/api/v1/subscribers/${id}/consent`)).json() as { events: { hash: string; log_index: number }[] };
    expect(record.events).toHaveLength(2);
    for (const event of record.events) {
      expect(event.log_index).toBeTypeOf('number');
      const proof = await (await get(`/consent-log/proof/inclusion?index=${event.log_index}&size=${checkpoint.size}`)).json() as { hashes: string[] };
      expect(verifyInclusion(event.log_index, checkpoint.size, leafHash(Buffer.from(event.hash, 'hex')), proof.hashes.map(b64), checkpoint.root)).toBe(true);
    }

    await confirmedPerson('later@example.org');
    const next = parseCheckpoint(openNote((await logged()).signed!.note, [key]).text);
    const consistency = await (await get(`/consent-log/proof/consistency?from=${checkpoint.size}&to=${next.size}`)).json() as { hashes: string[] };
    expect(verifyConsistency(checkpoint.size, next.size, checkpoint.root, next.root, consistency.hashes.map(b64))).toBe(true);
  });

  it('answers 400 to every malformed or impossible index, size, from and to, never 5xx, and 404 to a size never signed', async () => {
    await confirmedPerson('params@example.org');
    await logged();
    const size = Number((await t.tdb.query('select tiled_size from consent_log_state')).rows[0].tiled_size);
    const bad = [
      `inclusion?index=-1&size=${size}`, `inclusion?index=0&size=${size + 1}`, `inclusion?index=${size}&size=${size}`,
      'inclusion?index=abc&size=2', 'inclusion?index=0', 'inclusion?size=2', 'inclusion?index=1.5&size=2', 'inclusion?index=0x1&size=2',
      'inclusion?index=01&size=2', `inclusion?index=0&size=${'9'.repeat(30)}`, 'inclusion?index=&size=', 'inclusion?index=0&size=0',
      `consistency?from=2&to=1`, `consistency?from=0&to=${size + 1}`, 'consistency?from=-1&to=1', 'consistency?from=a&to=b',
      'consistency?from=1', `consistency?from=1e3&to=${size}`,
    ];
    for (const query of bad) {
      const response = await get(`/consent-log/proof/${query}`);
      expect(response.status, query).toBe(400);
      expect((await response.json()).error.code, query).toBe('invalid_input');
    }
    expect((await get('/consent-log/checkpoint/123456789')).status).toBe(404);
    expect((await get('/consent-log/checkpoint/-5')).status).toBe(400);
    expect((await get('/consent-log/checkpoint/latest')).status).toBe(400);
    expect((await get(`/consent-log/proof/consistency?from=0&to=${size}`)).status).toBe(200);
  });
});

describe('receipts', () => {
  /** A log that is this app, as `--log URL` reaches a service. */
  const appLog: LogSource = {
    latest: async () => (await get('/consent-log/checkpoint')).text(),
    consistency: async (from, to) => {
      const response = await get(`/consent-log/proof/consistency?from=${from}&to=${to}`);
      if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
      return ((await response.json()) as { hashes: string[] }).hashes.map(b64);
    },
  };

  it('hold the record and every proof, and verify offline with nothing but the log\'s key', async () => {
    const { id } = await confirmedPerson('receipt@example.org');
    await logged();
    const response = await t.service.api('GET', `/api/v1/subscribers/${id}/consent/receipt`);
    expect(response.status).toBe(200);
    const receipt = await response.json();
    expect(receipt.controller).toEqual({ name: CONTROLLER.CONTROLLER_NAME, contact: CONTROLLER.CONTROLLER_CONTACT, privacy_notice: CONTROLLER.PRIVACY_URL });
    expect(receipt.processing).toEqual([expect.objectContaining({
      purpose: { list: 'news', name: 'The news' }, status: 'consent given', lawful_basis: expect.stringContaining('6(1)(a)'),
      notice: { version: 1, text: 'Send me news by mail, about once a week.' },
    })]);
    expect(receipt.events.map((e: { type: string }) => e.type)).toEqual(['consent requested', 'consent given']);
    expect(receipt.events.every((e: { log: unknown }) => e.log !== null)).toBe(true);
    const key = (await (await get('/consent-log/key')).text()).trim();
    const result = await receiptVerify(JSON.stringify(receipt), { key, log: appLog });
    expect(result.err).toEqual([]);
    expect(result.exitCode).toBe(0);
    expect(result.out).toContain('the receipt verifies');
    expect(JSON.stringify(receipt)).not.toMatch(/\/confirm\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}/); // no working link, as in every export
  });

  it('fail with the reason when forged, cut short, or checked with another key', async () => {
    const { id } = await confirmedPerson('forged@example.org');
    await logged();
    const text = await (await t.service.api('GET', `/api/v1/subscribers/${id}/consent/receipt`)).text();
    const key = (await (await get('/consent-log/key')).text()).trim();
    const forge = (change: (receipt: any) => void) => {
      const receipt = JSON.parse(text);
      change(receipt);
      return JSON.stringify(receipt);
    };
    const cases: [string, string, RegExp][] = [
      ['evidence rewritten', forge((r) => { r.events[1].evidence.ip = '203.0.113.66'; }), /evidence is not what was recorded/],
      ['time moved', forge((r) => { r.events[1].record.occurred_at = '2020-01-01T00:00:00.000Z'; }), /fields do not give its hash/],
      ['event dropped', forge((r) => { r.events.splice(0, 1); }), /chain is broken/],
      ['leaf moved', forge((r) => { r.events[0].log.index += 1; }), /not in the checkpoint/],
      ['checkpoint altered', forge((r) => { r.consent_log.checkpoint = r.consent_log.checkpoint.replace(/\n(\d+)\n/, (_: string, n: string) => `\n${Number(n) + 1}\n`); }), /checkpoint: the signature .* does not verify/],
      ['cut short', text.slice(0, Math.floor(text.length / 2)), /not JSON/],
      ['not a receipt', JSON.stringify({ hello: 'world' }), /not a consent receipt/],
    ];
    for (const [what, forged, reason] of cases) {
      const result = await receiptVerify(forged, { key });
      expect(result.exitCode, what).toBe(1);
      expect(result.err.join('\n'), what).toMatch(reason);
    }
    const stranger = 'stranger.example/log+6a1f7e7b+AZ3gr1gtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeO';
    expect((await receiptVerify(text, { key: stranger })).exitCode).toBe(1);
  });

  it('are offered to the person: a link on the "confirmed" page and a button on the preferences page', async () => {
    const { id, page } = await confirmedPerson('own.copy@example.org');
    await logged();
    const link = /href="(https:\/\/assent\.test\/receipt\/[A-Za-z0-9_.-]+)"/.exec(page)?.[1];
    expect(link).toBeDefined();
    const download = await get(pathOf(link!));
    expect(download.status).toBe(200);
    expect(download.headers.get('content-disposition')).toMatch(/^attachment; filename="consent-receipt-/);
    expect(download.headers.get('referrer-policy')).toBe('no-referrer');
    const receipt = await download.text();
    expect((await receiptVerify(receipt, {})).exitCode).toBe(0);
    expect((await get('/receipt/not-a-token')).status).toBe(400);

    const preferences = t.service.deps.signer.signPreferences({ subscriberId: id, expiresAt: t.service.clock.now + 60_000 });
    const fromPreferences = await t.service.app.request(`/preferences/${preferences}/receipt`, { method: 'POST' });
    expect(fromPreferences.status).toBe(200);
    expect(JSON.parse(await fromPreferences.text()).record_id).toBe(id);
    expect(await (await get(`/preferences/${preferences}`)).text()).toContain('/receipt');
  });

  it('print as a certificate page with the record, the wording, the events and the signed checkpoint', async () => {
    const { id } = await confirmedPerson('certificate@example.org');
    await logged();
    const response = await t.service.api('GET', `/api/v1/subscribers/${id}/consent/certificate`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await response.text();
    expect(html).toContain('Certificate of consent');
    expect(html).toContain('certificate@example.org');
    expect(html).toContain('Send me news by mail, about once a week.');
    expect(html).toContain('Example Ltd &amp; Co');
    expect(html).toContain('consent given');
    expect(html).toContain('assent.test/consent-log');
    expect((await t.service.api('GET', '/api/v1/subscribers/00000000-0000-4000-8000-000000000000/consent/certificate')).status).toBe(404);
  });
});

describe('who is asking', () => {
  it('names the controller, its contact and its privacy notice in the confirmation mail and on every page', async () => {
    const { mail, page } = await confirmedPerson('who.asks@example.org');
    for (const text of [mail.parsed.text ?? '', mail.parsed.html || '']) {
      expect(text).toContain('Example Ltd');
      expect(text).toContain(CONTROLLER.CONTROLLER_CONTACT);
      expect(text).toContain(CONTROLLER.PRIVACY_URL);
    }
    for (const html of [page, await (await get('/manage')).text(), await (await get('/subscribe/check-inbox')).text()]) {
      expect(html).toContain('Your data is held by Example Ltd &amp; Co.');
      expect(html).toContain('href="mailto:privacy@example.org"');
      expect(html).toContain(`href="${CONTROLLER.PRIVACY_URL}"`);
    }
  });
});
