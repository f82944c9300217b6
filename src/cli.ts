// `assent [command]`: the service's roles and its admin commands.
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { getCampaign } from './campaigns/campaigns.js';
import { verifyEveryChain } from './consent/ledger.js';
import { MESSAGE_STATUSES } from './domain.js';
import { DomainError } from './errors.js';
import { createApiKey } from './keys/keys.js';
import * as keyStore from './keys/store.js';
import { createList, SIGNUP_FIELDS, type SignupField } from './lists/lists.js';
import { addressTag } from './log.js';
import { type CommandResult, httpLogSource, logCheckpoint, logVerify, receiptVerify } from './log/commands.js';
import { buildDeps, createLogger, loadConfig, main, openDatabase } from './main.js';
import type { Config } from './config.js';
import { getImport, type ImportProgress, startImport } from './imports/imports.js';
import type { Logger } from 'pino';

const USAGE = `usage: assent [command]

  (no command)     serve HTTP and run the mail workers in one process
  serve            HTTP only
  worker           mail workers only (and the inbound SMTP listener, with INBOUND_SMTP_PORT)
  inbound          the inbound SMTP listener for bounces and complaints only (INBOUND_SMTP_PORT)
  migrate          apply pending database migrations and exit
  lists create --slug SLUG --name NAME --consent-text TEXT [--fields first_name,last_name]
  keys create --name NAME   a marketer API key; the key is printed once, only its hash is kept
  keys list                 the keys: prefix, name, created, last used, revoked
  keys revoke PREFIX        the key stops working within a minute everywhere
  campaigns show ID         a campaign's status and progress: sent, failed, skipped, queued
  import FILE --list SLUG [--format csv|ndjson]
                   import a CSV (header row) or NDJSON file into the list, as
                   POST /api/v1/lists/SLUG/imports does; prints the rows rejected, by line;
                   exit 1 if the file cannot be imported at all (no email column, no such list)
  verify           recompute every subscriber's consent chain; exit 1 if any fails
  log-tag ADDRESS  the tag that stands for this address in the logs (addresses are never logged)
  log checkpoint   print the consent log's latest signed checkpoint
  log verify [--checkpoint FILE]…
                   recompute the consent log from the database and check it against every stored
                   checkpoint and every FILE (an earlier checkpoint kept elsewhere); exit 1 naming
                   the first tree size at which they part
  receipt verify FILE [--key VKEY] [--log URL] [--database]
                   check a consent receipt offline (signature, inclusion, evidence and chain
                   hashes, time-stamp); --key: the log's verifier key as obtained elsewhere;
                   --log: also check that the log at URL (…/consent-log) still extends it;
                   --database: also recompute the log from the configured database

Configuration comes from the environment; see the README.`;

/** Runs `task` against the configured database, then closes it. */
async function withDatabase<T>(task: (db: Awaited<ReturnType<typeof openDatabase>>['db'], context: { config: Config; log: Logger }) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const log = createLogger({ ...config, logLevel: 'warn' });
  const database = await openDatabase(config, log);
  try {
    return await task(database.db, { config, log });
  } finally {
    await database.close();
  }
}

async function listsCreate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { slug: { type: 'string' }, name: { type: 'string' }, 'consent-text': { type: 'string' }, fields: { type: 'string' } },
    strict: true,
  });
  if (!values.slug || !values.name || !values['consent-text']) throw new Error('lists create needs --slug, --name and --consent-text');
  const fields = values.fields === undefined ? undefined : values.fields.split(',').map((f) => f.trim()).filter(Boolean);
  const unknown = fields?.filter((field) => !(SIGNUP_FIELDS as readonly string[]).includes(field));
  if (unknown?.length) throw new Error(`unknown fields: ${unknown.join(', ')} (known: ${SIGNUP_FIELDS.join(', ')})`);
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(values.slug)) throw new Error('--slug: lower-case letters, digits and dashes, at most 63');
  const list = await withDatabase((db) => createList({ db }, {
    slug: values.slug!, name: values.name!, consentText: values['consent-text']!, fields: fields as SignupField[] | undefined,
  }));
  process.stdout.write(`created list ${list.slug} (consent version ${list.consentVersion})\n`);
}

