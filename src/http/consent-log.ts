// The consent log's public face, without a key: anyone (an auditor, a monitor, a person
// holding a receipt) can fetch the checkpoints and the proofs, and keep them out of our reach.
import { Hono } from 'hono';
import type { ConsentLog } from '../log/consent-log.js';
import type { AppEnv } from './env.js';

const text = { 'content-type': 'text/plain; charset=utf-8' };
// A checkpoint of a given size never changes; the latest one does, within a minute.
const immutable = { ...text, 'cache-control': 'public, max-age=31536000, immutable' };

export function consentLogApp(log: ConsentLog): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // Machines read these: errors (a malformed size, say) come as JSON, not as a page.
  app.use('/consent-log/*', async (c, next) => {
    c.set('wantsJson', true);
    await next();
  });

  app.get('/consent-log/key', (c) => c.body(`${log.verifierKey}\n`, 200, { ...text, 'cache-control': 'public, max-age=3600' }));

  app.get('/consent-log/checkpoint', async (c) => {
    const latest = await log.latestCheckpoint();
    if (!latest) return c.json({ error: { code: 'not_found', message: 'no checkpoint has been signed yet' } }, 404);
    return c.body(latest.note, 200, { ...text, 'cache-control': 'no-cache' });
  });

  app.get('/consent-log/checkpoint/:size', async (c) => {
    const found = await log.checkpoint(c.req.param('size'));
    if (!found) return c.json({ error: { code: 'not_found', message: 'no checkpoint of that size' } }, 404);
    return c.body(found.note, 200, immutable);
  });

  // The RFC 3161 token over a checkpoint, where TSA_URL gave one (DER, as `openssl ts -verify -token_in` reads it).
  app.get('/consent-log/checkpoint/:size/timestamp', async (c) => {
    const found = await log.checkpoint(c.req.param('size'));
    if (!found?.timestamp) return c.json({ error: { code: 'not_found', message: 'no time-stamp for that checkpoint' } }, 404);
    return c.body(new Uint8Array(found.timestamp), 200, {
      'content-type': 'application/octet-stream', 'content-disposition': `attachment; filename="checkpoint-${found.size}.tst"`,
      'cache-control': 'public, max-age=31536000, immutable',
    });
  });

  app.get('/consent-log/proof/inclusion', async (c) => {
    const hashes = await log.inclusionProof({ index: c.req.query('index'), size: c.req.query('size') });
    return c.json({ hashes: hashes.map((hash) => hash.toString('base64')) });
  });

  app.get('/consent-log/proof/consistency', async (c) => {
    const hashes = await log.consistencyProof({ from: c.req.query('from'), to: c.req.query('to') });
    return c.json({ hashes: hashes.map((hash) => hash.toString('base64')) });
  });

  return app;
}
