// A campaign mail for one recipient, built in one place for the worker that sends it and the
// preview that shows it: the affinity-bounded context, the Liquid render, the localised
// footer, and the list headers of RFC 2369, RFC 2919 and RFC 8058. The links are the
// caller's: a recipient's own for a mail, inert ones for a preview (links/urls.ts).
import type { Deps } from '../deps.js';
import { chooseLocale, matchLocale } from '../i18n.js';
import type { RecipientLinks } from '../links/urls.js';
import type { BodyPieces, OutgoingMail, PiecedMail } from '../mail/mime.js';
import { formatPlain } from '../mail/text.js';
import { type PersonalisationContext, personalise, type Recipient } from './context.js';
import type { findCampaignTemplates, RecipientRow } from './store.js';
import { type ParsedCampaign, parseCampaign, renderCampaignMail, renderCampaignMailPieces } from './templates.js';

/** What building a campaign mail reads: PUBLIC_URL, MAIL_FROM, SENDER_ADDRESS and the footer's words. */
export type MessageDeps = Pick<Deps, 'config' | 'catalogues'>;

/** What every mail of a campaign is built from: parsed once per campaign, never per recipient. */
export interface CampaignMailSource {
  list: { slug: string; name: string };
  parsed: ParsedCampaign;
}

type StoredCampaign = NonNullable<Awaited<ReturnType<typeof findCampaignTemplates>>>;

/** Throws template_invalid for stored templates that do not parse (stored before today's checks, say). */
export function campaignMailSource(row: StoredCampaign): CampaignMailSource {
  return { list: { slug: row.list_slug, name: row.list_name }, parsed: parseCampaign(row) };
}

/** A recipient who can be mailed: one not erased (findRecipients leaves the erased out, a send may meet one). */
export const hasAddress = (row: RecipientRow): row is RecipientRow & { email: string } => row.email !== null;

export interface CampaignMail<Body extends PiecedMail['html'] = string> {
  /** All but the Message-ID, which the sender gives each attempt. */
  mail: Omit<OutgoingMail, 'messageId' | 'html' | 'text'> & { html: Body; text: Body };
  /** The affinity level the mail used, and the fields held about the person that it kept out. */
  level: PersonalisationContext['level'];
  withheld: string[];
}

/** The context a mail renders from, for a real recipient or the sample a new campaign is tried with. */
export function campaignContext(
  deps: MessageDeps, recipient: Recipient & { locale: string }, list: { name: string }, links: RecipientLinks,
): PersonalisationContext {
  return personalise(recipient, sharedContext(deps, recipient, list, links));
}

/** Renders one recipient's mail; throws MailRenderError (templates.ts) when the templates cannot render for them. */
export function buildCampaignMail(
  deps: MessageDeps, campaign: CampaignMailSource, recipient: Recipient & { locale: string }, links: RecipientLinks,
): CampaignMail {
  return buildWith(renderCampaignMail, deps, campaign, recipient, links);
}

/** buildCampaignMail with the bodies in pieces, whose runs were encoded once per campaign: what the worker sends. */
export function buildCampaignMailPieces(
  deps: MessageDeps, campaign: CampaignMailSource, recipient: Recipient & { locale: string }, links: RecipientLinks,
): CampaignMail<BodyPieces> {
  return buildWith(renderCampaignMailPieces, deps, campaign, recipient, links);
}

function buildWith<Body extends PiecedMail['html']>(
  render: (parsed: ParsedCampaign, context: Record<string, unknown>) => { subject: string; html: Body; text: Body },
  deps: MessageDeps, campaign: CampaignMailSource, recipient: Recipient & { locale: string }, links: RecipientLinks,
): CampaignMail<Body> {
  const personal = campaignContext(deps, recipient, campaign.list, links);
  const rendered = render(campaign.parsed, personal.context);
  return {
    mail: { ...rendered, from: deps.config.mailFrom, to: recipient.email, ...listHeaders(deps.config, campaign.list, links) },
    level: personal.level,
    withheld: personal.withheld,
  };
}

/** The context every recipient gets whatever their level: the list, the links, the footer. */
function sharedContext(deps: MessageDeps, recipient: { locale: string }, list: { name: string }, links: RecipientLinks) {
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
function listHeaders(config: Deps['config'], list: { slug: string; name: string }, links: RecipientLinks) {
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
