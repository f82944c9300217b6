// Shared pieces of the API's zod schemas (each also documents itself in OpenAPI).
import { z } from '@hono/zod-openapi';
import { isStorableText, NOT_STORABLE } from '../guards.js';

export const ErrorSchema = z.object({
  error: z.object({
    code: z.string(), message: z.string(), fields: z.record(z.string(), z.string()).optional(),
    details: z.array(z.object({ source: z.string(), line: z.number().int().nullable(), message: z.string() })).optional()
      .openapi({ description: 'for template_invalid: where each problem is (`subject`, `mjml`, or the compiled `html`/`text`)' }),
  }),
}).openapi('Error');

export const json = <T extends z.ZodType>(schema: T) => ({ content: { 'application/json': { schema } } });

const error = (description: string) => ({ description, ...json(ErrorSchema) });

export const errors = {
  400: error('invalid input: `fields` names each bad field'),
  401: error('missing, wrong or revoked API key'),
} as const;
export const notFound = { 404: error('not found') } as const;
export const conflict = (description: string) => ({ 409: error(description) }) as const;
export const idempotencyReused = { 422: error('Idempotency-Key reused for a different request') } as const;

export const security = [{ bearer: [] }];

/** `{word: count}` for every word of a vocabulary (domain.ts), each required. */
export const countsSchema = <Word extends string>(vocabulary: readonly Word[]) =>
  z.object(Object.fromEntries(vocabulary.map((word) => [word, z.number().int()])) as Record<Word, z.ZodNumber>);

/** A string from the request that may be stored or looked up: see isStorableText. */
export const text = () => z.string().refine(isStorableText, NOT_STORABLE);

/** Dates as ISO strings, as c.json would write them anyway, so the response types line up. */
export const plain = <T>(value: T) => JSON.parse(JSON.stringify(value)) as never;
