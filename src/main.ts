// The composition root: config -> database -> app + workers -> listen. Everything below
// takes what it needs as arguments; nothing reaches for a global.
import { serve } from '@hono/node-server';
import type { ServerType } from '@hono/node-server';
import path from 'node:path';
import type { Logger } from 'pino';
import { TemplateSandbox } from './campaigns/sandbox.js';
import { type Config, parseConfig } from './config.js';
import { createDatabase, type Database } from './db/database.js';
import { startEmbeddedDatabase } from './db/embedded.js';
import { migrateToLatest } from './db/migrate.js';
import type { Deps } from './deps.js';
import { createApp } from './http/app.js';
import { metricsOnPublicPort, opsApp } from './http/ops.js';
import { loadCatalogues } from './i18n.js';
import { TokenSigner } from './links/tokens.js';
import { jsonLogger } from './log.js';
import { ConsentLog } from './log/consent-log.js';
import { loadOrCreateDevLogKey } from './log/keys.js';
import { ConsentLogWorker, DEFAULT_CONSENT_LOG_OPTIONS } from './log/worker.js';
import { MailTemplates } from './mail/templates.js';
import { folderSender, type MailSender, smtpSender } from './mail/transport.js';
import { createMetrics, registerQueueGauges } from './metrics.js';
import { loadOrCreateDevSecret } from './secrets.js';
import { clearOldRawReports } from './consent/reports.js';
import { CampaignWorker } from './workers/campaign.js';
import { InboundSmtpListener } from './workers/inbound-smtp.js';
import { countQueuedMessages } from './workers/message-store.js';
import { countQueuedReconsents } from './workers/reconsent-message-store.js';
import { OutboxWorker } from './workers/outbox.js';
import { ReconsentWorker } from './workers/reconsent.js';
import { countQueuedMails } from './workers/outbox-store.js';
import { WebhookWorker } from './workers/webhooks.js';

/** serve: HTTP; worker: the mail workers (and the inbound SMTP listener when INBOUND_SMTP_PORT is set); inbound: that listener alone. */
export type Role = 'serve' | 'worker' | 'inbound';

/** Reads the environment or exits with one line per problem. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const result = parseConfig(env);
  if (!result.ok) {
    for (const problem of result.problems) process.stderr.write(`assent: ${problem}\n`);
    process.exit(2);
  }
  const { config } = result;
  // Development keeps its secrets under DATA_DIR (production requires them): links and
  // checkpoints made yesterday still verify after a restart.
  return {
    ...config,
    tokenSecrets: config.tokenSecrets ?? [loadOrCreateDevSecret(config.dataDir)],
    consentLog: { ...config.consentLog, key: config.consentLog.key ?? loadOrCreateDevLogKey(config.dataDir, config.consentLog.origin) },
  };
}

/** The service's logger: JSON lines, addresses replaced by tags keyed with the first token secret. */
export function createLogger(config: Config, destination?: Parameters<typeof jsonLogger>[1]): Logger {
  return jsonLogger({ level: config.logLevel, secret: config.tokenSecrets![0]! }, destination);
}

export interface OpenDatabase {
  db: Database;
  close(): Promise<void>;
}

/** The configured server, or an embedded PostgreSQL under DATA_DIR; migrated either way. */
export async function openDatabase(config: Config, log: Logger): Promise<OpenDatabase> {
  const embedded = config.databaseUrl ? undefined : await startEmbeddedDatabase(config.dataDir, { log: (line) => log.info(line) });
  if (embedded) log.info({ data_dir: path.resolve(config.dataDir) }, 'embedded PostgreSQL started');
  const url = config.databaseUrl ?? embedded!.url;
  // Migrations on a connection of their own without DATABASE_STATEMENT_TIMEOUT: one may
  // rewrite a large table for minutes, and cutting it off only rolls it back to start over.
  const migrator = createDatabase(url, { max: 1 });
  try {
    const applied = await migrateToLatest(migrator);
    if (applied.length > 0) log.info({ migrations: applied }, 'migrations applied');
  } catch (error) {
    await migrator.destroy();
    await embedded?.stop();
    throw error;
  }
  await migrator.destroy();
  const db = createDatabase(url, { max: config.databasePoolSize, statementTimeoutMs: config.databaseStatementTimeoutMs });
  return {
    db,
    async close() {
      await db.destroy();
      if (!embedded) return;
      await embedded.stop();
      log.info('embedded PostgreSQL stopped');
    },
  };
}

