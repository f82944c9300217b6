// Campaign templates. A campaign's MJML is validated strictly and compiled to HTML once,
// with its Liquid left in place; the HTML is also turned into a plain-text template once.
// Per recipient there is then only a Liquid render of each (microseconds) and a MIME build.
//
// Where Liquid may stand: in text, inside mj-text, mj-button and mj-raw content (output and
// blocks such as {% if %}), and in free-form attribute values such as href, src, alt and
// title. Attributes that MJML checks (colours, sizes, padding) must be literal: MJML
// validates them before Liquid ever runs.
import { convert } from 'html-to-text';
import { Liquid, type Template } from 'liquidjs';
import mjml2html from 'mjml';
import { DomainError } from '../errors.js';

type Detail = { source: string; line: number | null; message: string };

const LIMITS = { parseLimit: 1_000_000, renderLimit: 2_000, memoryLimit: 50_000_000 };

// Campaign Liquid may not read files: {% include %}, {% render %} and {% layout %} would
// otherwise reach the server's disk.
const NO_FILES = {
  exists: async () => false, existsSync: () => false,
  readFile: async (file: string) => { throw new Error(`no file access: ${file}`); },
  readFileSync: (file: string) => { throw new Error(`no file access: ${file}`); },
  resolve: (_root: string, file: string) => file,
  dirname: () => '',
  sep: '/',
};

/** HTML output: every value escaped, so a name like `<script>` arrives as text. */
export const htmlLiquid = new Liquid({ outputEscape: 'escape', fs: NO_FILES, root: [], strictFilters: true, ...LIMITS });
/** Plain-text output: nothing to escape. */
export const textLiquid = new Liquid({ fs: NO_FILES, root: [], strictFilters: true, ...LIMITS });

/** The visible footer every campaign mail carries, put in before the body closes. */
const FOOTER = '<mj-section padding="16px 0"><mj-column><mj-text font-size="12px" line-height="18px" color="#57606a" align="center">'
  + '{{ footer.reason }}<br /><a href="{{ unsubscribe_url }}">{{ footer.unsubscribe }}</a> · <a href="{{ preferences_url }}">{{ footer.preferences }}</a>'
  + '{% if footer.sender_address %}<br />{{ footer.sender_address }}{% endif %}</mj-text></mj-column></mj-section>';

function liquidDetail(source: string, error: unknown): Detail {
  const message = error instanceof Error ? error.message : String(error);
  const line = /line:(\d+)/.exec(message)?.[1];
  return { source, line: line ? Number(line) : null, message: message.replace(/, line:\d+, col:\d+$/, '') };
}

function parseOrDetail(engine: Liquid, source: string, text: string): Detail | undefined {
  try {
    engine.parse(text);
    return undefined;
  } catch (error) {
    return liquidDetail(source, error);
  }
}

export function htmlToTextTemplate(html: string): string {
  return convert(html, {
    wordwrap: false, // a wrap inside {{ … }} or {% … %} would break the Liquid
    selectors: [
      ...['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((selector) => ({ selector, options: { uppercase: false } })),
      { selector: 'table', options: { uppercaseHeaderCells: false } },
      { selector: 'a', options: { hideLinkHrefIfSameAsText: true } },
      { selector: 'img', format: 'skip' },
    ],
  });
}

export interface CompiledCampaign {
  htmlTemplate: string;
  textTemplate: string;
}

/** Validates subject and MJML; throws template_invalid with every problem's line and message. */
export async function compileCampaign(subject: string, mjml: string): Promise<CompiledCampaign> {
  const liquidProblems = [parseOrDetail(textLiquid, 'subject', subject), parseOrDetail(htmlLiquid, 'mjml', mjml)]
    .filter((detail): detail is Detail => detail !== undefined);
  if (liquidProblems.length > 0) throw new DomainError('template_invalid', 'the template has Liquid errors', undefined, liquidProblems);

  const closing = mjml.lastIndexOf('</mj-body>');
  if (closing < 0) throw new DomainError('template_invalid', 'the MJML has no <mj-body>', undefined, [{ source: 'mjml', line: null, message: 'missing </mj-body>' }]);
  // On the closing tag's own line, so that the marketer's line numbers stay true.
  const withFooter = `${mjml.slice(0, closing)}${FOOTER}${mjml.slice(closing)}`;
  let html: string;
  try {
    const result = await mjml2html(withFooter, { validationLevel: 'strict', ignoreIncludes: true, keepComments: false });
    html = result.html;
  } catch (error) {
    const errors = (error as { errors?: { line?: number; message: string }[] }).errors;
    const details = errors?.length
      ? errors.map((e) => ({ source: 'mjml', line: e.line ?? null, message: e.message }))
      : [{ source: 'mjml', line: null, message: error instanceof Error ? error.message : String(error) }];
    throw new DomainError('template_invalid', 'the MJML is not valid', undefined, details);
  }
  const textTemplate = htmlToTextTemplate(html);
  const compiledProblems = [parseOrDetail(htmlLiquid, 'html', html), parseOrDetail(textLiquid, 'text', textTemplate)]
    .filter((detail): detail is Detail => detail !== undefined);
  if (compiledProblems.length > 0) {
    throw new DomainError('template_invalid', 'the compiled template has Liquid errors (Liquid inside an attribute MJML rewrites?)', undefined, compiledProblems);
  }
  return { htmlTemplate: html, textTemplate };
}

/** Parsed templates of one campaign, kept by the worker for the whole send. */
export interface ParsedCampaign {
  subject: Template[];
  html: Template[];
  text: Template[];
}

export function parseCampaign(campaign: { subject: string; html_template: string; text_template: string }): ParsedCampaign {
  return {
    subject: textLiquid.parse(campaign.subject),
    html: htmlLiquid.parse(campaign.html_template),
    text: textLiquid.parse(campaign.text_template),
  };
}

export interface RenderedCampaignMail {
  subject: string;
  html: string;
  text: string;
}

/**
 * Synchronous: nothing a campaign template may use waits on anything (no file, no async
 * filter), and liquidjs's async path costs a promise per node.
 */
export function renderCampaignMail(parsed: ParsedCampaign, context: Record<string, unknown>): RenderedCampaignMail {
  const subject = textLiquid.renderSync(parsed.subject, context) as string;
  const html = htmlLiquid.renderSync(parsed.html, context) as string;
  const text = textLiquid.renderSync(parsed.text, context) as string;
  // A subject is one header line, whatever the template or the data put in it.
  return { subject: subject.replace(/[\r\n]+/g, ' ').trim(), html, text };
}
