// Every message exists in every locale, and every page and mail renders in each.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LOCALES, loadCatalogues, localeFromAcceptLanguage, matchLocale, TEMPLATES_DIR } from '../src/i18n.js';
import { Pages } from '../src/http/pages.js';
import { MailTemplates } from '../src/mail/templates.js';

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
});
