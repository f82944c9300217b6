// What landing pages and recipients reach: the signup endpoint, confirm links and pages.
import { readFileSync } from 'node:fs';
import { Hono, type Context } from 'hono';
import { cors } from 'hono/cors';
import { z } from 'zod';
import { cleanName, normaliseEmail } from '../consent/address.js';
import { type ConfirmLinkState, confirmSubscription, inspectConfirmLink } from '../consent/confirm.js';
import { consentReceipt, receiptDeps, receiptFile } from '../consent/receipt.js';
import { signup } from '../consent/signup.js';
import { inspectUnsubscribe, unsubscribe, type UnsubscribeTarget } from '../consent/unsubscribe.js';
import type { Deps } from '../deps.js';
import { DomainError } from '../errors.js';
import { chooseLocale, localeFromAcceptLanguage, matchLocale, TEMPLATES_DIR } from '../i18n.js';
import { receiptUrl } from '../links/urls.js';
import { requestContext } from './client.js';
import type { AppEnv } from './env.js';
import { isStorableText, limitBody, limitPerIp, NOT_STORABLE, tokenPage } from './guards.js';
import type { Pages } from './pages.js';
import { RateLimiter } from './rate-limit.js';

const STYLESHEET = readFileSync(`${TEMPLATES_DIR}assets/style.css`, 'utf8');

const text = (max: number) => z.string().max(max, `at most ${max} characters`).refine(isStorableText, NOT_STORABLE);
const subscribeSchema = z.object({
  email: text(320),
  list: text(100).optional(),
  first_name: text(200).optional(),
  last_name: text(200).optional(),
  locale: text(35).optional(),
  redirect: text(2000).optional(),
  website: z.unknown().optional(),
});
type SubscribeBody = z.infer<typeof subscribeSchema>;

function invalid(fields: Record<string, string>): DomainError {
  return new DomainError('invalid_input', 'some fields are not valid', fields);
}

/** The body as a plain object, whichever of the three encodings it came in. */
async function readBody(c: Context): Promise<Record<string, unknown>> {
  const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === 'application/json') {
    const body: unknown = await c.req.json().catch(() => { throw invalid({ body: 'not valid JSON' }); });
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid({ body: 'expected a JSON object' });
    return body as Record<string, unknown>;
  }
  if (type === 'application/x-www-form-urlencoded' || type === 'multipart/form-data') {
    const form = await c.req.parseBody({ all: false }).catch(() => { throw invalid({ body: 'the form could not be read' }); });
    return form as Record<string, unknown>;
  }
  throw new DomainError('unsupported_media_type', 'send application/x-www-form-urlencoded, multipart/form-data or application/json');
}

function parseSubscribe(body: Record<string, unknown>): SubscribeBody {
  const parsed = subscribeSchema.safeParse(body);
  if (!parsed.success) {
    const fields: Record<string, string> = {};
    for (const issue of parsed.error.issues) fields[String(issue.path[0] ?? 'body')] ??= issue.code === 'invalid_type' ? 'must be text' : issue.message;
    throw invalid(fields);
  }
  return parsed.data;
}

function checkRedirect(redirect: string | undefined, allowedHosts: readonly string[]): string | undefined {
  if (redirect === undefined || redirect === '') return undefined;
  let url: URL;
  try { url = new URL(redirect); } catch { throw invalid({ redirect: 'not a URL' }); }
  if (!['http:', 'https:'].includes(url.protocol) || url.username || url.password || !allowedHosts.includes(url.hostname.toLowerCase())) {
    throw invalid({ redirect: 'not on an allowed host (REDIRECT_HOSTS)' });
  }
  return url.href;
}

