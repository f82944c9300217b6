// Per-recipient work against the once-per-campaign work, in microseconds. Per recipient is
// what the campaign worker does between claiming a message and handing it to SMTP: sign
// the links, build the affinity-bounded context, render subject, HTML and text with Liquid,
// and build the MIME message (src/mail/mime.ts, as the worker hands it to nodemailer).
// Once per campaign is compileCampaign: validate, MJML to HTML, HTML to a text template.
// Answers over IPC with {renderUs, compileUs, bytes}.
import { randomUUID } from 'node:crypto';
import { buildCampaignMail } from '../src/campaigns/message.js';
import { compileCampaign, parseCampaign } from '../src/campaigns/templates.js';
import { parseConfig } from '../src/config.js';
import { loadCatalogues } from '../src/i18n.js';
import { TokenSigner } from '../src/links/tokens.js';
import { recipientLinks } from '../src/links/urls.js';
import { buildMessage } from '../src/mail/mime.js';
import { NEWSLETTER } from './newsletter.js';

const parsedConfig = parseConfig({ PUBLIC_URL: 'https://assent.bench.example', MAIL_FROM: 'News <news@bench.example>', SENDER_ADDRESS: '1 Bench Street, Testville' });
if (!parsedConfig.ok) throw new Error(parsedConfig.problems.join('\n'));
const deps = {
  config: parsedConfig.config,
  signer: new TokenSigner(['bench-secret-0123456789abcdef0123456789abcdef']),
  catalogues: loadCatalogues(),
  clock: () => Date.now(),
};
const list = { slug: 'weekly', name: 'Weekly news' };

async function timeEach(iterations: number, task: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i += 1) await task();
  return Number(process.hrtime.bigint() - started) / 1e3 / iterations;
}

const compiled = await compileCampaign(NEWSLETTER.subject, NEWSLETTER.mjml);
const parsed = parseCampaign({ subject: NEWSLETTER.subject, html_template: compiled.htmlTemplate, text_template: compiled.textTemplate });

let bytes = 0;
let n = 0;
async function renderOne(): Promise<void> {
  n += 1;
  const recipient = {
    id: randomUUID(), email: `reader${n}@bench.example`, first_name: 'Ada', last_name: 'Lovelace', attributes: {},
    locale: 'en', affinity_cap: null, affinity: 'known' as const,
  };
  const { mail } = buildCampaignMail(deps, { list, parsed }, recipient, recipientLinks(deps, recipient.id, '1'));
  const built = buildMessage({ ...mail, messageId: `<${randomUUID()}@bench.example>` });
  bytes = Buffer.byteLength(built.raw);
}

// Warm up the JIT and Liquid's caches first, as a worker is warm after its first batch.
await timeEach(500, renderOne);
await timeEach(3, () => compileCampaign(NEWSLETTER.subject, NEWSLETTER.mjml));
const renderUs = await timeEach(3000, renderOne);
const compileUs = await timeEach(20, () => compileCampaign(NEWSLETTER.subject, NEWSLETTER.mjml));
process.send!({ renderUs, compileUs, bytes }, () => process.exit(0));
