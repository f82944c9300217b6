// Imports: a file of people brought into a list. A row that brings its consent (consented_at)
// becomes confirmed with an `imported` consent event whose evidence holds what the row said,
// the file's SHA-256 and the key that sent it; a row without gets the form's confirmation
// mail (signup.ts, the same throttles); a suppressed or erased address is never added back,
// one that left the list is not put back on it, and a confirmed one is never downgraded.
// Every row is judged on its own: a bad one is reported by line and the rest goes on. Rows
// are written a batch per transaction (importBatch).
import type { Readable } from 'node:stream';
import type { ControlledTransaction } from 'kysely';
import { addressHash, cleanName, normaliseEmail } from '../consent/address.js';
import { appendConsentEvent, appendConsentEventsOnePerSubscriber, chainHead, chainHeads } from '../consent/ledger.js';
import { signupInBatch } from '../consent/signup.js';
import * as consentStore from '../consent/store.js';
import type { Trx } from '../db/database.js';
import type { DB } from '../db/schema.js';
import type { Deps } from '../deps.js';
import type { SubscriptionStatus } from '../domain.js';
import { DomainError } from '../errors.js';
import { DEFAULT_LOCALE, matchLocale } from '../i18n.js';
import * as listStore from '../lists/store.js';
import type { ListWithConsent } from '../lists/store.js';
import { type ImportRow, RowError, toImportRow } from './columns.js';
import { type ImportFormat, readCsvHeader, readNdjsonKeys, readRecords, type SpooledFile, spool } from './reader.js';
import * as store from './store.js';

type ImportDeps = Pick<Deps, 'db' | 'clock' | 'config' | 'signer' | 'mailTemplates' | 'log' | 'wakeOutbox'>;

/** Rejections kept per import (all are counted): enough to fix a file, bounded for one that is all wrong. */
const KEPT_REJECTIONS = 10_000;

export interface ImportProgress extends store.ImportCounts {
  /** Bytes of the file read so far, and its size. */
  position: number;
  bytes: number;
}

export interface StartedImport {
  id: string;
  file: SpooledFile;
  /** Resolves when every row is done (the import's row says so too). */
  done: Promise<store.ImportCounts>;
}

/**
 * Spools the body, checks its header (no `email` column: 422 before anything is written),
 * records the import and starts its rows; resolves once the import is recorded.
 */
export async function startImport(deps: ImportDeps, input: {
  listSlug: string; format: ImportFormat; body: Readable | ReadableStream<Uint8Array>; apiKey: string;
  onProgress?: (progress: ImportProgress) => void;
}): Promise<StartedImport> {
  const list = await listStore.findListBySlug(deps.db, input.listSlug);
  if (!list) throw new DomainError('list_not_found', `there is no list "${input.listSlug}"`);
  const file = await spool(input.body);
  try {
    const columns = input.format === 'csv' ? await readCsvHeader(file.path) : await readNdjsonKeys(file.path);
    if (!columns.includes('email')) {
      throw new DomainError('import_invalid', input.format === 'csv'
        ? 'the header row has no email column (email, or "Email Address" as Mailchimp exports it)'
        : 'the first line is not a JSON object with an "email"', { email: 'missing' });
    }
  } catch (error) {
    await file.remove();
    throw error;
  }
  const id = await store.insertImport(deps.db, { listId: list.id, createdBy: input.apiKey, format: input.format, sha256: Buffer.from(file.sha256, 'hex') });
  const done = runImport(deps, { id, list, file, format: input.format, apiKey: input.apiKey, onProgress: input.onProgress })
    .finally(() => file.remove());
  return { id, file, done };
}

type RowOutcome = 'imported' | 'pending' | 'unchanged' | { rejected: string };

/**
 * Rows written per transaction. One transaction per row spent most of an import's time on
 * commits (each one a WAL flush); a batch holds its rows' mailbox locks until it commits,
 * so it is kept small enough that a signup for one of those addresses waits a moment only.
 */
