// What every campaign mail carries besides its body: the localised footer and the list
// headers of RFC 2369, RFC 2919 and RFC 8058.
import type { Deps } from '../deps.js';
import { chooseLocale, matchLocale } from '../i18n.js';
import type { RecipientLinks } from '../links/urls.js';
import { formatPlain } from '../mail/text.js';

type LinkDeps = Pick<Deps, 'config' | 'catalogues'>;

/** The context every recipient gets whatever their level: the list, the links, the footer. */
export function sharedContext(deps: LinkDeps, recipient: { locale: string }, list: { name: string }, links: RecipientLinks) {
  const catalogue = deps.catalogues[chooseLocale(matchLocale(recipient.locale))];
  const text = (key: string) => formatPlain(catalogue[key] ?? deps.catalogues.en[key] ?? '', { list: list.name });
  return {
    list: { name: list.name },
    unsubscribe_url: links.unsubscribeUrl,
    preferences_url: links.preferencesUrl,
    footer: {
      reason: text('mail.footer.reason'),
      unsubscribe: text('mail.footer.unsubscribe'),
      preferences: text('mail.footer.preferences'),
      sender_address: deps.config.senderAddress,
    },
  };
}

/**
 * The list headers of one mail, in nodemailer's terms: `list` renders List-Id (RFC 2919, the
 * list's slug under PUBLIC_URL's host, its name as the phrase, encoded only where it must be)
 * and List-Unsubscribe (RFC 2369); List-Unsubscribe-Post (RFC 8058) asks for one-click.
 */
export function listHeaders(config: Deps['config'], list: { slug: string; name: string }, links: RecipientLinks) {
  const host = new URL(config.publicUrl).hostname;
  return {
    list: {
      id: { url: `${list.slug}.${host}`, comment: list.name.replace(/[\r\n]+/g, ' ') },
      unsubscribe: { url: links.unsubscribeUrl },
    },
    // A POST of this body to the List-Unsubscribe URL unsubscribes, with no page in between.
    headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
  };
}
