// HTML pages: Liquid templates under templates/pages, every output escaped by default, text
// from the locale's catalogue through the `t` filter: {{ 'page.confirm.body' | t: 'list', list.name }}.
import { Liquid } from 'liquidjs';
import { type Catalogues, type Locale, TEMPLATES_DIR } from '../i18n.js';
import { formatMessage } from '../mail/text.js';

export type PageName = 'inbox' | 'confirm' | 'confirmed' | 'token_error' | 'error' | 'unsubscribe' | 'preferences' | 'erase' | 'manage' | 'certificate' | 'reconsent';

/** Who holds the data: named in every page's footer (GDPR Art. 13), when configured. */
export interface PageController {
  name: string | undefined;
  contact: string | undefined;
  privacyUrl: string | undefined;
}

export class Pages {
  private readonly liquid: Liquid;
  private readonly controller: PageController | undefined;

  constructor(catalogues: Catalogues, options: { controller?: PageController; dir?: string } = {}) {
    const dir = options.dir ?? `${TEMPLATES_DIR}pages/`;
    this.controller = options.controller;
    this.liquid = new Liquid({
      root: dir, extname: '.liquid', cache: true, outputEscape: 'escape', strictFilters: true,
    });
    this.liquid.registerFilter('t', {
      raw: true,
      handler(key: string, ...pairs: unknown[]) {
        const locale = this.context.getSync(['locale']) as Locale;
        const values: Record<string, string> = {};
        for (let i = 0; i + 1 < pairs.length; i += 2) values[String(pairs[i])] = String(pairs[i + 1] ?? '');
        return formatMessage(catalogues[locale]?.[key] ?? catalogues.en[key] ?? key, values);
      },
    });
  }

  render(name: PageName, locale: Locale, data: Record<string, unknown> = {}): string {
    const c = this.controller;
    const controller = c && (c.name || c.contact || c.privacyUrl)
      ? { name: c.name, contact: c.contact, contact_is_mail: c.contact ? !/^https?:/.test(c.contact) : false, privacy_url: c.privacyUrl }
      : undefined;
    return this.liquid.renderFileSync(name, { ...data, locale, controller }) as string;
  }
}
