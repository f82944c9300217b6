// The environment, parsed once into one typed, frozen object. Nothing else reads process.env.
import { z } from 'zod';
import { bounceAddressFitsTags } from './inbound/verp.js';
import { parseConsentLogKey } from './log/keys.js';
import type { SignerKey } from './log/note.js';

export interface RateLimit {
  readonly count: number;
  readonly windowMs: number;
}

export interface DkimConfig {
  readonly domainName: string;
  readonly keySelector: string;
  readonly privateKey: string;
}

export interface Config {
  readonly nodeEnv: 'development' | 'production' | 'test';
  readonly port: number;
  readonly host: string;
  /** A second listener with /metrics, /healthz and /readyz only, for the scraper; /metrics then leaves PORT. */
  readonly metricsPort: number | undefined;
  /** Bearer token /metrics requires wherever it is served. */
  readonly metricsToken: string | undefined;
  readonly publicUrl: string;
  readonly databaseUrl: string | undefined;
  /** Connections per process. Each campaign send in flight holds one while SMTP answers. */
  readonly databasePoolSize: number;
  /** How long one statement may take before the request gets 503, in ms; 0: no limit. */
  readonly databaseStatementTimeoutMs: number;
  readonly dataDir: string;
  readonly smtpUrl: string | undefined;
  readonly mailFrom: string;
  readonly senderAddress: string | undefined;
  /** Undefined until main() loads or generates the development secret. */
  readonly tokenSecrets: readonly string[] | undefined;
  readonly apiKey: string | undefined;
  readonly subscribeRateLimit: RateLimit | undefined;
  /** Failed API authentications per client IP before 429; undefined: no limit. */
  readonly apiAuthFailureLimit: RateLimit | undefined;
  readonly sendRate: number;
  readonly redirectHosts: readonly string[];
  readonly trustProxy: boolean;
  readonly dkim: DkimConfig | undefined;
  readonly logLevel: string;
  /** The consent log (docs/consent-log.md): its name and signing key (undefined until main() loads the development key). */
  readonly consentLog: {
    readonly origin: string;
    readonly key: SignerKey | undefined;
    /** An RFC 3161 time-stamping authority for every checkpoint. */
    readonly tsaUrl: string | undefined;
  };
  /** Bounces and complaints (issue 18; README, "Bounces and complaints"). */
  readonly inbound: {
    /** The envelope sender's base, `bounces@…`; each mail's gets a signed tag after a `+` (VERP). */
    readonly bounceAddress: string | undefined;
    /** The SMTP listener for reports, in the worker role and `assent inbound`; undefined: none. */
    readonly smtpPort: number | undefined;
    /** Where it listens; HOST unless INBOUND_SMTP_HOST says otherwise (an MX faces the internet). */
    readonly smtpHost: string;
    readonly sesTopicArns: readonly string[];
    readonly postmarkWebhookToken: string | undefined;
    readonly sendgridWebhookKey: string | undefined;
    readonly mailgunSigningKey: string | undefined;
    /** A campaign pauses itself past these shares of its delivered mails (after 1,000). */
    readonly complaintPauseRate: number;
    readonly bouncePauseRate: number;
  };
  /** Webhook URLs may reach private, loopback and link-local addresses: outside production, or with WEBHOOK_ALLOW_PRIVATE=1. */
  readonly webhookAllowPrivate: boolean;
  /** Who holds the data (GDPR Art. 13; ISO/IEC TS 27560 "controller"), named in mails, pages and receipts. */
  readonly controller: {
    readonly name: string | undefined;
    readonly contact: string | undefined;
    readonly privacyUrl: string | undefined;
  };
}

const UNITS: Record<string, number> = { s: 1_000, sec: 1_000, m: 60_000, min: 60_000, h: 3_600_000, hour: 3_600_000 };

/** `20/min`, `5/s`, `100/h`; `0` turns the limit off. */
export function parseRateLimit(text: string): RateLimit | undefined | Error {
  const trimmed = text.trim();
  if (trimmed === '0') return undefined;
  const match = /^(\d+)\s*\/\s*(\d*)\s*([a-z]+)$/.exec(trimmed);
  const unit = match ? UNITS[match[3]!] : undefined;
  if (!match || unit === undefined) return new Error(`expected a count per unit such as 20/min, got "${text}"`);
  const count = Number(match[1]);
  if (count === 0) return undefined;
  return { count, windowMs: unit * (match[2] ? Number(match[2]) : 1) };
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, min: 60_000 };

/** `5s`, `500ms`, `2min`; `0` is no limit. */
export function parseDuration(text: string): number | Error {
  const match = /^(\d+)\s*(ms|s|min)?$/.exec(text.trim());
  if (!match || (match[2] === undefined && match[1] !== '0')) return new Error(`expected a duration such as 5s or 500ms, got "${text}"`);
  return Number(match[1]) * DURATION_UNITS[match[2] ?? 'ms']!;
}

