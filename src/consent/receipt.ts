// A person's consent receipt (log/receipt.ts says what it holds): their record as the
// ISO/IEC TS 27560 sections put it, and each event with its proof in the consent log.
import type { Database } from '../db/database.js';
import type { Deps } from '../deps.js';
import type { ConsentLog } from '../log/consent-log.js';
import { buildReceipt, type ConsentReceipt, type Controller } from '../log/receipt.js';
import * as logStore from '../log/store.js';
import { withoutLinkTokens } from './ledger.js';
import { listAllLists } from '../lists/store.js';
import { getSubscriber } from './subscribers.js';

const LAWFUL_BASIS = 'consent (GDPR Art. 6(1)(a))';
const COLLECTION_METHOD = 'double opt-in: a signup, then a click on a link mailed to the address';
const STATUS: Record<string, string> = {
  pending: 'consent requested, not yet given',
  confirmed: 'consent given',
  unsubscribed: 'consent withdrawn',
  bounced: 'not mailed: the address bounced',
  complained: 'consent withdrawn by a spam complaint',
};

export interface ReceiptDeps {
  db: Database;
  clock: () => number;
  consentLog: ConsentLog;
  controller: Controller;
  /** Where the log's public endpoints are: PUBLIC_URL/consent-log. */
  logUrl: string;
}

/** What a receipt needs, from the service's deps: the controller settings and the log's public address. */
export function receiptDeps(deps: Pick<Deps, 'db' | 'clock' | 'config' | 'consentLog'>): ReceiptDeps {
  const { name, contact, privacyUrl } = deps.config.controller;
  return {
    db: deps.db, clock: deps.clock, consentLog: deps.consentLog, logUrl: `${deps.config.publicUrl}/consent-log`,
    controller: { name: name ?? null, contact: contact ?? null, privacy_notice: privacyUrl ?? null },
  };
}

/** A receipt as a download: indented JSON, named for the person's record. */
export function receiptFile(receipt: ConsentReceipt): { body: string; filename: string } {
  return { body: `${JSON.stringify(receipt, null, 2)}\n`, filename: `consent-receipt-${receipt.record_id}.json` };
}

export async function consentReceipt(deps: ReceiptDeps, subscriberId: string): Promise<ConsentReceipt> {
  const subscriber = await getSubscriber(deps, subscriberId);
  const [events, lists, checkpoint] = await Promise.all([
    logStore.subscriberEvents(deps.db, subscriberId), listAllLists(deps.db), deps.consentLog.latestCheckpoint(),
  ]);
  const listBySlug = new Map(lists.map((list) => [list.slug, list]));
  const proven = (index: number | null): index is number => index !== null && checkpoint !== undefined && index < checkpoint.size;
  const proofs = await Promise.all(events.map((event) => (proven(event.logIndex)
    ? deps.consentLog.proofOf(event.logIndex, checkpoint!.size) : undefined)));
  return buildReceipt({
    issuedAt: new Date(deps.clock()),
    subscriber: { id: subscriber.id, email: subscriber.email },
    controller: deps.controller,
    processing: subscriber.subscriptions.map((s) => ({
      purpose: { list: s.list, name: listBySlug.get(s.list)?.name ?? s.list },
      notice: { version: s.consent_version, text: s.consent_text },
      lawful_basis: LAWFUL_BASIS,
      collection_method: COLLECTION_METHOD,
      pii_categories: ['email address', ...(listBySlug.get(s.list)?.fields ?? []).map((field) => field.replace('_', ' '))],
      status: STATUS[s.status] ?? s.status,
    })),
    events: events.map((event, i) => {
      // Evidence recorded before links were kept out of it still holds a live link: it is
      // withheld here (its hash still proves it), never handed out.
      const safe = event.evidence !== null && JSON.stringify(withoutLinkTokens(event.evidence)) === JSON.stringify(event.evidence);
      return {
        id: event.id,
        list: event.listSlug,
        record: {
          subscriber_id: subscriber.id,
          list_id: event.listId,
          kind: event.kind as never,
          occurred_at: event.occurredAt.toISOString(),
          evidence_hash: event.evidenceHash.toString('hex'),
          prev_hash: event.prevHash?.toString('hex') ?? null,
          hash: event.hash.toString('hex'),
        },
        evidence: safe ? event.evidence : null,
        log: proofs[i] ? { index: event.logIndex!, inclusionProof: proofs[i]! } : null,
      };
    }),
    log: {
      origin: deps.consentLog.origin,
      verifierKey: deps.consentLog.verifierKey,
      url: deps.logUrl,
      checkpoint: checkpoint?.note ?? null,
      timestamp: checkpoint?.timestamp ?? null,
    },
  });
}
