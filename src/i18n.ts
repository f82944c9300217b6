// One message catalogue per locale under templates/locales/, loaded once at start. Messages
// may hold Liquid placeholders ({{ list }}); callers render them with the page or mail.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const LOCALES = ['en', 'de', 'fr', 'tr', 'ru', 'fi'] as const;
export type Locale = (typeof LOCALES)[number];
export const DEFAULT_LOCALE: Locale = 'en';

export const TEMPLATES_DIR = fileURLToPath(new URL('../templates/', import.meta.url));

export type Catalogue = Readonly<Record<string, string>>;
export type Catalogues = Readonly<Record<Locale, Catalogue>>;

export function loadCatalogues(dir = `${TEMPLATES_DIR}locales/`): Catalogues {
  const entries = LOCALES.map((locale) => [locale, JSON.parse(readFileSync(`${dir}${locale}.json`, 'utf8')) as Catalogue]);
  return Object.freeze(Object.fromEntries(entries)) as Catalogues;
}

/** `de`, `de-AT`, `DE_at` -> `de`; anything else -> undefined. */
export function matchLocale(tag: string | undefined | null): Locale | undefined {
  if (!tag) return undefined;
  const primary = tag.trim().toLowerCase().split(/[-_]/)[0];
  return LOCALES.find((locale) => locale === primary);
}

/** The supported locale the browser prefers most (RFC 9110 §12.5.4 q-values), if any. */
export function localeFromAcceptLanguage(header: string | undefined | null): Locale | undefined {
  if (!header) return undefined;
  const ranked = header.slice(0, 512).split(',').map((part, index) => {
    const [tag, ...params] = part.trim().split(';');
    const q = params.map((p) => /^\s*q=([01](?:\.\d{0,3})?)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
    return { locale: matchLocale(tag), q: q === undefined ? 1 : Number(q), index };
  });
  const best = ranked
    .filter((entry) => entry.locale !== undefined && entry.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index)[0];
  return best?.locale;
}

/** The form's locale, else the browser's, else English. */
export function chooseLocale(...candidates: (Locale | undefined)[]): Locale {
  return candidates.find((locale) => locale !== undefined) ?? DEFAULT_LOCALE;
}