export function createSender(config: Config): MailSender {
  return config.smtpUrl
    ? smtpSender(config.smtpUrl, { dkim: config.dkim })
    : folderSender(path.join(config.dataDir, 'outbox'), { dkim: config.dkim });
}

export async function buildDeps(config: Config, log: Logger, db: Database, wake: { outbox?: () => void; campaigns?: () => void } = {}): Promise<Deps> {
  const catalogues = loadCatalogues();
  const metrics = createMetrics();
  registerQueueGauges(metrics, {
    outbox: () => countQueuedMails(db), campaign: () => countQueuedMessages(db), reconsent: () => countQueuedReconsents(db),
  });
  return {
    db,
    config,
    log,
    clock: () => Date.now(),
    signer: new TokenSigner(config.tokenSecrets!),
    mailTemplates: await MailTemplates.load(catalogues, { controller: config.controller }),
    catalogues,
    metrics,
    consentLog: new ConsentLog(db, { origin: config.consentLog.origin, signer: config.consentLog.key! }),
    templateSandbox: new TemplateSandbox(),
    wakeOutbox: wake.outbox ?? (() => undefined),
    wakeCampaigns: wake.campaigns ?? (() => undefined),
  };
}

export interface Service {
  deps: Deps;
  /** The port of the inbound SMTP listener, when it runs. */
  inboundSmtpPort: number | undefined;
  server: ServerType;
  /** The listener on METRICS_PORT, when set. */
  metricsServer: ServerType | undefined;
  stop(): Promise<void>;
}

function listen(app: { fetch: (request: Request) => Response | Promise<Response> }, port: number, hostname: string): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port, hostname }, () => resolve(server));
    server.once('error', reject);
  });
}

const portOf = (server: ServerType, fallback: number) => {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : fallback;
};

const closeServer = (server: ServerType | undefined) => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));

/**
 * Every role listens: `serve` with the whole app, `worker` with the operations endpoints
 * only (/healthz, /readyz, and /metrics with its mail counters), so both can be probed;
 * where /metrics is served is the same rule for both (http/ops.ts). With METRICS_PORT a
 * second listener serves the operations endpoints to the scraper.
 */
async function listenForRoles(deps: Deps, roles: readonly Role[]): Promise<Pick<Service, 'server' | 'metricsServer'>> {
  const { config, log } = deps;
  const publicMetrics = metricsOnPublicPort(config);
  const server = await listen(roles.includes('serve') ? createApp(deps) : opsApp(deps, { metrics: publicMetrics }), config.port, config.host);
  let metricsServer: ServerType | undefined;
  try {
    if (config.metricsPort !== undefined) metricsServer = await listen(opsApp(deps, { metrics: true }), config.metricsPort, config.host);
  } catch (error) {
    await closeServer(server);
    throw error;
  }
  const url = (listener: ServerType, port: number) => `http://${config.host}:${portOf(listener, port)}`;
  log.info({ url: url(server, config.port), public_url: config.publicUrl, roles }, roles.includes('serve') ? 'listening' : 'listening for health and metrics only');
  if (metricsServer) log.info({ url: `${url(metricsServer, config.metricsPort!)}/metrics` }, 'serving metrics on METRICS_PORT only');
  else if (!publicMetrics) log.warn('GET /metrics is not served: in production set METRICS_PORT (a port the public cannot reach) or METRICS_TOKEN');
  return { server, metricsServer };
}

/** In production, one warning line for each controller setting not given (GDPR Art. 13 asks for them). */
function warnOfMissingController(config: Config, log: Logger): void {
  if (config.nodeEnv !== 'production') return;
  const missing = { CONTROLLER_NAME: config.controller.name, CONTROLLER_CONTACT: config.controller.contact, PRIVACY_URL: config.controller.privacyUrl };
  for (const [name, value] of Object.entries(missing)) {
    if (value === undefined) log.warn(`${name} is not set: mails, pages and consent receipts do not say who holds the data`);
  }
}

