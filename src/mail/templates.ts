// Transactional mails: MJML compiled once at start with its Liquid left intact, then one
// Liquid render per mail. MJML is the slow part (milliseconds); a Liquid render of the
// compiled HTML is microseconds.
import { readFile } from 'node:fs/promises';
import { compile as compileHtmlToText } from 'html-to-text';
import { Liquid, type Template } from 'liquidjs';
import mjml2html from 'mjml';
import { type Catalogues, type Locale, TEMPLATES_DIR } from '../i18n.js';
import { escapeHtml, formatMessage, formatPlain } from './text.js';

export interface RenderedMail {
  subject: string;
  html: string;
  text: string;
}

/** MJML to HTML, strictly validated; throws with every error's line and message. */
export async function compileMjml(source: string): Promise<string> {
  const result = await mjml2html(source, { validationLevel: 'strict', keepComments: false });
  return result.html;
}

// Compiled once: html-to-text's convert() rebuilds its options on every call, which was a
// tenth of a signup's CPU (bench/, signup).
export const htmlToText: (html: string) => string = compileHtmlToText({
  wordwrap: 78,
  selectors: [
    { selector: 'a', options: { hideLinkHrefIfSameAsText: true } },
    { selector: 'img', format: 'skip' },
  ],
});

export interface ConfirmationMailInput {
  locale: Locale;
  email: string;
  listName: string;
  consentText: string;
  confirmUrl: string;
}

export class MailTemplates {
  private constructor(
    private readonly catalogues: Catalogues,
    private readonly confirmation: Template[],
    private readonly preferences: Template[],
    private readonly liquid: Liquid,
  ) {}

  static async load(catalogues: Catalogues, dir = `${TEMPLATES_DIR}mail/`): Promise<MailTemplates> {
    // Every value handed to these templates is escaped before it goes in (see render), so
    // Liquid's own escaping stays off here.
    const liquid = new Liquid({ strictVariables: true, strictFilters: true });
    const compile = async (name: string) => liquid.parse(await compileMjml(await readFile(`${dir}${name}.mjml`, 'utf8')));
    return new MailTemplates(catalogues, await compile('confirmation'), await compile('preferences'), liquid);
  }

  /** The mail that answers "Lost your mail?": a fresh link to the preferences page. */
  renderPreferencesLink(input: { locale: Locale; email: string; url: string }): RenderedMail {
    const values = { email: input.email };
    const m = Object.fromEntries(['subject', 'heading', 'body', 'button', 'ignore']
      .map((key) => [key, formatMessage(this.text(input.locale, `mail.preferences.${key}`), values)]));
    const html = this.liquid.renderSync(this.preferences, { locale: input.locale, m, url: escapeHtml(input.url) }) as string;
    const subject = formatPlain(this.text(input.locale, 'mail.preferences.subject'), values).replace(/[\r\n]+/g, ' ');
    return { subject, html, text: htmlToText(html) };
  }

  /** The confirmation mail in the subscriber's language: it asks, and says what they agree to. */
  renderConfirmation(input: ConfirmationMailInput): RenderedMail {
    const values = { list: input.listName, email: input.email };
    const message = (key: string) => formatMessage(this.text(input.locale, `mail.confirm.${key}`), values);
    const m = Object.fromEntries(['subject', 'preview', 'heading', 'intro', 'agree', 'button', 'link_hint', 'expiry', 'ignore']
      .map((key) => [key, message(key)]));
    m.consent = escapeHtml(input.consentText).replace(/\r?\n/g, '<br />');
    const html = this.liquid.renderSync(this.confirmation, {
      locale: input.locale,
      m,
      confirm_url: escapeHtml(input.confirmUrl),
    }) as string;
    const subject = formatPlain(this.text(input.locale, 'mail.confirm.subject'), values).replace(/[\r\n]+/g, ' ');
    return { subject, html, text: htmlToText(html) };
  }

  /** A catalogue message, in English where the locale lacks it (a test finds every such gap). */
  private text(locale: Locale, key: string): string {
    return this.catalogues[locale][key] ?? this.catalogues.en[key] ?? '';
  }
}