async function keys(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  if (action === 'create') {
    const { values } = parseArgs({ args: rest, options: { name: { type: 'string' } }, strict: true });
    if (!values.name?.trim()) throw new Error('keys create needs --name');
    const key = await withDatabase((db) => createApiKey(db, values.name!.trim()));
    process.stdout.write(`created key ${key.prefix} (${key.name}); it is shown only this once:\n${key.key}\n`);
    return 0;
  }
  if (action === 'list') {
    const rows = await withDatabase((db) => keyStore.listApiKeys(db));
    const date = (value: Date | null) => value?.toISOString() ?? '-';
    process.stdout.write('prefix\tname\tcreated\tlast used\trevoked\n');
    for (const row of rows) {
      process.stdout.write(`${row.prefix}\t${row.name}\t${date(row.created_at)}\t${date(row.last_used_at)}\t${date(row.revoked_at)}\n`);
    }
    return 0;
  }
  if (action === 'revoke' && rest.length === 1) {
    const revoked = await withDatabase((db) => keyStore.revokeApiKey(db, rest[0]!));
    if (!revoked) throw new Error(`no active key with prefix ${rest[0]}`);
    process.stdout.write(`revoked key ${rest[0]}\n`);
    return 0;
  }
  process.stderr.write(`${USAGE}\n`);
  return 2;
}

async function campaignsShow(id: string): Promise<void> {
  const campaign = await withDatabase((db) => getCampaign({ db }, id));
  const { counts } = campaign;
  const total = Object.values(counts).reduce((sum, count) => sum + count, 0);
  const done = total - counts.queued;
  const date = (value: Date | null) => value?.toISOString() ?? '-';
  // What is handled first, then what is still queued.
  const shownStatuses = [...MESSAGE_STATUSES.filter((status) => status !== 'queued'), 'queued' as const];
  process.stdout.write([
    `campaign ${campaign.id}: ${campaign.name}`,
    `list       ${campaign.list}`,
    `status     ${campaign.status}`,
    `progress   ${done} of ${total} handled (${total === 0 ? 0 : Math.floor((done / total) * 100)}%)`,
    ...shownStatuses.map((status) => `${status.padEnd(11)}${counts[status]}`),
    `created    ${date(campaign.created_at)}`,
    `sending    ${date(campaign.sending_at)}`,
    `finished   ${date(campaign.finished_at)}`,
  ].join('\n') + '\n');
}

async function verifyAll(): Promise<boolean> {
  return withDatabase(async (db) => {
    let verified = 0;
    const failed: string[] = [];
    for await (const chain of verifyEveryChain(db)) {
      if (chain.verified) verified += 1;
      else failed.push(chain.subscriberId);
    }
    process.stdout.write(`${verified} consent chains verify, ${failed.length} do not\n`);
    for (const id of failed) process.stdout.write(`  does not verify: subscriber ${id}\n`);
    return failed.length === 0;
  });
}

/**
 * A progress bar redrawn in place on a terminal; plain lines, one per tenth of the file,
 * where the output is a log or a pipe (a bar's carriage returns would fill it with noise).
 */
