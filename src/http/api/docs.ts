// /api/docs: the OpenAPI document as a readable page, rendered here so that it needs no
// script and makes no request to anyone else.
import { escapeHtml } from '../../mail/text.js';

interface Operation {
  summary?: string;
  parameters?: { name: string; in: string; required?: boolean; schema?: unknown }[];
  requestBody?: { content?: Record<string, { schema?: unknown }> };
  responses?: Record<string, { description?: string }>;
}

const json = (value: unknown) => escapeHtml(JSON.stringify(value, null, 2));

export function renderApiDocs(doc: { info: { title: string; description?: string }; paths?: Record<string, Record<string, Operation>>; components?: unknown }): string {
  const sections = Object.entries(doc.paths ?? {}).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => {
      const params = (op.parameters ?? []).map((p) => `<li><code>${escapeHtml(p.name)}</code> (${escapeHtml(p.in)}${p.required ? ', required' : ''})</li>`).join('');
      const body = op.requestBody?.content?.['application/json']?.schema;
      const responses = Object.entries(op.responses ?? {}).map(([code, r]) => `<li><code>${escapeHtml(code)}</code> ${escapeHtml(r.description ?? '')}</li>`).join('');
      return `<section><h2><code>${method.toUpperCase()} /api${escapeHtml(path)}</code></h2>
<p>${escapeHtml(op.summary ?? '')}</p>
${params ? `<h3>Parameters</h3><ul>${params}</ul>` : ''}
${body ? `<h3>Body</h3><pre>${json(body)}</pre>` : ''}
<h3>Responses</h3><ul>${responses}</ul></section>`;
    }));
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(doc.info.title)} API</title><link rel="stylesheet" href="/assets/style.css">
<style>main{max-width:60rem} pre{overflow:auto;padding:.75rem;border:1px solid var(--line)} section{border-top:1px solid var(--line);margin-top:1.5rem}</style></head>
<body><main id="main"><h1>${escapeHtml(doc.info.title)} API</h1><p>${escapeHtml(doc.info.description ?? '')}</p>
<p>Every call under <code>/api/v1</code> takes <code>Authorization: Bearer &lt;key&gt;</code>; a POST may carry <code>Idempotency-Key</code>.
Errors are <code>{"error":{"code","message"}}</code>. Machine-readable: <a href="/api/openapi.json">openapi.json</a>.</p>
${sections.join('\n')}
<section><h2>Schemas</h2><pre>${json(doc.components ?? {})}</pre></section></main></body></html>`;
}