const list = (text: string | undefined) =>
  (text ?? '').split(',').map((item) => item.trim()).filter((item) => item.length > 0);

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().min(1).default('127.0.0.1'),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  METRICS_TOKEN: z.string().min(16, 'at least 16 characters').optional(),
  PUBLIC_URL: z.url({ protocol: /^https?$/ }).optional(),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must start with postgres://').optional(),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(2).max(1000).default(10),
  // Every statement of a request or a worker round takes milliseconds; 5 s is a database that
  // is frozen or cut off, and the client should hear 503 rather than wait for it.
  DATABASE_STATEMENT_TIMEOUT: z.string().default('5s'),
  DATA_DIR: z.string().min(1).default('./.data'),
  SMTP_URL: z.string().regex(/^smtps?:\/\//, 'must start with smtp:// or smtps://').optional(),
  MAIL_FROM: z.string().min(3).default('assent <no-reply@localhost>'),
  SENDER_ADDRESS: z.string().min(1).optional(),
  TOKEN_SECRETS: z.string().optional(),
  ASSENT_API_KEY: z.string().min(1).optional(),
  SUBSCRIBE_RATE_LIMIT: z.string().default('20/min'),
  API_AUTH_FAILURE_LIMIT: z.string().default('10/min'),
  SEND_RATE: z.coerce.number().min(0).default(0),
  REDIRECT_HOSTS: z.string().optional(),
  TRUST_PROXY: z.enum(['', '0', '1', 'false', 'true', 'off', 'on']).default(''),
  DKIM_DOMAIN: z.string().min(1).optional(),
  DKIM_SELECTOR: z.string().min(1).optional(),
  DKIM_PRIVATE_KEY: z.string().min(1).optional(),
  CONSENT_LOG_KEY: z.string().min(1).optional(),
  CONSENT_LOG_ORIGIN: z.string().regex(/^[^\s+]+$/, 'no spaces and no "+"').max(200).optional(),
  TSA_URL: z.url({ protocol: /^https?$/ }).optional(),
  CONTROLLER_NAME: z.string().min(1).max(200).optional(),
  CONTROLLER_CONTACT: z.string().min(3).max(320).optional(),
  PRIVACY_URL: z.url({ protocol: /^https?$/ }).optional(),
  BOUNCE_ADDRESS: z.email('must be an address such as bounces@mail.example.org').optional(),
  INBOUND_SMTP_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  INBOUND_SMTP_HOST: z.string().min(1).optional(),
  SES_TOPIC_ARNS: z.string().optional(),
  POSTMARK_WEBHOOK_TOKEN: z.string().min(16, 'at least 16 characters').optional(),
  SENDGRID_WEBHOOK_KEY: z.string().min(1).optional(),
  MAILGUN_SIGNING_KEY: z.string().min(1).optional(),
  COMPLAINT_PAUSE_RATE: z.coerce.number().gt(0).max(1).default(0.003),
  BOUNCE_PAUSE_RATE: z.coerce.number().gt(0).max(1).default(0.05),
  WEBHOOK_ALLOW_PRIVATE: z.enum(['0', '1', 'false', 'true']).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

/** Turns an environment into a Config, or into one line per problem. */
export function parseConfig(env: Record<string, string | undefined>): ConfigResult {
  // An empty variable means "not set", as in most shells' `VAR= command`.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    return { ok: false, problems: parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`) };
  }
  const e = parsed.data;
  const problems: string[] = [];

  if (e.NODE_ENV === 'production') {
    if (!e.DATABASE_URL) problems.push('DATABASE_URL is required in production: the postgres:// URL of the database');
    if (!e.SMTP_URL) problems.push('SMTP_URL is required in production: smtp://user:pass@host:port of the mail relay');
    if (!e.PUBLIC_URL) problems.push('PUBLIC_URL is required in production: the https:// base of every link put in a mail');
    else if (!e.PUBLIC_URL.startsWith('https://')) problems.push('PUBLIC_URL must be https:// in production');
    if (!e.TOKEN_SECRETS) problems.push('TOKEN_SECRETS is required in production: comma-separated secrets of at least 32 characters');
    if (!e.CONSENT_LOG_KEY) problems.push('CONSENT_LOG_KEY is required in production: the Ed25519 key that signs the consent log (PKCS#8 PEM, or a base64 32-byte seed)');
  }
  const tokenSecrets = e.TOKEN_SECRETS === undefined ? undefined : list(e.TOKEN_SECRETS);
  if (tokenSecrets && tokenSecrets.some((secret) => secret.length < 32)) {
    problems.push('TOKEN_SECRETS: every secret must be at least 32 characters');
  }
  const rateLimit = parseRateLimit(e.SUBSCRIBE_RATE_LIMIT);
  if (rateLimit instanceof Error) problems.push(`SUBSCRIBE_RATE_LIMIT: ${rateLimit.message}`);
  const authFailureLimit = parseRateLimit(e.API_AUTH_FAILURE_LIMIT);
  if (authFailureLimit instanceof Error) problems.push(`API_AUTH_FAILURE_LIMIT: ${authFailureLimit.message}`);
  if (e.METRICS_PORT !== undefined && e.METRICS_PORT !== 0 && e.METRICS_PORT === e.PORT) {
    problems.push('METRICS_PORT must differ from PORT: it is where the public cannot reach');
  }
  const statementTimeout = parseDuration(e.DATABASE_STATEMENT_TIMEOUT);
  if (statementTimeout instanceof Error) problems.push(`DATABASE_STATEMENT_TIMEOUT: ${statementTimeout.message}`);

  const publicUrl = (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, '');
  const origin = e.CONSENT_LOG_ORIGIN ?? `${new URL(publicUrl).host}/consent-log`;
  const logKey = e.CONSENT_LOG_KEY === undefined ? undefined : parseConsentLogKey(e.CONSENT_LOG_KEY, origin);
  if (logKey instanceof Error) problems.push(`CONSENT_LOG_KEY: ${logKey.message}`);

  const dkimParts = [e.DKIM_DOMAIN, e.DKIM_SELECTOR, e.DKIM_PRIVATE_KEY].filter((part) => part !== undefined);
  if (dkimParts.length > 0 && dkimParts.length < 3) {
    problems.push('DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY must be set together');
  }
  if (e.BOUNCE_ADDRESS && (e.BOUNCE_ADDRESS.includes('+') || !bounceAddressFitsTags(e.BOUNCE_ADDRESS))) {
    problems.push('BOUNCE_ADDRESS: its local part must leave room for "+" and a 55-character tag (at most 8 characters) and hold no "+"');
  }
  if (problems.length > 0) return { ok: false, problems };

  const config: Config = {
    nodeEnv: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST,
    metricsPort: e.METRICS_PORT,
    metricsToken: e.METRICS_TOKEN,
    publicUrl,
    databaseUrl: e.DATABASE_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    databaseStatementTimeoutMs: statementTimeout as number,
    dataDir: e.DATA_DIR,
    smtpUrl: e.SMTP_URL,
    mailFrom: e.MAIL_FROM,
    senderAddress: e.SENDER_ADDRESS,
    tokenSecrets,
    apiKey: e.ASSENT_API_KEY,
    subscribeRateLimit: rateLimit as RateLimit | undefined,
    apiAuthFailureLimit: authFailureLimit as RateLimit | undefined,
    sendRate: e.SEND_RATE,
    redirectHosts: list(e.REDIRECT_HOSTS).map((host) => host.toLowerCase()),
    trustProxy: ['1', 'true', 'on'].includes(e.TRUST_PROXY),
    dkim: e.DKIM_DOMAIN && e.DKIM_SELECTOR && e.DKIM_PRIVATE_KEY
      ? { domainName: e.DKIM_DOMAIN, keySelector: e.DKIM_SELECTOR, privateKey: e.DKIM_PRIVATE_KEY.replace(/\\n/g, '\n') }
      : undefined,
    logLevel: e.LOG_LEVEL,
    consentLog: { origin, key: logKey as SignerKey | undefined, tsaUrl: e.TSA_URL },
    inbound: {
      bounceAddress: e.BOUNCE_ADDRESS,
      smtpPort: e.INBOUND_SMTP_PORT,
      smtpHost: e.INBOUND_SMTP_HOST ?? e.HOST,
      sesTopicArns: list(e.SES_TOPIC_ARNS),
      postmarkWebhookToken: e.POSTMARK_WEBHOOK_TOKEN,
      sendgridWebhookKey: e.SENDGRID_WEBHOOK_KEY,
      mailgunSigningKey: e.MAILGUN_SIGNING_KEY,
      complaintPauseRate: e.COMPLAINT_PAUSE_RATE,
      bouncePauseRate: e.BOUNCE_PAUSE_RATE,
    },
    webhookAllowPrivate: e.NODE_ENV !== 'production' || ['1', 'true'].includes(e.WEBHOOK_ALLOW_PRIVATE ?? ''),
    controller: { name: e.CONTROLLER_NAME, contact: e.CONTROLLER_CONTACT, privacyUrl: e.PRIVACY_URL },
  };
  return { ok: true, config: Object.freeze(config) };
}
