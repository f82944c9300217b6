// The signed tag of each mail (VERP, inbound/verp.ts): with BOUNCE_ADDRESS, the envelope
// sender (MAIL FROM, which becomes the Return-Path) is that address with the tag, so a
// bounce is matched by where it was sent; without it, From's address (nodemailer's default),
// and bounces are matched by the original's Message-ID.
//
// Postmark's and SendGrid's webhooks carry neither our envelope sender nor our Message-ID
// (Mailgun's may lack both too), so the same tag also goes in the headers they echo back,
// but only when that provider's webhook is configured: through any other relay those headers would reach the recipient
// as noise (docs/decisions.md).
import type { Config } from '../config.js';
import { signVerpTag, type VerpClaims, type VerpConfig, verpAddress, verpKeysFromSecrets } from '../inbound/verp.js';

/** The VERP settings, or undefined without BOUNCE_ADDRESS. Keys are derived once, not per mail. */
export function verpConfig(config: Pick<Config, 'inbound' | 'tokenSecrets'>): VerpConfig | undefined {
  const { bounceAddress } = config.inbound;
  return bounceAddress ? { bounceAddress, keys: verpKeysFromSecrets(config.tokenSecrets!) } : undefined;
}

/** Where a mail's tag goes: its envelope sender and the headers a provider echoes back. */
export interface MailTag {
  envelopeFrom: string;
  headers: Record<string, string>;
}

/** Gives each mail its tag; undefined (no BOUNCE_ADDRESS) leaves nodemailer's envelope sender. */
export function mailTagger(config: Pick<Config, 'inbound' | 'tokenSecrets'>): (mail: VerpClaims) => MailTag | undefined {
  const verp = verpConfig(config);
  if (!verp) return () => undefined;
  const { postmarkWebhookToken, sendgridWebhookKey, mailgunSigningKey } = config.inbound;
  return (mail) => {
    const tag = signVerpTag(mail, verp.keys);
    const headers: Record<string, string> = {};
    // Postmark returns X-PM-Metadata-<name> as Metadata.<name> in its bounce and spam-complaint webhooks.
    if (postmarkWebhookToken) headers['X-PM-Metadata-verp'] = tag;
    // SendGrid returns unique_args as top-level fields of each event. The spaces let the
    // header fold (it is longer than a line) instead of being encoded, which SendGrid would not read.
    if (sendgridWebhookKey) headers['X-SMTPAPI'] = `{"unique_args": {"verp": "${tag}"}}`;
    // Mailgun returns X-Mailgun-Variables as the event's user-variables.
    if (mailgunSigningKey) headers['X-Mailgun-Variables'] = `{"verp": "${tag}"}`;
    return { envelopeFrom: verpAddress(verp.bounceAddress, tag), headers };
  };
}
