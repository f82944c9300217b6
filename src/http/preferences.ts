// The preferences page (linked from every mail) and "Lost your mail?". The signed link is
// the only key: it carries no session and sets no cookie, and a page without it can change
// nothing. Every change is a POST that returns to the page (303), so a reload repeats nothing.
import { type Context, Hono } from 'hono';
import { normaliseEmail } from '../consent/address.js';
import {
  inspectPreferencesLink, leaveList, preferencesOf, requestPreferencesLink, setAffinityCap, setLocale,
} from '../consent/preferences.js';
import { pendingReconsents } from '../consent/reconsent.js';
import { eraseSubscriber, exportSubscriber } from '../consent/subscribers.js';
import { consentReceipt, receiptDeps, receiptFile } from '../consent/receipt.js';
import type { Deps } from '../deps.js';
import { AFFINITY_LEVELS, isOpenSubscription } from '../domain.js';
import { DomainError } from '../errors.js';
import { chooseLocale, type Locale, LOCALES, localeFromAcceptLanguage, matchLocale } from '../i18n.js';
import { requestContext } from './client.js';
import type { AppEnv } from './env.js';
import { isStorableText, limitBody, limitPerIp, NOT_STORABLE, sameOriginForms, tokenPage } from './guards.js';
import type { Pages } from './pages.js';
import { RateLimiter } from './rate-limit.js';

export function preferencesApp(deps: Deps, pages: Pages): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const limiter = deps.config.subscribeRateLimit ? new RateLimiter(deps.config.subscribeRateLimit, deps.clock) : undefined;
  const locale = (c: Context, preferred?: string | null): Locale =>
    chooseLocale(matchLocale(preferred), localeFromAcceptLanguage(c.req.header('accept-language')));
  const form = async (c: Context) => (await c.req.parseBody().catch(() => ({}))) as Record<string, unknown>;

  app.use('/preferences/*', tokenPage, sameOriginForms, limitBody());

  /** The subscriber the link is for (one query: their locale), or an answer offering "Lost your mail?". */
  const holder = async (c: Context): Promise<{ id: string; base: string; locale: string } | Response> => {
    const token = c.req.param('token') ?? '';
    const link = await inspectPreferencesLink(deps, token);
    if (!link.ok) return c.html(pages.render('manage', locale(c), { reason: link.reason }), link.reason === 'expired' ? 410 : 400);
    return { id: link.subscriberId, base: `/preferences/${token}`, locale: link.locale };
  };

  app.get('/preferences/:token', async (c) => {
    const who = await holder(c);
    if (who instanceof Response) return who;
    const view = await preferencesOf(deps, who.id);
    const pending = await pendingReconsents(deps, who.id);
    const pageLocale = locale(c, view.locale);
    const dates = new Intl.DateTimeFormat(pageLocale, { dateStyle: 'long', timeStyle: 'short', timeZone: 'UTC' });
    return c.html(pages.render('preferences', pageLocale, {
      base: who.base,
      saved: c.req.query('saved') !== undefined,
      subscriber: view,
      attributes: Object.entries(view.attributes).map(([name, value]) => ({ name, value: typeof value === 'string' ? value : JSON.stringify(value) })),
      language_name: deps.catalogues[chooseLocale(matchLocale(view.locale))]['locale.name'],
      languages: LOCALES.map((code) => ({ code, name: deps.catalogues[code]['locale.name'] })),
      subscriptions: view.subscriptions.map((s) => ({
        slug: s.list, name: view.list_names.get(s.list) ?? s.list, status_key: `page.preferences.status.${s.status}`,
        consent_text: s.consent_text, confirmed_on: s.confirmed_at ? `${dates.format(s.confirmed_at)} UTC` : '',
        can_leave: isOpenSubscription(s.status), reconsent: pending.get(s.list),
      })),
      level_key: `page.preferences.level.${view.effective_affinity}`,
      cap_options: [
        ...AFFINITY_LEVELS.map((level) => ({ value: level, key: `page.preferences.level.${level}`, checked: view.affinity_cap === level })),
        { value: 'none', key: 'page.preferences.cap.none', checked: view.affinity_cap === null },
      ],
    }));
  });

  const change = (path: string, apply: (c: Context, id: string, body: Record<string, unknown>) => Promise<void>) =>
    app.post(`/preferences/:token/${path}`, async (c) => {
      const who = await holder(c);
      if (who instanceof Response) return who;
      await apply(c, who.id, await form(c));
      return c.redirect(`${who.base}?saved`, 303);
    });

  change('leave', async (c, id, body) => {
    if (typeof body.list !== 'string') throw new DomainError('invalid_input', 'which list?', { list: 'required' });
    if (!isStorableText(body.list)) throw new DomainError('invalid_input', 'which list?', { list: NOT_STORABLE });
    await leaveList(deps, id, body.list, { token: c.req.param('token') ?? '', context: requestContext(c, deps.config.trustProxy) });
  });
  change('locale', async (_c, id, body) => {
    const chosen = typeof body.locale === 'string' ? matchLocale(body.locale) : undefined;
    if (!chosen) throw new DomainError('invalid_input', 'not a language we speak', { locale: 'unknown' });
    await setLocale(deps, id, chosen);
  });
  change('cap', async (_c, id, body) => {
    const cap = body.cap === 'none' ? null : AFFINITY_LEVELS.find((level) => level === body.cap);
    if (cap === undefined) throw new DomainError('invalid_input', 'not a level', { cap: 'unknown' });
    await setAffinityCap(deps, id, cap);
  });

  app.post('/preferences/:token/export', async (c) => {
    const who = await holder(c);
    if (who instanceof Response) return who;
    const data = await exportSubscriber(deps, who.id);
    return c.body(JSON.stringify(data, null, 2), 200, {
      'content-type': 'application/json; charset=utf-8',
      'content-disposition': 'attachment; filename="my-data.json"',
    });
  });

  app.post('/preferences/:token/receipt', async (c) => {
    const who = await holder(c);
    if (who instanceof Response) return who;
    const file = receiptFile(await consentReceipt(receiptDeps(deps), who.id));
    return c.body(file.body, 200, { 'content-type': 'application/json; charset=utf-8', 'content-disposition': `attachment; filename="${file.filename}"` });
  });

  app.post('/preferences/:token/erase', async (c) => {
    const who = await holder(c);
    if (who instanceof Response) return who;
    return c.html(pages.render('erase', locale(c, who.locale), { base: who.base, done: false }));
  });
  app.post('/preferences/:token/erase/confirm', async (c) => {
    const who = await holder(c);
    if (who instanceof Response) return who;
    await eraseSubscriber(deps, who.id, { by: 'subscriber' });
    return c.html(pages.render('erase', locale(c, who.locale), { done: true }));
  });

  app.get('/manage', (c) => c.html(pages.render('manage', locale(c, c.req.query('locale')), {})));
  app.post('/manage', limitPerIp(limiter, deps.config.trustProxy), limitBody(), async (c) => {
    const body = await form(c);
    const pageLocale = locale(c, typeof body.locale === 'string' ? body.locale : undefined);
    c.set('locale', pageLocale);
    const email = typeof body.email === 'string' && body.email.length <= 320 ? normaliseEmail(body.email) : undefined;
    if (!email) throw new DomainError('invalid_input', 'not a valid email address', { email: 'not valid' });
    // The same answer, after the same work, whether or not we hold the address: the request
    // is only recorded here, and a worker looks the address up.
    await requestPreferencesLink(deps, email, pageLocale);
    deps.wakeOutbox();
    return c.html(pages.render('manage', pageLocale, { sent: true }));
  });

  return app;
}
