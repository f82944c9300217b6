// Every message exists in every locale, and every page and mail renders in each.
import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LOCALES, loadCatalogues, localeFromAcceptLanguage, matchLocale, TEMPLATES_DIR } from '../src/i18n.js';
import { Pages } from '../src/http/pages.js';
import { htmlToText, MailTemplates } from '../src/mail/templates.js';

const catalogues = loadCatalogues();

describe('catalogues', () => {
  it('has one file per locale and nothing else', () => {
    expect(readdirSync(`${TEMPLATES_DIR}locales`).sort()).toEqual(LOCALES.map((l) => `${l}.json`).sort());
  });

  it.each(LOCALES)('%s has every key of en, no other, none empty, with the same placeholders', (locale) => {
    const english = catalogues.en;
    expect(Object.keys(catalogues[locale]).sort()).toEqual(Object.keys(english).sort());
    for (const [key, text] of Object.entries(catalogues[locale])) {
      expect(text.trim(), key).not.toBe('');
      const placeholders = (s: string) => (s.match(/\{\{\s*\w+\s*\}\}/g) ?? []).sort();
      expect(placeholders(text), key).toEqual(placeholders(english[key]!));
    }
  });
});

describe('negotiation', () => {
  it('reads form locales and Accept-Language with q-values', () => {
    expect(matchLocale('de-AT')).toBe('de');
    expect(matchLocale('xx')).toBeUndefined();
    expect(localeFromAcceptLanguage('sv, ru;q=0.4, fr;q=0.8')).toBe('fr');
    expect(localeFromAcceptLanguage('tr;q=0, fi')).toBe('fi');
    expect(localeFromAcceptLanguage('*')).toBeUndefined();
  });
});

describe('rendering in every locale', () => {
  const pages = new Pages(catalogues);
  it.each(LOCALES)('%s: every page', (locale) => {
    const rendered = [
      pages.render('inbox', locale),
      pages.render('confirm', locale, { list_name: '<News & Co>', consent_text: 'Yes <b>please</b>' }),
      pages.render('confirmed', locale, { list_name: 'News', already: true }),
      ...['invalid', 'expired', 'unknown', 'superseded'].map((reason) =>
        pages.render('token_error', locale, { reason, lists: [{ slug: 'a', name: 'A' }, { slug: 'b', name: 'B' }] })),
      pages.render('error', locale, { title_key: 'page.error.title', fields: ['field.email'] }),
      ...['ask', 'missing', 'done', 'invalid'].map((state) => pages.render('unsubscribe', locale, { state, list_name: 'News', preferences_url: '/p' })),
      pages.render('preferences', locale, {
        base: '/preferences/x', saved: true, subscriber: { email: 'a@example.org', first_name: 'A', locale },
        attributes: [{ name: 'city', value: 'Oslo' }], language_name: 'x', languages: [{ code: 'en', name: 'English' }],
        subscriptions: ['pending', 'confirmed', 'unsubscribed', 'bounced', 'complained'].map((status) => ({
          slug: status, name: 'News', status_key: `page.preferences.status.${status}`, consent_text: 'Yes', confirmed_on: '1 May', can_leave: true,
        })),
        level_key: 'page.preferences.level.known',
        cap_options: ['confirmed', 'known', 'engaged'].map((value) => ({ value, key: `page.preferences.level.${value}` }))
          .concat([{ value: 'none', key: 'page.preferences.cap.none' }]),
      }),
      pages.render('erase', locale, { base: '/preferences/x', done: false }),
      pages.render('erase', locale, { done: true }),
      pages.render('manage', locale, {}),
      pages.render('manage', locale, { sent: true }),
      pages.render('manage', locale, { reason: 'expired' }),
      pages.render('manage', locale, { reason: 'invalid' }),
    ];
    for (const html of rendered) {
      expect(html).toContain(`<html lang="${locale}">`);
      expect(html).not.toMatch(/page\.|field\.|\{\{/); // every key found, every placeholder filled
      expect(html).not.toContain('<b>please');
    }
    expect(rendered[1]).toContain('&lt;News &amp; Co&gt;');
  });

  it.each(LOCALES)('%s: the preferences-link mail', async (locale) => {
    const templates = await MailTemplates.load(catalogues);
    const mail = templates.renderPreferencesLink({ locale, email: 'a@example.org', url: 'https://x.test/preferences/abc' });
    expect(mail.subject).not.toBe('');
    expect(mail.html).toContain('href="https://x.test/preferences/abc"');
    expect(mail.html).not.toMatch(/\{\{|mail\.preferences/);
  });

  it.each(LOCALES)('%s: the confirmation mail', async (locale) => {
    const templates = await MailTemplates.load(catalogues);
    const mail = templates.renderConfirmation({
      locale, email: 'a@example.org', listName: 'News <script>', consentText: 'I agree & more', confirmUrl: 'https://x.test/confirm/abc',
    });
    expect(mail.subject).toContain('News <script>');
    expect(mail.html).toContain('News &lt;script&gt;');
    expect(mail.html).not.toContain('<script>');
    expect(mail.html).toContain('href="https://x.test/confirm/abc"');
    expect(mail.text).toContain('I agree & more');
    expect(mail.text).toContain('https://x.test/confirm/abc');
    expect(mail.html).not.toMatch(/\{\{|mail\.confirm/);
  });

  it('converts the confirmation text once per wording and lengths, to the same text as converting each mail', async () => {
    const templates = await MailTemplates.load(catalogues);
    // Every character an address's local part may hold (address.ts), `$&` among them.
    const local = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,30}$/);
    const email = fc.tuple(local, fc.stringMatching(/^[a-z0-9-]{1,20}$/)).map(([name, domain]) => `${name}@${domain}.example`);
    const url = fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9_-]{1,200}$/).map((token) => `https://assent.example/confirm/${token}`),
      fc.string({ maxLength: 60 }), // whitespace or a stand-in: converted the slow way
    );
    const text = fc.oneof(fc.string({ maxLength: 120 }), fc.constantFrom('News', 'A list\nwith two lines', 'Ünïcødé & <b>', '\uFDD0\uFDD1', ' x '.repeat(40)));
    const input = fc.record({ locale: fc.constantFrom(...LOCALES), email, listName: text, consentText: text, confirmUrl: url });
    // The second mail has the first's locale, wording and lengths, other characters: a cache hit.
    const sameShape = (first: { email: string; confirmUrl: string }) => fc.record({
      email: fc.stringMatching(new RegExp(`^[a-z]{${first.email.length}}$`)),
      // The same scheme and host, another token of the same length.
      confirmUrl: fc.stringMatching(new RegExp(`^[A-Za-z]{${first.confirmUrl.length}}$`))
        .map((other) => first.confirmUrl.replace(/[^/]*$/, (token) => other.slice(0, token.length))),
    });
    fc.assert(fc.property(input.chain((first) => fc.tuple(fc.constant(first), sameShape(first))), ([first, other]) => {
      // Then others that differ in one part of the key each, which must not be taken for it.
      const mails = [first, { ...first, ...other }, { ...first, email: `z${first.email}` }, { ...first, confirmUrl: `${first.confirmUrl}Q` },
        { ...first, listName: `${first.listName}L` }, { ...first, consentText: `C${first.consentText}` },
        { ...first, locale: LOCALES[(LOCALES.indexOf(first.locale) + 1) % LOCALES.length]! }];
      for (const mail of mails) {
        const rendered = templates.renderConfirmation(mail);
        expect(rendered.text).toBe(htmlToText(rendered.html));
      }
    }), { numRuns: 300 });
  });
});
