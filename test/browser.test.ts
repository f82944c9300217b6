// A person in a real browser: a landing page's plain HTML form, the confirmation mail's link,
// the preferences page (leave a list, cap personalisation, download, erase), each of our pages
// checked with axe-core. Headless Chromium from Debian, driven by playwright-core; the app
// listens on a real port, so what is tested is what a browser gets (redirects, forms, the
// stylesheet, downloads), not what app.request returns.
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { serve } from '@hono/node-server';
import type { AxeResults, Result } from 'axe-core';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preferencesUrl } from '../src/links/urls.js';
import { useTestService } from './helpers/fixture.js';
import { confirmLink, pathOf } from './helpers/http.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`browser.test.ts skipped: no ${CHROMIUM} (apt-get install chromium; .ci/run does)`);
const SCREENSHOTS = process.env.SCREENSHOTS === '1';
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const DOCS = fileURLToPath(new URL('../docs/', import.meta.url));
// The machine has no network: without these Chromium waits on connections it will never get.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const EMAIL = 'browser.person@example.org';

/** Listens on a port the kernel picks on 127.0.0.1 and answers its base URL. */
function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () =>
    resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

function close(server: http.Server | undefined): Promise<void> {
  if (!server) return Promise.resolve();
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** One line per violation and per node it names, so a failure says what to fix and where. */
const describeViolation = (v: Result) => `${v.id} (${v.impact}): ${v.help}\n${v.nodes
  .map((n) => `    ${n.target.join(' ')}: ${n.html}\n      ${(n.failureSummary ?? '').replace(/\n/g, '\n      ')}`).join('\n')}`;

describe.skipIf(!hasChromium)('in a real browser', () => {
  const t = useTestService({ smtp: true, lists: ['news', 'offers'] });
  let appServer: http.Server | undefined;
  let landingServer: http.Server | undefined;
  let base = '';
  let landing = '';
  let browser: Browser | undefined;
  let page: Page;
  const foreign: string[] = [];
  let subscriberId = '';
  let preferences = '';

  beforeAll(async () => {
    appServer = serve({ fetch: t.service.app.fetch, port: 0, hostname: '127.0.0.1' }) as http.Server;
    await new Promise<void>((resolve) => appServer!.listening ? resolve() : appServer!.once('listening', () => resolve()));
    base = `http://127.0.0.1:${(appServer.address() as AddressInfo).port}`;
    // A marketing site of its own origin whose form posts to us, as a real landing page does.
    landingServer = http.createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Join our news</title></head><body>
<form method="post" action="${base}/subscribe">
<label>Email <input type="email" name="email" required></label>
<label>First name <input type="text" name="first_name"></label>
<input type="hidden" name="list" value="news">
<input type="hidden" name="locale" value="en">
<button type="submit">Sign me up</button>
</form></body></html>`);
    });
    landing = `${await listen(landingServer)}/join`;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 900, height: 900 }, locale: 'en-GB', colorScheme: 'light' });
    page = await context.newPage();
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol) && url.hostname !== '127.0.0.1') foreign.push(request.url());
    });
  });

  afterAll(async () => {
    await browser?.close();
    await close(appServer);
    await close(landingServer);
  });

  /** Our links point at PUBLIC_URL (https://assent.test); the browser reaches the app here. */
  const local = (link: string) => `${base}${pathOf(link)}`;

  /** Clicks a submit button and waits for the page it leads to (after any 303) to load. */
  async function submit(button: Locator): Promise<void> {
    await Promise.all([page.waitForEvent('framenavigated', (frame) => frame === page.mainFrame()), button.click()]);
    await page.waitForLoadState('load');
  }

  const heading = () => page.getByRole('heading', { level: 1 }).innerText();

  /** axe-core on the page as shown, in the light and the dark colour scheme: nothing serious or critical. */
  async function checkAccessibility(): Promise<void> {
    // Evaluated over the DevTools protocol: our pages' policy allows no <script>, and stays on.
    await page.evaluate(AXE_SOURCE);
    for (const colorScheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme });
      const results = await page.evaluate(() => (window as unknown as { axe: { run(): Promise<AxeResults> } }).axe.run());
      const serious = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      expect(serious.map(describeViolation), `axe on ${await heading()} (${page.url()}, ${colorScheme})`).toEqual([]);
    }
    await page.emulateMedia({ colorScheme: 'light' });
  }

  const subscriptions = async () => (await t.tdb.query<{ slug: string; status: string }>(`select l.slug, x.status
    from subscriptions x join lists l on l.id = x.list_id where x.subscriber_id = $1 order by l.slug`, [subscriberId])).rows;
  const events = async () => (await t.tdb.query<{ kind: string; slug: string | null }>(`select e.kind, l.slug
    from consent_events e left join lists l on l.id = e.list_id where e.subscriber_id = $1 order by e.id`, [subscriberId])).rows;

  it('signs up on a landing page, gets the mail, and confirms with the button', async () => {
    await page.goto(landing);
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('First name').fill('Brenda');
    await submit(page.getByRole('button', { name: 'Sign me up' }));
    expect(page.url()).toBe(`${base}/subscribe/check-inbox?locale=en`);
    expect(await heading()).toBe('Check your inbox');
    await checkAccessibility();
    const { rows: [pending] } = await t.tdb.query(`select s.id, x.status from subscribers s
      join subscriptions x on x.subscriber_id = s.id where s.email = $1`, [EMAIL]);
    expect(pending).toMatchObject({ status: 'pending' });
    subscriberId = pending.id;

    const since = t.smtp.received.length;
    await t.service.worker.runOnce();
    const mail = await t.smtp.waitForMailTo(EMAIL, since);
    await page.goto(local(confirmLink(mail.parsed.text)));
    await checkAccessibility();
    expect(await subscriptions()).toEqual([{ slug: 'news', status: 'pending' }]); // a GET changes nothing
    await submit(page.getByRole('button', { name: 'Confirm my subscription' }));
    expect(await heading()).toBe('Subscription confirmed');
    await checkAccessibility();

    expect(await subscriptions()).toEqual([{ slug: 'news', status: 'confirmed' }]);
    expect(await events()).toEqual([{ kind: 'requested', slug: 'news' }, { kind: 'confirmed', slug: 'news' }]);
    // The evidence is what this browser sent: its user agent, and the landing page's origin
    // (Chromium's default referrer policy gives a cross-origin form only the origin).
    const { rows: evidence } = await t.tdb.query(`select v.evidence from consent_evidence v join consent_events e on e.id = v.event_id
      where e.subscriber_id = $1 order by e.id`, [subscriberId]);
    expect(evidence[0].evidence.user_agent).toContain('HeadlessChrome');
    expect(evidence[0].evidence.page).toBe(`${new URL(landing).origin}/`);
    expect(evidence[1].evidence.user_agent).toContain('HeadlessChrome');
  });

  it('shows the preferences page with the address and every list', async () => {
    // A second list, as if they had joined it long ago.
    await t.tdb.query(`insert into subscriptions (subscriber_id, list_id, status, consent_version, confirmed_at)
      select $1, id, 'confirmed', 1, now() from lists where slug = 'offers'`, [subscriberId]);
    preferences = local(preferencesUrl(t.service.deps, subscriberId));
    await page.goto(preferences);
    expect(await heading()).toBe('Your data and preferences');
    const text = await page.locator('main').innerText();
    for (const shown of [EMAIL, 'Brenda', 'The news', 'The offers']) expect(text).toContain(shown);
    await checkAccessibility();
  });

  it.skipIf(!SCREENSHOTS)('saves screenshots of the preferences page in English and German (SCREENSHOTS=1)', async () => {
    await page.goto(preferences);
    await page.screenshot({ path: `${DOCS}preferences-en.png`, fullPage: true });
    await t.tdb.query(`update subscribers set locale = 'de' where id = $1`, [subscriberId]);
    try {
      await page.goto(preferences);
      expect(await page.locator('html').getAttribute('lang')).toBe('de');
      expect(await page.locator('main').innerText()).toContain('Von dieser Liste abmelden');
      await checkAccessibility();
      await page.screenshot({ path: `${DOCS}preferences-de.png`, fullPage: true });
    } finally {
      await t.tdb.query(`update subscribers set locale = 'en' where id = $1`, [subscriberId]);
    }
  });

  it('leaves one list, keeping the other, with the withdrawal recorded', async () => {
    await page.goto(preferences);
    await submit(page.locator('article.list', { hasText: 'The news' }).getByRole('button', { name: 'Leave this list' }));
    expect(page.url()).toBe(`${preferences}?saved`);
    expect(await page.getByRole('status').innerText()).toBe('Saved.');
    await checkAccessibility();
    expect(await subscriptions()).toEqual([{ slug: 'news', status: 'unsubscribed' }, { slug: 'offers', status: 'confirmed' }]);
    expect((await events()).at(-1)).toEqual({ kind: 'withdrawn', slug: 'news' });
  });

  it('lowers personalisation to the address only', async () => {
    await page.locator('input[name="cap"][value="confirmed"]').check();
    await submit(page.getByRole('button', { name: 'Save the limit' }));
    expect(page.url()).toBe(`${preferences}?saved`);
    expect(await page.locator('input[name="cap"][value="confirmed"]').isChecked()).toBe(true);
    await checkAccessibility();
    const { rows } = await t.tdb.query('select affinity_cap from subscribers where id = $1', [subscriberId]);
    expect(rows).toEqual([{ affinity_cap: 'confirmed' }]);
  });

  it('downloads everything held as a JSON file', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download all your data (JSON)' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('my-data.json');
    const data: unknown = JSON.parse(await readFile(await download.path(), 'utf8'));
    expect(JSON.stringify(data)).toContain(EMAIL);
  });

  it('erases after one confirmation step', async () => {
    await submit(page.getByRole('button', { name: 'Erase me' }));
    expect(await heading()).toBe('Erase everything about you?');
    await checkAccessibility();
    expect((await t.tdb.query('select email from subscribers where id = $1', [subscriberId])).rows).toEqual([{ email: EMAIL }]);
    await submit(page.getByRole('button', { name: 'Yes, erase me' }));
    expect(await heading()).toBe('You are erased');
    await checkAccessibility();
    const { rows } = await t.tdb.query('select email, erased_at is not null as erased from subscribers where id = $1', [subscriberId]);
    expect(rows).toEqual([{ email: null, erased: true }]);
  });

  it('asked no host but 127.0.0.1 for anything', () => {
    expect(foreign).toEqual([]);
  });
});