function importProgress(stream: NodeJS.WriteStream): (progress: ImportProgress) => void {
  let shownTenth = -1;
  return (progress) => {
    const fraction = progress.bytes === 0 ? 1 : progress.position / progress.bytes;
    const counts = `${progress.rows_read} rows read: ${progress.imported} imported, ${progress.pending} pending, ${progress.unchanged} unchanged, ${progress.rejected} rejected`;
    if (stream.isTTY) {
      const width = 30;
      const filled = Math.round(fraction * width);
      stream.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.floor(fraction * 100)}% ${counts}`);
      return;
    }
    const tenth = Math.floor(fraction * 10);
    if (tenth === shownTenth) return;
    shownTenth = tenth;
    stream.write(`${tenth * 10}% ${counts}\n`);
  };
}

/** `assent import FILE --list SLUG`: the API's import (imports/imports.ts), fed from a file. */
async function importFile(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true, options: { list: { type: 'string' }, format: { type: 'string' } },
  });
  if (positionals.length !== 1 || !values.list) throw new Error('import needs a FILE and --list SLUG');
  const file = positionals[0]!;
  const format = values.format ?? (/\.(ndjson|jsonl)$/i.test(file) ? 'ndjson' : 'csv');
  if (format !== 'csv' && format !== 'ndjson') throw new Error('--format: csv or ndjson');
  return withDatabase(async (db, { config, log }) => {
    const deps = await buildDeps(config, log, db);
    // The evidence names who sent the file: here the operator's account rather than an API key.
    const started = await startImport(deps, {
      listSlug: values.list!, format, body: createReadStream(file), apiKey: `cli:${userInfo().username}`,
      onProgress: importProgress(process.stderr),
    });
    await started.done;
    if (process.stderr.isTTY) process.stderr.write('\n');
    const view = await getImport(deps, started.id);
    process.stdout.write(`import ${view.id} ${view.status}: ${view.rows_read} rows read, ${view.imported} imported, `
      + `${view.pending} pending (sent the confirmation mail), ${view.unchanged} unchanged, ${view.rejected} rejected\n`);
    for (const rejection of view.rejections) process.stdout.write(`line ${rejection.line}: ${rejection.reason}\n`);
    if (view.rejected > view.rejections.length) process.stdout.write(`… and ${view.rejected - view.rejections.length} more rejected rows\n`);
    return view.status === 'finished' ? 0 : 1;
  });
}

function print(result: CommandResult): number {
  for (const line of result.out) process.stdout.write(`${line}\n`);
  for (const line of result.err) process.stderr.write(`${line}\n`);
  return result.exitCode;
}

async function consentLogCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  if (action === 'checkpoint' && rest.length === 0) return print(await withDatabase((db) => logCheckpoint(db)));
  if (action === 'verify') {
    const { values } = parseArgs({ args: rest, options: { checkpoint: { type: 'string', multiple: true } }, strict: true });
    const files = await Promise.all((values.checkpoint ?? []).map(async (name) => ({ name, note: await readFile(name, 'utf8') })));
    const key = loadConfig().consentLog.key!; // a signer is its own verifier
    return print(await withDatabase((db) => logVerify(db, files, key)));
  }
  process.stderr.write(`${USAGE}\n`);
  return 2;
}

async function receiptCommand(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest, allowPositionals: true, strict: true,
    options: { key: { type: 'string' }, log: { type: 'string' }, database: { type: 'boolean' } },
  });
  if (action !== 'verify' || positionals.length !== 1) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const text = await readFile(positionals[0]!, 'utf8');
  const options = { ...(values.key !== undefined && { key: values.key }), ...(values.log !== undefined && { log: httpLogSource(values.log) }) };
  if (!values.database) return print(await receiptVerify(text, options));
  return print(await withDatabase((db) => receiptVerify(text, { ...options, db })));
}

async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined: await main(['serve', 'worker']); return -1;
    case 'serve': await main(['serve']); return -1;
    case 'worker': await main(['worker']); return -1;
    case 'inbound': await main(['inbound']); return -1;
    case 'migrate': await withDatabase(async () => undefined); process.stdout.write('migrations applied\n'); return 0;
    case 'verify': return (await verifyAll()) ? 0 : 1;
    case 'keys': return keys(rest);
    case 'campaigns':
      if (rest[0] === 'show' && rest.length === 2) { await campaignsShow(rest[1]!); return 0; }
      break;
    case 'log-tag':
      if (rest.length === 1) { process.stdout.write(`${addressTag(loadConfig().tokenSecrets![0]!, rest[0]!)}\n`); return 0; }
      break;
    case 'lists':
      if (rest[0] === 'create') { await listsCreate(rest.slice(1)); return 0; }
      break;
    case 'import': return importFile(rest);
    case 'log': return consentLogCommand(rest);
    case 'receipt': return receiptCommand(rest);
    case 'help': case '--help': case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
  }
  process.stderr.write(`${USAGE}\n`);
  return 2;
}

try {
  const code = await run(process.argv.slice(2));
  // -1: a long-running role; it exits on its own signal
  if (code >= 0) process.exit(code);
} catch (error) {
  process.stderr.write(`assent: ${error instanceof DomainError || error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
