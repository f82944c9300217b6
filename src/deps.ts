// What the composition root (main.ts) builds once and passes down. Functions take the part
// they use: `Pick<Deps, 'db' | 'clock'>`.
import type { Logger } from 'pino';
import type { TemplateSandbox } from './campaigns/sandbox.js';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import type { Catalogues } from './i18n.js';
import type { ConsentLog } from './log/consent-log.js';
import type { TokenSigner } from './links/tokens.js';
import type { MailTemplates } from './mail/templates.js';
import type { Metrics } from './metrics.js';

/** Milliseconds since the epoch; tests move it. */
export type Clock = () => number;

export interface Deps {
  db: Database;
  clock: Clock;
  config: Config;
  log: Logger;
  signer: TokenSigner;
  mailTemplates: MailTemplates;
  catalogues: Catalogues;
  metrics: Metrics;
  /** The consent log's read side: checkpoints, proofs, its key, whether it still signs. */
  consentLog: ConsentLog;
  /** Where a new campaign's templates are compiled and tried, off the event loop. */
  templateSandbox: TemplateSandbox;
  /** Tells the in-process outbox worker that a mail is waiting, so it need not wait for its poll. */
  wakeOutbox: () => void;
  /** Tells the in-process campaign worker that a campaign started or resumed. */
  wakeCampaigns: () => void;
}
