// Webhook endpoints as marketers manage them: made with a secret shown once, listed, deleted,
// and their delivery log.
import type { Deps } from '../deps.js';
import { DomainError } from '../errors.js';
import * as listStore from '../lists/store.js';
import { privateAddressOf } from './address.js';
import { type WebhookEventType, TYPE_OF_KIND } from './events.js';
import { newWebhookSecret } from './signature.js';
import * as store from './store.js';

export interface EndpointView {
  id: string;
  url: string;
  events: string[];
  lists: string[] | null;
  status: 'enabled' | 'failing' | 'disabled';
  failing_since: Date | null;
  disabled_at: Date | null;
  disabled_reason: string | null;
  created_at: Date;
}

async function view(deps: Pick<Deps, 'db'>, row: store.EndpointRow): Promise<EndpointView> {
  const lists = row.list_ids === null ? null
    : (await Promise.all(row.list_ids.map((id) => listStore.findListById(deps.db, id)))).map((list) => list?.slug ?? '(deleted)');
  return {
    id: row.id, url: row.url, events: row.events, lists,
    status: row.disabled_at ? 'disabled' : row.failing_since ? 'failing' : 'enabled',
    failing_since: row.failing_since, disabled_at: row.disabled_at, disabled_reason: row.disabled_reason, created_at: row.created_at,
  };
}

/**
 * A URL we may call: http or https, no credentials in it, and in production (unless
 * WEBHOOK_ALLOW_PRIVATE) not resolving to a private, loopback or link-local address. The
 * deliverer checks the address again at every connection (address.ts).
 */
export async function checkWebhookUrl(deps: Pick<Deps, 'config'>, text: string): Promise<URL> {
  let url: URL;
  try { url = new URL(text); } catch { throw new DomainError('webhook_url_refused', 'not a URL', { url: 'not a URL' }); }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DomainError('webhook_url_refused', 'a webhook URL must be http or https', { url: 'must be http:// or https://' });
  }
  if (url.username || url.password) throw new DomainError('webhook_url_refused', 'no credentials in the URL: verify the signature instead', { url: 'holds credentials' });
  if (!deps.config.webhookAllowPrivate) {
    let found: string | undefined;
    try { found = await privateAddressOf(url.hostname); } catch {
      throw new DomainError('webhook_url_refused', `${url.hostname} does not resolve`, { url: 'host does not resolve' });
    }
    if (found !== undefined) {
      throw new DomainError('webhook_url_refused', `${url.hostname} resolves to ${found}, a private, loopback or link-local address`, { url: 'private address' });
    }
  }
  return url;
}

export async function createEndpoint(deps: Pick<Deps, 'db' | 'config'>, input: {
  url: string; events: WebhookEventType[]; lists?: string[]; createdBy: string;
}): Promise<EndpointView & { secret: string }> {
  const url = await checkWebhookUrl(deps, input.url);
  let listIds: string[] | null = null;
  if (input.lists !== undefined) {
    listIds = [];
    for (const slug of input.lists) {
      const list = await listStore.findListBySlug(deps.db, slug);
      if (!list) throw new DomainError('list_not_found', `there is no list "${slug}"`);
      listIds.push(list.id);
    }
  }
  const secret = newWebhookSecret();
  const row = await store.insertEndpoint(deps.db, { url: url.href, secret, events: [...new Set(input.events)], listIds, createdBy: input.createdBy });
  return { ...(await view(deps, row)), secret };
}

export async function listEndpoints(deps: Pick<Deps, 'db'>): Promise<EndpointView[]> {
  return Promise.all((await store.findEndpoints(deps.db)).map((row) => view(deps, row)));
}

export async function deleteEndpoint(deps: Pick<Deps, 'db'>, id: string): Promise<void> {
  if (!(await store.deleteEndpoint(deps.db, id))) throw new DomainError('webhook_not_found', 'there is no such webhook');
}

/** The endpoint's latest attempts, newest first: the delivery log. */
export async function endpointDeliveries(deps: Pick<Deps, 'db'>, id: string, limit = 100) {
  if (!(await store.findEndpoint(deps.db, id))) throw new DomainError('webhook_not_found', 'there is no such webhook');
  return (await store.findAttempts(deps.db, id, limit)).map((row) => ({
    delivery_id: row.delivery_id,
    event_id: row.event_id,
    type: TYPE_OF_KIND[row.type as keyof typeof TYPE_OF_KIND] ?? row.type,
    delivery_status: row.delivery_status,
    attempted_at: row.attempted_at,
    response_status: row.status_code,
    error: row.error,
    duration_ms: row.duration_ms,
  }));
}
