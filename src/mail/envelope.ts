// The envelope sender of each mail (MAIL FROM, which becomes the Return-Path): with
// BOUNCE_ADDRESS, that address with a signed tag naming the mail (VERP, inbound/verp.ts), so a
// bounce is matched by where it was sent; without it, From's address (nodemailer's default),
// and bounces are matched by the original's Message-ID.
import type { Config } from '../config.js';
import { signVerpTag, type VerpClaims, type VerpConfig, verpAddress, verpKeysFromSecrets } from '../inbound/verp.js';

/** The VERP settings, or undefined without BOUNCE_ADDRESS. Keys are derived once, not per mail. */
export function verpConfig(config: Pick<Config, 'inbound' | 'tokenSecrets'>): VerpConfig | undefined {
  const { bounceAddress } = config.inbound;
  return bounceAddress ? { bounceAddress, keys: verpKeysFromSecrets(config.tokenSecrets!) } : undefined;
}

/** Gives each mail its envelope sender: undefined leaves nodemailer's (From's address). */
export function envelopeSender(config: Pick<Config, 'inbound' | 'tokenSecrets'>): (mail: VerpClaims) => string | undefined {
  const verp = verpConfig(config);
  return verp ? (mail) => verpAddress(verp.bounceAddress, signVerpTag(mail, verp.keys)) : () => undefined;
}
