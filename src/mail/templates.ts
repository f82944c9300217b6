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

// Unicode noncharacters, reserved for internal use such as this: no catalogue holds them, and
// input that does is converted the slow way.
const EMAIL_STAND_IN = '\uFDD0';
const URL_STAND_IN = '\uFDD1';
/** Converted confirmation texts kept; a signup burst to one list needs a few dozen. */
const CONFIRMATION_TEXTS = 500;

/** Who holds the data, named in the confirmation mail (GDPR Art. 13): CONTROLLER_NAME, CONTROLLER_CONTACT, PRIVACY_URL. */
export interface MailController {
  name: string | undefined;
  contact: string | undefined;
  privacyUrl: string | undefined;
}

export class MailTemplates {
  private readonly confirmationTexts = new Map<string, string>();

  private constructor(
    private readonly catalogues: Catalogues,
    private readonly confirmation: Template[],
    private readonly preferences: Template[],
    private readonly reconsent: Template[],
    private readonly liquid: Liquid,
    private readonly controller: MailController | undefined,
  ) {}

  static async load(catalogues: Catalogues, options: { controller?: MailController; dir?: string } = {}): Promise<MailTemplates> {
    const dir = options.dir ?? `${TEMPLATES_DIR}mail/`;
    // Every value handed to these templates is escaped before it goes in (see render), so
    // Liquid's own escaping stays off here.
    const liquid = new Liquid({ strictVariables: true, strictFilters: true });
    const compile = async (name: string) => liquid.parse(await compileMjml(await readFile(`${dir}${name}.mjml`, 'utf8')));
    return new MailTemplates(catalogues, await compile('confirmation'), await compile('preferences'), await compile('reconsent'),
      liquid, options.controller);
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

  /**
   * The re-consent mail (issue 20): the wording the person agreed to beside the new one, and
   * a link to the page whose button records their agreement. Like the confirmation, it asks
   * and carries no advertising.
   */
  renderReconsent(input: { locale: Locale; email: string; listName: string; oldText: string | null; newText: string; url: string }): RenderedMail {
    const values = { list: input.listName, email: input.email };
    const m = Object.fromEntries(['subject', 'preview', 'heading', 'intro', 'old', 'new', 'button', 'ignore']
      .map((key) => [key, formatMessage(this.text(input.locale, `mail.reconsent.${key}`), values)]));
    m.link_hint = formatMessage(this.text(input.locale, 'mail.confirm.link_hint'), values);
    // Confirmed before versions were kept: say so rather than show an empty wording.
    m.old_text = input.oldText === null ? escapeHtml(this.text(input.locale, 'mail.reconsent.old_unknown'))
      : escapeHtml(input.oldText).replace(/\r?\n/g, '<br />');
    m.new_text = escapeHtml(input.newText).replace(/\r?\n/g, '<br />');
    m.controller = this.controllerLine(input.locale);
    const html = this.liquid.renderSync(this.reconsent, { locale: input.locale, m, url: escapeHtml(input.url) }) as string;
    const subject = formatPlain(this.text(input.locale, 'mail.reconsent.subject'), values).replace(/[\r\n]+/g, ' ');
    return { subject, html, text: htmlToText(html) };
  }

  /** The confirmation mail in the subscriber's language: it asks, and says what they agree to. */
  renderConfirmation(input: ConfirmationMailInput): RenderedMail {
    const html = this.confirmationHtml(input);
    const values = { list: input.listName, email: input.email };
    const subject = formatPlain(this.text(input.locale, 'mail.confirm.subject'), values).replace(/[\r\n]+/g, ' ');
    return { subject, html, text: this.confirmationText(input, html) };
  }

  private confirmationHtml(input: ConfirmationMailInput): string {
    const values = { list: input.listName, email: input.email };
    const message = (key: string) => formatMessage(this.text(input.locale, `mail.confirm.${key}`), values);
    const m = Object.fromEntries(['subject', 'preview', 'heading', 'intro', 'agree', 'button', 'link_hint', 'expiry', 'ignore']
      .map((key) => [key, message(key)]));
    m.consent = escapeHtml(input.consentText).replace(/\r?\n/g, '<br />');
    m.controller = this.controllerLine(input.locale);
    return this.liquid.renderSync(this.confirmation, {
      locale: input.locale,
      m,
      confirm_url: escapeHtml(input.confirmUrl),
    }) as string;
  }

  /**
   * htmlToText(html), which costs more than the rest of a signup's render. The address and
   * the link change the text only where they stand and, through wrapping, by their length
   * (html-to-text wraps at whitespace only, counting UTF-16 units). So the text is converted
   * once per locale, wording and pair of lengths with same-length stand-ins in their place,
   * and the stand-ins replaced: the same text (test/i18n.test.ts compares the two).
   */
  private confirmationText(input: ConfirmationMailInput, html: string): string {
    const { email, confirmUrl } = input;
    const unsafe = (text: string) => text.includes(EMAIL_STAND_IN) || text.includes(URL_STAND_IN);
    // html-to-text treats some links apart (`#anchors`); ours are always absolute http(s).
    const plain = /^https?:\/\/\S+$/.test(confirmUrl) && !/\s/.test(email);
    if (!plain || unsafe(email + confirmUrl + input.listName + input.consentText)) return htmlToText(html);
    const key = JSON.stringify([input.locale, input.listName, input.consentText, email.length, confirmUrl.length]);
    let text = this.confirmationTexts.get(key);
    if (text === undefined) {
      if (this.confirmationTexts.size >= CONFIRMATION_TEXTS) this.confirmationTexts.clear();
      text = htmlToText(this.confirmationHtml({
        ...input, email: EMAIL_STAND_IN.repeat(email.length), confirmUrl: URL_STAND_IN.repeat(confirmUrl.length),
      }));
      this.confirmationTexts.set(key, text);
    }
    // Replaced by functions: a string replacement would read `$&` in an address as a pattern.
    return text.replaceAll(EMAIL_STAND_IN.repeat(email.length), () => email)
      .replaceAll(URL_STAND_IN.repeat(confirmUrl.length), () => confirmUrl);
  }

  /** "Your data is held by … Privacy questions: … Privacy notice: …", in the mail's language; empty when none is configured. */
  private controllerLine(locale: Locale): string {
    const c = this.controller;
    if (!c) return '';
    return [
      c.name && formatMessage(this.text(locale, 'controller.held_by'), { name: c.name }),
      c.contact && formatMessage(this.text(locale, 'controller.contact'), { contact: c.contact }),
      c.privacyUrl && `${escapeHtml(this.text(locale, 'controller.privacy'))}: ${escapeHtml(c.privacyUrl)}`,
    ].filter(Boolean).join('<br />');
  }

  /** A catalogue message, in English where the locale lacks it (a test finds every such gap). */
  private text(locale: Locale, key: string): string {
    return this.catalogues[locale][key] ?? this.catalogues.en[key] ?? '';
  }
}