export function publicApp(deps: Deps, pages: Pages): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const limiter = deps.config.subscribeRateLimit ? new RateLimiter(deps.config.subscribeRateLimit, deps.clock) : undefined;
  const pageLocale = (c: Context, preferred?: string | null) =>
    chooseLocale(matchLocale(preferred), localeFromAcceptLanguage(c.req.header('accept-language')));

  app.use('*', async (c, next) => {
    c.set('locale', pageLocale(c));
    c.set('wantsJson', false);
    await next();
  });

  app.get('/assets/style.css', (c) => c.body(STYLESHEET, 200, {
    'content-type': 'text/css; charset=utf-8', 'cache-control': 'public, max-age=86400',
  }));

  // Any origin may post: the form lives on the marketing team's sites, and what it can do
  // (ask for one confirmation mail, throttled) is what a plain HTML form can do anyway.
  app.use('/subscribe', cors({ origin: '*', allowMethods: ['POST'], allowHeaders: ['Content-Type', 'Accept'], maxAge: 86400 }));
  app.post(
    '/subscribe',
    async (c, next) => {
      const type = c.req.header('content-type') ?? '';
      c.set('wantsJson', type.includes('application/json') || (c.req.header('accept') ?? '').includes('application/json'));
      await next();
    },
    limitPerIp(limiter, deps.config.trustProxy),
    limitBody(),
    async (c) => {
      const raw = await readBody(c);
      const wantsJson = c.get('wantsJson');
      const accepted = () => wantsJson ? c.json({ status: 'pending' }, 202) : undefined;
      const locale = pageLocale(c, typeof raw.locale === 'string' ? raw.locale : undefined);
      c.set('locale', locale);
      // A person never sees the honeypot; whatever fills it is a bot: it is told it worked.
      const honeypotFilled = raw.website !== undefined && raw.website !== '';
      const body = honeypotFilled ? undefined : parseSubscribe(raw);
      const redirect = body ? checkRedirect(body.redirect, deps.config.redirectHosts) : undefined;
      if (body) {
        const email = normaliseEmail(body.email);
        if (!email) throw invalid({ email: 'not a valid email address' });
        const outcome = await signup(deps, {
          email,
          listSlug: body.list?.trim() || undefined,
          firstName: cleanName(body.first_name)?.slice(0, 100) ?? null,
          lastName: cleanName(body.last_name)?.slice(0, 100) ?? null,
          locale,
        }, requestContext(c, deps.config.trustProxy));
        // Counted alike whatever the address's state: a finer outcome would tell a scraper who subscribes.
        deps.metrics.signups.inc({ outcome: 'accepted' });
        if (outcome === 'mailed') deps.wakeOutbox();
      } else {
        deps.metrics.signups.inc({ outcome: 'honeypot' });
      }
      return accepted() ?? c.redirect(redirect ?? `/subscribe/check-inbox?locale=${locale}`, 303);
    },
  );

  app.get('/subscribe/check-inbox', (c) => c.html(pages.render('inbox', pageLocale(c, c.req.query('locale')))));

  app.use('/confirm/*', tokenPage);

  const renderLinkState = (c: Context, state: ConfirmLinkState) => {
    const locale = pageLocale(c, 'locale' in state ? state.locale : undefined);
    switch (state.kind) {
      case 'ready':
        return c.html(pages.render('confirm', locale, { list_name: state.list.name, consent_text: state.consentText }));
      case 'confirmed':
      case 'already_confirmed':
        // The click that just confirmed gets a link to the person's receipt, their own copy of the proof.
        return c.html(pages.render('confirmed', locale, {
          list_name: state.list.name, already: state.kind === 'already_confirmed',
          receipt_url: state.kind === 'confirmed' ? receiptUrl(deps, state.subscriberId) : undefined,
        }));
      default: {
        // Only the list a genuine link named: a choice of every list would show anyone who
        // types a garbled link each list's slug and name, internal ones too. Without one, the
        // form asks for the only list (signup's rule), and where there are several the
        // person signs up again from the landing page.
        const list = 'list' in state ? state.list : undefined;
        const status = state.kind === 'invalid' ? 400 : state.kind === 'unknown' ? 404 : 410;
        return c.html(pages.render('token_error', locale, { reason: state.kind, list_slug: list?.slug }), status);
      }
    }
  };

  // The "confirmed" page's download: the person's own copy of the proof. GET, since it changes nothing.
  app.use('/receipt/*', tokenPage);
  app.get('/receipt/:token', async (c) => {
    const check = deps.signer.verifyReceipt(c.req.param('token'), deps.clock());
    if (!check.ok) {
      const reason = check.reason === 'expired' ? 'expired' : 'invalid';
      return c.html(pages.render('manage', pageLocale(c), { reason }), reason === 'expired' ? 410 : 400);
    }
    const file = receiptFile(await consentReceipt(receiptDeps(deps), check.claims.subscriberId));
    return c.body(file.body, 200, { 'content-type': 'application/json; charset=utf-8', 'content-disposition': `attachment; filename="${file.filename}"` });
  });

  app.get('/confirm/:token', async (c) => renderLinkState(c, await inspectConfirmLink(deps, c.req.param('token'))));
  app.post('/confirm/:token', async (c) => {
    // The Referer of this POST would be the confirm page itself, token and all: keep only Origin.
    const context = { ...requestContext(c, deps.config.trustProxy), page: c.req.header('origin')?.slice(0, 2048) ?? null };
    return renderLinkState(c, await confirmSubscription(deps, c.req.param('token'), context));
  });

  // One-click unsubscribe (RFC 8058): the List-Unsubscribe URL. A POST carrying
  // List-Unsubscribe=One-Click unsubscribes at once and answers 200, never a redirect; GET
  // only shows the button, because mail scanners follow links.
  app.use('/u/*', tokenPage);
  // No page here carries a preferences link: one minted on every visit would give lasting
  // access to whoever holds the unsubscribe link (a forwarded newsletter), and the one-click
  // POST is usually made by the mailbox provider. The page points to "Lost your mail?".
  const unsubscribePage = (c: Context, state: 'ask' | 'missing' | 'done' | 'invalid', target?: UnsubscribeTarget) => {
    const locale = pageLocale(c, target?.locale);
    return c.html(pages.render('unsubscribe', locale, { state, list_name: target?.list.name }),
      state === 'invalid' || state === 'missing' ? 400 : 200);
  };
  app.get('/u/:token', async (c) => {
    const claims = deps.signer.verifyUnsubscribe(c.req.param('token'));
    const target = claims && await inspectUnsubscribe(deps, claims);
    if (!claims || !target) return unsubscribePage(c, 'invalid');
    return unsubscribePage(c, target.status === 'unsubscribed' ? 'done' : 'ask', target);
  });
  app.post('/u/:token', limitBody(), async (c) => {
    const token = c.req.param('token');
    const claims = deps.signer.verifyUnsubscribe(token);
    if (!claims) return unsubscribePage(c, 'invalid');
    const body = await c.req.parseBody().catch(() => ({} as Record<string, unknown>));
    if (body['List-Unsubscribe'] !== 'One-Click') {
      const target = await inspectUnsubscribe(deps, claims);
      return target ? unsubscribePage(c, 'missing', target) : unsubscribePage(c, 'invalid');
    }
    const context = { ...requestContext(c, deps.config.trustProxy), page: c.req.header('origin')?.slice(0, 2048) ?? null };
    // A mail client's one-click POST names no page; our own form's does (same origin).
    const method = context.page === null && !c.req.header('referer') ? 'one-click' : 'page';
    const target = await unsubscribe(deps, claims, { token, context, method });
    return unsubscribePage(c, 'done', target);
  });

  return app;
}
