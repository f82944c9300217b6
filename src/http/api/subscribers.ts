// /api/v1/subscribers
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { cleanName, normaliseEmail } from '../../consent/address.js';
import { signup, type SignupSource } from '../../consent/signup.js';
import {
  consentRecord, eraseSubscriber, exportSubscriber, findSubscribers, getSubscriber, recordAffinity,
} from '../../consent/subscribers.js';
import type { Deps } from '../../deps.js';
import { AFFINITY_LEVELS, CONSENT_EVENT_KINDS, SUBSCRIPTION_STATUSES } from '../../domain.js';
import { DomainError } from '../../errors.js';
import { chooseLocale, matchLocale } from '../../i18n.js';
import { canonicalIp } from '../client.js';
import { type ApiEnv, apiRoutes } from './env.js';
import { conflict, errors, idempotencyReused, json, notFound, plain, security, text } from './schemas.js';

const IdParam = z.object({ id: z.string().openapi({ param: { name: 'id', in: 'path' }, format: 'uuid' }) });

const SubscriptionSchema = z.object({
  list: z.string(),
  status: z.enum(SUBSCRIPTION_STATUSES),
  consent_version: z.number().int().nullable(),
  consent_text: z.string().nullable().openapi({ description: 'the wording this person agreed to' }),
  requested_at: z.string().nullable(),
  confirmed_at: z.string().nullable(),
  unsubscribed_at: z.string().nullable(),
});

const SubscriberSchema = z.object({
  id: z.string(),
  email: z.string(),
  first_name: z.string().nullable(),
  last_name: z.string().nullable(),
  attributes: z.record(z.string(), z.unknown()),
  locale: z.string(),
  created_at: z.string(),
  affinity: z.enum(AFFINITY_LEVELS).nullable(),
  subscriptions: z.array(SubscriptionSchema),
}).openapi('Subscriber');

