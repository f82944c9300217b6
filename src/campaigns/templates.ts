// Campaign templates. A campaign's MJML is validated strictly and compiled to HTML once,
// with its Liquid left in place; the HTML is also turned into a plain-text template once.
// Per recipient there is then only a Liquid render of each (microseconds) and a MIME build.
//
// Where Liquid may stand: in text, inside mj-text, mj-button and mj-raw content (output and
// blocks such as {% if %}), and in free-form attribute values such as href, src, alt and
// title. Attributes that MJML checks (colours, sizes, padding) must be literal: MJML
// validates them before Liquid ever runs.
import { convert } from 'html-to-text';
import type { Liquid, Template } from 'liquidjs';
import mjml2html from 'mjml';
import { DomainError } from '../errors.js';
import type { BodyPieces } from '../mail/mime.js';
import { htmlLiquid, isRenderTimeout, type MailBudget, mailBudget, renderBounded, renderBoundedPieces, textLiquid, withEncodedRuns } from './liquid.js';

export type Detail = { source: string; line: number | null; message: string };

/**
 * The longest MJML we take, in characters. Gmail cuts a mail off after 102 kB of HTML, and
 * MJML's HTML is 1.3 to 11 times its source, so a longer one can only make a mail that is
 * cut off; compiling it would hold a core for seconds (665 kB took 7.8 s).
 */
export const MAX_MJML_CHARS = 100_000;

/** The visible footer every campaign mail carries, put in before the body closes. */
const FOOTER = '<mj-section padding="16px 0"><mj-column><mj-text font-size="12px" line-height="18px" color="#57606a" align="center">'
  + '{{ footer.reason }}<br /><a href="{{ unsubscribe_url }}">{{ footer.unsubscribe }}</a> · <a href="{{ preferences_url }}">{{ footer.preferences }}</a>'
  + '{% if footer.sender_address %}<br />{{ footer.sender_address }}{% endif %}</mj-text></mj-column></mj-section>';

export function liquidDetail(source: string, error: unknown): Detail {
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
  let textTemplate: string;
  try {
    textTemplate = htmlToTextTemplate(html);
  } catch (error) {
    // html-to-text recurses per element: 30,000 nested <div> overflow the stack.
    throw new DomainError('template_invalid', 'the HTML could not be turned into text', undefined, [liquidDetail('html', error)]);
  }
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

/** Throws template_invalid for a stored template that does not parse (stored before today's checks, say). */
export function parseCampaign(campaign: { subject: string; html_template: string; text_template: string }): ParsedCampaign {
  const parse = (engine: Liquid, source: string, text: string) => {
    try {
      return engine.parse(text);
    } catch (error) {
      const detail = liquidDetail(source, error);
      throw new DomainError('template_invalid', `the ${source} template does not parse: ${detail.message}`, undefined, [detail]);
    }
  };
  // The bodies' runs of plain text are encoded for the wire once here, not per recipient.
  return {
    subject: parse(textLiquid, 'subject', campaign.subject),
    html: withEncodedRuns(parse(htmlLiquid, 'html', campaign.html_template)),
    text: withEncodedRuns(parse(textLiquid, 'text', campaign.text_template)),
  };
}

export interface RenderedCampaignMail<Body = string> {
  subject: string;
  html: Body;
  text: Body;
}

/**
 * A campaign mail that could not be rendered: which template, where and why. `timedOut` when
 * only the time limit stopped it, which load alone can cause; any other reason would recur.
 */
export class MailRenderError extends DomainError {
  constructor(readonly detail: Detail, readonly timedOut: boolean) {
    super('template_invalid', `the ${detail.source} cannot be rendered: ${detail.message}${detail.line === null ? '' : ` (line ${detail.line})`}`, undefined, [detail]);
  }
}

type Render<Body> = (engine: Liquid, templates: Template[], scope: object, budget: MailBudget) => Body;

function renderPart<Body>(render: Render<Body>, engine: Liquid, source: string, templates: Template[],
  context: Record<string, unknown>, budget: MailBudget): Body {
  try {
    return render(engine, templates, context, budget);
  } catch (error) {
    throw new MailRenderError(liquidDetail(source, error), isRenderTimeout(error));
  }
}

/**
 * Synchronous: nothing a campaign template may use waits on anything (no file, no async
 * filter), and liquidjs's async path costs a promise per node. Bounded by RENDER_LIMITS for
 * the whole mail; throws MailRenderError.
 */
export function renderCampaignMail(parsed: ParsedCampaign, context: Record<string, unknown>): RenderedCampaignMail {
  return renderWith(renderBounded, parsed, context);
}

/** renderCampaignMail with the bodies in pieces (mail/mime.ts BodyPieces), as the campaign worker sends them. */
export function renderCampaignMailPieces(parsed: ParsedCampaign, context: Record<string, unknown>): RenderedCampaignMail<BodyPieces> {
  return renderWith(renderBoundedPieces, parsed, context);
}

function renderWith<Body>(render: Render<Body>, parsed: ParsedCampaign, context: Record<string, unknown>): RenderedCampaignMail<Body> {
  const budget = mailBudget();
  const subject = renderPart(renderBounded, textLiquid, 'subject', parsed.subject, context, budget);
  const html = renderPart(render, htmlLiquid, 'html', parsed.html, context, budget);
  const text = renderPart(render, textLiquid, 'text', parsed.text, context, budget);
  // A subject is one header line, whatever the template or the data put in it.
  return { subject: subject.replace(/[\r\n]+/g, ' ').trim(), html, text };
}