const BATCH_ROWS = 500;

interface Job { id: string; list: ListWithConsent; file: SpooledFile; apiKey: string }
interface ReadRow { line: number; row: ImportRow }

async function runImport(deps: ImportDeps, job: Job & { format: ImportFormat; onProgress?: (progress: ImportProgress) => void }): Promise<store.ImportCounts> {
  const counts: store.ImportCounts = { rows_read: 0, imported: 0, pending: 0, unchanged: 0, rejected: 0 };
  let kept = 0;
  // Counts and rejections reach the import's row only once their batch has committed, so
  // they always say what is in the database, even when the import stops half-way.
  let rejections: { line: number; reason: string }[] = [];
  const count = (line: number, outcome: RowOutcome) => {
    if (typeof outcome === 'object') {
      counts.rejected += 1;
      if (kept < KEPT_REJECTIONS) { kept += 1; rejections.push({ line, reason: outcome.rejected }); }
    } else {
      counts[outcome] += 1;
    }
  };
  let batch: ReadRow[] = [];
  let position = 0;
  const flush = async () => {
    for (const [line, outcome] of await importBatch(deps, job, batch)) count(line, outcome);
    batch = [];
    await store.insertRejections(deps.db, job.id, rejections);
    rejections = [];
    await store.saveProgress(deps.db, job.id, counts);
    job.onProgress?.({ ...counts, position, bytes: job.file.bytes });
  };
  try {
    for await (const record of readRecords(job.file.path, job.format)) {
      position = record.position;
      counts.rows_read += 1;
      const read = record.record === undefined ? { rejected: record.error ?? 'unreadable' } : readRow(deps, record.record);
      if ('rejected' in read) count(record.line, read);
      else batch.push({ line: record.line, row: read });
      if (batch.length >= BATCH_ROWS) await flush();
    }
    position = job.file.bytes;
    await flush();
    await store.saveProgress(deps.db, job.id, counts, { status: 'finished' });
    return counts;
  } catch (error) {
    deps.log.error({ err: error, import_id: job.id }, 'import failed');
    // The batch in hand rolled back: its rows are neither counted nor reported.
    counts.rows_read -= batch.length;
    await store.insertRejections(deps.db, job.id, rejections).catch(() => undefined);
    await store.saveProgress(deps.db, job.id, counts, { status: 'failed', error: 'the import stopped: see the service log' });
    return counts;
  }
}

/** A record as a row to write, or why it is rejected before any database work. */
function readRow(deps: ImportDeps, record: Record<string, unknown>): ImportRow | { rejected: string } {
  let row: ReturnType<typeof toImportRow>;
  try {
    row = toImportRow(record, deps.clock());
  } catch (error) {
    if (error instanceof RowError) return { rejected: error.message };
    throw error;
  }
  if (row.email === null) return { rejected: 'email: missing' };
  const email = normaliseEmail(row.email);
  if (!email) return { rejected: 'email: not a valid email address' };
  if (row.blocklisted) return { rejected: 'blocklisted in the exporting system: not imported' };
  return { ...row, email };
}

/**
 * One transaction for a batch of rows: the mailboxes' locks, then in two statements which
 * addresses are suppressed and which already on the list, then each row in file order (its
 * consent chain is sequential, so its writes are too). A row sees the rows before it: an
 * address twice in a file counts once.
 */