export async function startService(config: Config, roles: readonly Role[], log = createLogger(config)): Promise<Service> {
  const database = await openDatabase(config, log);
  let worker: OutboxWorker | undefined;
  let campaignWorker: CampaignWorker | undefined;
  let reconsentWorker: ReconsentWorker | undefined;
  let webhookWorker: WebhookWorker | undefined;
  const deps = await buildDeps(config, log, database.db, { outbox: () => worker?.wake(), campaigns: () => campaignWorker?.wake() });
  const sender = roles.includes('worker') ? createSender(config) : undefined;
  // Every role runs the consent log's sequencer: an advisory lock makes one of them active,
  // and another takes over when it stops.
  const consentLogWorker = new ConsentLogWorker({
    db: deps.db, log, clock: deps.clock,
    metrics: { halted: deps.metrics.consentLogHalted, checkpoints: deps.metrics.consentLogCheckpoints, leaves: deps.metrics.consentLogLeaves },
  }, { ...DEFAULT_CONSENT_LOG_OPTIONS, origin: config.consentLog.origin, signer: config.consentLog.key!, tsaUrl: config.consentLog.tsaUrl });
  consentLogWorker.start();
  warnOfMissingController(config, log);
  if (sender) {
    worker = new OutboxWorker({ ...deps, sender });
    campaignWorker = new CampaignWorker({ ...deps, sender });
    // Webhooks run with the mail workers: fed from the ledger, so the signup request never waits on them.
    webhookWorker = new WebhookWorker(deps);
    worker.start();
    campaignWorker.start();
    reconsentWorker = new ReconsentWorker({ ...deps, sender });
    reconsentWorker.start();
    webhookWorker.start();
    log.info({ workers: [worker.id, campaignWorker.id], transport: config.smtpUrl ? 'smtp' : path.join(config.dataDir, 'outbox') }, 'mail workers started');
  }
  const inbound = await startInbound(deps, roles).catch(async (error: unknown) => {
    await Promise.all([worker?.stop(), campaignWorker?.stop(), reconsentWorker?.stop(), webhookWorker?.stop(), consentLogWorker.stop()]);
    sender?.close();
    await database.close();
    throw error;
  });
  // Workers finish or give back what they hold, then the SMTP pool and the database close.
  const stopBehindServer = async () => {
    await Promise.all([worker?.stop(), campaignWorker?.stop(), reconsentWorker?.stop(), webhookWorker?.stop(), consentLogWorker.stop(), inbound?.stop()]);
    if (sender) log.info('mail workers stopped');
    sender?.close();
    await database.close();
  };
  const { server, metricsServer } = await listenForRoles(deps, roles).catch(async (error: unknown) => {
    await stopBehindServer();
    throw error;
  });
  return {
    deps,
    inboundSmtpPort: inbound?.port,
    server,
    metricsServer,
    async stop() {
      await Promise.all([closeServer(server), closeServer(metricsServer)]);
      await stopBehindServer();
    },
  };
}

const HOUR_MS = 3_600_000;

/**
 * The inbound SMTP listener (worker role with INBOUND_SMTP_PORT, or the inbound role), and
 * the hourly clearing of raw reports past their 30 days, which every worker or inbound
 * process does, listener or not: reports arrive by the HTTP hooks too.
 */
async function startInbound(deps: Deps, roles: readonly Role[]): Promise<{ port: number | undefined; stop(): Promise<void> } | undefined> {
  const { config, log } = deps;
  if (roles.includes('inbound') && config.inbound.smtpPort === undefined) {
    throw new Error('assent inbound needs INBOUND_SMTP_PORT: the port to take bounces and complaints on');
  }
  if (!(roles.includes('worker') || roles.includes('inbound'))) return undefined;
  const clear = () => clearOldRawReports(deps).then(
    (cleared) => cleared > 0 && log.info({ cleared }, 'raw reports past 30 days cleared'),
    (error: unknown) => log.warn({ err: error }, 'could not clear old raw reports'));
  void clear();
  const timer = setInterval(clear, HOUR_MS);
  timer.unref();
  const listener = config.inbound.smtpPort === undefined ? undefined : new InboundSmtpListener(deps);
  const port = await listener?.start(config.inbound.smtpPort!, config.inbound.smtpHost).catch((error: unknown) => {
    clearInterval(timer);
    throw error;
  });
  return { port, async stop() { clearInterval(timer); await listener?.stop(); } };
}

export async function main(roles: readonly Role[]): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config);
  let service: Service;
  try {
    service = await startService(config, roles, log);
  } catch (error) {
    log.fatal({ err: error }, 'could not start');
    process.exit(1);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => { log.error('shutdown took longer than 10 s; exiting'); process.exit(1); }, 10_000);
    deadline.unref();
    service.stop().then(() => process.exit(0), (error) => { log.error({ err: error }, 'shutdown failed'); process.exit(1); });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/src/main.ts')) {
  await main(['serve', 'worker']);
}