const FindQuery = z.object({
  email: z.string().max(320).optional(),
  list: text().max(100).optional(),
  status: z.enum(SUBSCRIPTION_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().max(200).optional().openapi({ description: 'next_cursor of the previous page' }),
});

const ConsentEventSchema = z.object({
  id: z.string(),
  kind: z.enum(CONSENT_EVENT_KINDS),
  list: z.string().nullable(),
  occurred_at: z.string(),
  hash: z.string(),
  log_index: z.number().int().nullable().openapi({ description: 'the event\'s leaf in the consent log; null until the sequencer gave it one' }),
  evidence: z.record(z.string(), z.unknown()).nullable().openapi({ description: 'null once erased' }),
  verified: z.boolean(),
});
const ConsentSchema = z.object({
  subscriber_id: z.string(), verified: z.boolean(), events: z.array(ConsentEventSchema),
}).openapi('ConsentRecord');

const Attribute = z.union([text().max(1000), z.number(), z.boolean()]);
const SignupBody = z.object({
  email: text().max(320),
  list: text().min(1).max(100),
  first_name: text().max(200).optional(),
  last_name: text().max(200).optional(),
  locale: text().max(35).optional(),
  attributes: z.record(text().min(1).max(100), Attribute)
    .refine((value) => Object.keys(value).length <= 50, 'at most 50 attributes').optional()
    .openapi({ description: 'applied to the subscriber once they confirm' }),
  ip: text().max(64).optional().openapi({ description: 'the person\'s IP address, as your server saw it' }),
  user_agent: text().max(512).optional(),
  page: text().max(2048).optional().openapi({ description: 'the page where the person signed up' }),
}).strict().openapi('ServerSignup');

const AffinityBody = z.object({ level: z.enum(AFFINITY_LEVELS), reason: text().trim().min(1).max(500) }).strict();
const AffinityEventSchema = z.object({
  subscriber_id: z.string(), level: z.enum(AFFINITY_LEVELS), reason: z.string(), recorded_by: z.string().nullable(), occurred_at: z.string(),
}).openapi('AffinityEvent');

export function subscribersApp(deps: Deps): OpenAPIHono<ApiEnv> {
  const app = apiRoutes();
  app.openapi(createRoute({
    method: 'get', path: '/', summary: 'Find subscribers (keyset paging: pass next_cursor back as cursor)', security,
    request: { query: FindQuery },
    responses: { 200: { description: 'one page', ...json(z.object({ data: z.array(SubscriberSchema), next_cursor: z.string().nullable() })) }, ...errors, ...notFound },
  }), async (c) => {
    const query = c.req.valid('query');
    const email = query.email === undefined ? undefined : normaliseEmail(query.email);
    if (query.email !== undefined && email === undefined) throw new DomainError('invalid_input', 'not a valid email address', { email: 'not valid' });
    return c.json(plain(await findSubscribers(deps, { ...query, email })), 200);
  });

  app.openapi(createRoute({
    method: 'post', path: '/', security,
    summary: 'Start the double opt-in for a person who signed up on your server: the same rules and answer as the form',
    request: { body: { required: true, ...json(SignupBody) } },
    responses: {
      202: { description: 'the same answer whatever the address\'s state', ...json(z.object({ status: z.literal('pending') })) },
      ...errors, ...notFound, ...idempotencyReused,
    },
  }), async (c) => {
    const body = c.req.valid('json');
    const email = normaliseEmail(body.email);
    if (!email) throw new DomainError('invalid_input', 'not a valid email address', { email: 'not a valid email address' });
    const ip = body.ip === undefined ? undefined : canonicalIp(body.ip);
    if (body.ip !== undefined && ip === undefined) throw new DomainError('invalid_input', 'not an IP address', { ip: 'not an IP address' });
    // What the key asserted is the evidence: nothing of the calling server's own request stands in for the person's.
    const source: SignupSource = {
      apiKey: c.get('apiKey').name,
      asserted: (['ip', 'user_agent', 'page'] as const).filter((field) => body[field] !== undefined),
    };
    const outcome = await signup(deps, {
      email,
      listSlug: body.list.trim(),
      firstName: cleanName(body.first_name)?.slice(0, 100) ?? null,
      lastName: cleanName(body.last_name)?.slice(0, 100) ?? null,
      locale: chooseLocale(matchLocale(body.locale)),
      ...(body.attributes && { attributes: body.attributes }),
    }, { ip: ip ?? null, userAgent: body.user_agent ?? null, page: body.page ?? null }, source);
    deps.metrics.signups.inc({ outcome: 'accepted' });
    if (outcome === 'mailed') deps.wakeOutbox();
    return c.json({ status: 'pending' as const }, 202);
  });

  app.openapi(createRoute({
    method: 'get', path: '/{id}', summary: 'One subscriber, with subscriptions and affinity', security,
    request: { params: IdParam },
    responses: { 200: { description: 'the subscriber', ...json(SubscriberSchema) }, ...errors, ...notFound },
  }), async (c) => c.json(plain(await getSubscriber(deps, c.req.valid('param').id)), 200));

  app.openapi(createRoute({
    method: 'get', path: '/{id}/consent', summary: 'The proof of consent: every event, its evidence, and whether the chain verifies', security,
    request: { params: IdParam },
    responses: { 200: { description: 'the consent record', ...json(ConsentSchema) }, ...errors, ...notFound },
  }), async (c) => c.json(plain(await consentRecord(deps, c.req.valid('param').id)), 200));

  app.openapi(createRoute({
    method: 'post', path: '/{id}/affinity', summary: 'Record a new affinity level', security,
    request: { params: IdParam, body: { required: true, ...json(AffinityBody) } },
    responses: {
      201: { description: 'the recorded event', ...json(AffinityEventSchema) }, ...errors, ...notFound,
      ...conflict('the subscriber has not confirmed'), ...idempotencyReused,
    },
  }), async (c) => {
    const body = c.req.valid('json');
    const event = await recordAffinity(deps, c.req.valid('param').id, { ...body, recordedBy: c.get('apiKey').name });
    return c.json(plain(event), 201);
  });

  app.openapi(createRoute({
    method: 'get', path: '/{id}/export', summary: 'Everything held about the person', security,
    request: { params: IdParam },
    responses: { 200: { description: 'the export', ...json(z.record(z.string(), z.unknown())) }, ...errors, ...notFound },
  }), async (c) => c.json(plain(await exportSubscriber(deps, c.req.valid('param').id)), 200));

  app.openapi(createRoute({
    method: 'delete', path: '/{id}', summary: 'Erase the person; the address stays suppressed as a hash only', security,
    request: { params: IdParam },
    responses: { 204: { description: 'erased' }, ...errors, ...notFound },
  }), async (c) => {
    await eraseSubscriber(deps, c.req.valid('param').id, { by: 'api', key: c.get('apiKey').name });
    return c.body(null, 204);
  });
  return app;
}