async function importBatch(deps: ImportDeps, job: Job, rows: ReadRow[]): Promise<[number, RowOutcome][]> {
  if (rows.length === 0) return [];
  const outcomes: [number, RowOutcome][] = [];
  let mailed = false;
  const trx = await deps.db.startTransaction().execute();
  try {
    const emails = rows.map(({ row }) => row.email);
    await consentStore.lockMailboxes(trx, emails);
    const suppressed = await store.findSuppressed(trx, emails.map(addressHash));
    const statuses = await store.findSubscriptionStatuses(trx, emails, job.list.id);
    const standing = (row: ImportRow) => (suppressed.has(addressHash(row.email).toString('hex')) ? 'suppressed' : statuses.get(row.email.toLowerCase()));
    // New subscriptions with their consent, each address once in the batch, are written
    // together; the rest (an address twice, a pending one, a request for consent) row by row.
    const seen = new Map<string, number>();
    for (const { row } of rows) seen.set(row.email.toLowerCase(), (seen.get(row.email.toLowerCase()) ?? 0) + 1);
    const atOnce = rows.filter(({ row }) => row.consent && standing(row) === undefined && seen.get(row.email.toLowerCase()) === 1);
    await importConsentedAtOnce(trx, job, atOnce);
    for (const { line } of atOnce) outcomes.push([line, 'imported']);
    for (const { line, row } of rows.filter((r) => !atOnce.includes(r))) {
      const outcome = await importRow(deps, trx, job, { line, row, status: standing(row) });
      if (outcome === 'imported') statuses.set(row.email.toLowerCase(), 'confirmed');
      if (outcome === 'pending') { statuses.set(row.email.toLowerCase(), 'pending'); mailed = true; }
      outcomes.push([line, outcome]);
    }
    await trx.commit().execute();
  } catch (error) {
    await trx.rollback().execute();
    throw error;
  }
  if (mailed) deps.wakeOutbox();
  return outcomes;
}

/** One row, given where its address stands: never added back if suppressed, never downgraded if confirmed. */
async function importRow(deps: ImportDeps, trx: ControlledTransaction<DB>, job: Job, { line, row, status }: ReadRow & { status: SubscriptionStatus | 'suppressed' | undefined }): Promise<RowOutcome> {
  if (status === 'suppressed') return { rejected: 'suppressed (erased, bounced or complained): never added back' };
  if (status === 'confirmed') return 'unchanged';
  if (status !== undefined && status !== 'pending') return { rejected: `${status} from this list: not put back on it` };
  // A pending subscriber whose row brings consent is confirmed by it.
  if (row.consent) return importWithConsent(trx, job, row, line);
  // Already pending: it had its mail; a second import of the same file sends none.
  if (status === 'pending') return 'unchanged';
  return importForPermission(deps, trx, job, row, line);
}

/** An `imported` event's evidence: what the row said, as it said it, the file by its hash and line, and who sent it. */
function importedEvidence(job: Job, row: ImportRow, line: number) {
  const { fields } = names(job.list, row);
  return {
    // The proof is the exporter's; we vouch only that this file said so.
    row: { email: row.email, ...row.consent, ...(fields.first_name && { first_name: fields.first_name }), ...(fields.last_name && { last_name: fields.last_name }) },
    import: { id: job.id, file_sha256: job.file.sha256, line },
    api_key: { name: job.apiKey },
    list: { id: job.list.id, slug: job.list.slug, name: job.list.name },
    consent: { version: job.list.consentVersion, text: job.list.consentText },
  };
}

const names = (list: ListWithConsent, row: ImportRow) => {
  const fields: { first_name?: string; last_name?: string; locale?: string; attributes?: string } = {};
  const first = cleanName(row.firstName ?? undefined)?.slice(0, 100);
  const last = cleanName(row.lastName ?? undefined)?.slice(0, 100);
  if (list.fields.includes('first_name') && first) fields.first_name = first;
  if (list.fields.includes('last_name') && last) fields.last_name = last;
  return { fields, first: first ?? null, last: last ?? null };
};

