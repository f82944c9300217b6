// The re-consent link (issue 20): GET shows the wording the person agreed to beside the new
// one and changes nothing (mail scanners follow links); the page's button POSTs the same URL,
// which records the agreement. A forged, altered or foreign token gets 400 and a page, an
// expired one 410 and the way to a fresh link; neither changes anything.
import { type Context, Hono } from 'hono';
import { inspectReconsentLink, type ReconsentLinkState, recordReconsent } from '../consent/reconsent.js';
import type { Deps } from '../deps.js';
import { chooseLocale, localeFromAcceptLanguage, matchLocale } from '../i18n.js';
import { requestContext } from './client.js';
import type { AppEnv } from './env.js';
import { limitBody, sameOriginForms, tokenPage } from './guards.js';
import type { Pages } from './pages.js';

export function reconsentApp(deps: Deps, pages: Pages): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const render = (c: Context, state: ReconsentLinkState) => {
    const locale = chooseLocale(matchLocale('locale' in state ? state.locale : undefined), localeFromAcceptLanguage(c.req.header('accept-language')));
    if (state.kind === 'invalid') return c.html(pages.render('reconsent', locale, { state: 'invalid' }), 400);
    // As an expired preferences link: 410, and the address typed again brings a fresh link to
    // the preferences page, which shows the pending wording with the same button.
    if (state.kind === 'expired') return c.html(pages.render('manage', locale, { reason: 'expired' }), 410);
    return c.html(pages.render('reconsent', locale, {
      state: state.kind, list_name: state.list.name,
      ...(state.kind === 'ready' && { old_text: state.oldText, new_text: state.newText }),
    }));
  };
  // A page elsewhere that learnt a link must not agree in the person's name through their browser.
  app.use('/reconsent/*', tokenPage, sameOriginForms, limitBody());
  app.get('/reconsent/:token', async (c) => render(c, await inspectReconsentLink(deps, c.req.param('token'))));
  app.post('/reconsent/:token', async (c) => {
    // The Referer would be this page, token and all: keep only Origin, as the confirm POST does.
    const context = { ...requestContext(c, deps.config.trustProxy), page: c.req.header('origin')?.slice(0, 2048) ?? null };
    return render(c, await recordReconsent(deps, c.req.param('token'), context));
  });
  return app;
}