async function importWithConsent(trx: Trx, job: Job, row: ImportRow, line: number): Promise<RowOutcome> {
  const locale = matchLocale(row.locale) ?? DEFAULT_LOCALE;
  const found = await consentStore.upsertSignup(trx, { listSlug: job.list.slug, email: row.email, locale });
  if (!found) throw new DomainError('list_not_found', `there is no list "${job.list.slug}"`);
  const { list, subscriber } = found;
  const head = await chainHead(trx, subscriber.id);
  // The wording read when the import started, as its evidence names it (importedEvidence).
  const { fields } = names(job.list, row);
  await appendConsentEvent(trx, head, {
    subscriberId: subscriber.id,
    listId: list.id,
    kind: 'imported',
    evidence: importedEvidence(job, row, line),
  });
  await consentStore.markSubscriptionConfirmed(trx, { subscriberId: subscriber.id, listId: list.id }, { at: head.now, consentVersion: job.list.consentVersion });
  const attributes = Object.keys(row.attributes).length > 0 ? { attributes: JSON.stringify(row.attributes) } : {};
  await consentStore.applySubscriberFields(trx, subscriber.id, { ...fields, ...(row.locale && { locale }), ...attributes });
  await consentStore.recordFirstAffinity(trx, subscriber.id);
  return 'imported';
}

/**
 * importWithConsent for many rows in six statements rather than six each: the rows are new
 * to the list and each address is in them once, so each subscriber's chain gets one event.
 */
async function importConsentedAtOnce(trx: Trx, job: Job, rows: ReadRow[]): Promise<void> {
  if (rows.length === 0) return;
  const people = rows.map(({ row }): store.ImportedPerson => {
    const { fields } = names(job.list, row);
    const locale = matchLocale(row.locale) ?? DEFAULT_LOCALE;
    return {
      key: row.email.toLowerCase(), email: row.email, locale, givenLocale: row.locale ? locale : null,
      firstName: fields.first_name ?? null, lastName: fields.last_name ?? null,
      attributes: Object.keys(row.attributes).length > 0 ? JSON.stringify(row.attributes) : null,
    };
  });
  await store.insertMissingSubscribers(trx, people);
  const ids = await store.applyImportedFields(trx, people);
  const subscriberIds = people.map((person) => ids.get(person.key)!);
  const heads = await chainHeads(trx, subscriberIds);
  await appendConsentEventsOnePerSubscriber(trx, rows.map(({ line, row }, i) => ({
    head: heads.get(subscriberIds[i]!)!,
    event: { subscriberId: subscriberIds[i]!, listId: job.list.id, kind: 'imported', evidence: importedEvidence(job, row, line) },
  })));
  await store.insertConfirmedSubscriptions(trx, subscriberIds, job.list, heads.get(subscriberIds[0]!)!.now);
  await store.recordFirstAffinities(trx, subscriberIds);
}

async function importForPermission(deps: ImportDeps, trx: ControlledTransaction<DB>, job: Job, row: ImportRow, line: number): Promise<RowOutcome> {
  const { first, last } = names(job.list, row);
  const outcome = await signupInBatch(deps, trx, {
    email: row.email, listSlug: job.list.slug, firstName: first, lastName: last, locale: matchLocale(row.locale) ?? DEFAULT_LOCALE,
    ...(Object.keys(row.attributes).length > 0 && { attributes: row.attributes }),
  }, { ip: null, userAgent: null, page: null }, { apiKey: job.apiKey, asserted: [], import: { id: job.id, file_sha256: job.file.sha256, line } });
  if (outcome === 'mailed') return 'pending';
  if (outcome === 'already_confirmed') return 'unchanged';
  // Another spelling of the mailbox had a confirmation mail moments ago, or it had its day's share.
  return { rejected: 'throttled: this mailbox had a confirmation mail recently; import the row again later' };
}

/** An import as GET /api/v1/imports/{id} shows it. */
export async function getImport(deps: Pick<Deps, 'db'>, id: string) {
  const row = await store.findImport(deps.db, id);
  if (!row) throw new DomainError('import_not_found', 'there is no such import');
  const rejections = await store.findRejections(deps.db, id, KEPT_REJECTIONS);
  return { ...row, file_sha256: row.file_sha256.toString('hex'), rejections };
}
