// Hostile input, generated (fast-check), at every public endpoint: bodies, queries, path
// tokens and ids. Random code units (lone surrogates and NUL among them), bidirectional
// marks, homoglyph and IDN domains, CR/LF where a header might be built, huge fields, wrong
// types, deep nesting, prototype keys, and bodies that are not what their Content-Type says.
// Whatever comes in: never a 5xx, and a refused (4xx) request changes no row of any table.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { useTestService } from './helpers/fixture.js';
import { freshIp, postJson, seedConfirmed, snapshotAllTables } from './helpers/http.js';
import { API_KEY } from './helpers/service.js';

const t = useTestService({ smtp: true, env: { REDIRECT_HOSTS: 'www.example.com' }, lists: ['news', 'weekly'] });
const RUNS = { numRuns: 150 };

// --- what an attacker types ---------------------------------------------------------------

const TRICKS = [
  '\0', '\uD800', '\uDFFF', '\uDBFF\uDFFF', '\uFEFF', '\u202E', '\u202D', '\u200F', '\u200E', '\u2066', '\u200B', '\u0301',
  '\r\n', '\r', '\n', '\r\nBcc: victim@example.net', '\nSubject: hi', '%0d%0a', '%00', '%', '%E0%A4%A', '\\', '"', "'",
  '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty',
  '<script>alert(1)</script>', "' or '1'='1", '{{ 7 | times: 7 }}', '{% raw %}', '${7*7}', '../', '..%2f',
  'ſ', 'ﬀ', 'İ', 'ǅ', 'а', 'е', 'ο', '\u00A0', '\u3000', '\uFFFD', '\u{1F600}',
];
const trick = fc.constantFrom(...TRICKS);
/** Any UTF-16 code unit, lone surrogates included. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit));
const DOMAINS = [
  'example.org', 'EXAMPLE.ORG', 'example.org.', 'exаmple.org' /* Cyrillic а */, 'ехample.org', 'bücher.example',
  'xn--bcher-kva.example', 'xn--80ak6aa92e.com', 'exam\u200Bple.org', 'example.org\r\nBcc: victim@example.net',
  '[127.0.0.1]', '127.0.0.1', 'localhost', '-example.org', 'example..org', 'a'.repeat(64) + '.org', '',
];
const hostileEmail = fc.tuple(
  fc.array(fc.oneof(trick, fc.string({ maxLength: 6 }), fc.string({ unit: codeUnit, maxLength: 3 })), { maxLength: 4 }),
  fc.constantFrom(...DOMAINS),
).map(([local, domain]) => `${local.join('') || 'x'}@${domain}`);
/** What a database or a mail header chokes on, alone or inside ordinary text. */
const poison = fc.tuple(fc.constantFrom('\0', '\uD800', '\uDFFF', '\r\n', '\u202E'), fc.constantFrom('', 'news', 'a@example.org'))
  .map(([bad, around]) => `${around.slice(0, 2)}${bad}${around.slice(2)}`);
const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: codeUnit, maxLength: 30 }),
  poison,
  fc.array(fc.oneof(trick, fc.string({ maxLength: 6 })), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('')),
  hostileEmail,
  fc.emailAddress(),
  fc.constantFrom('', ' ', 'news', 'weekly', 'One-Click', 'en', 'de', 'none', 'known', 'engaged', 'pending', 'x'.repeat(70_000)),
);
/** Any JSON value as text, from plain to hostile, deep and wide ones included (as text: too deep for JSON.stringify). */
const hostileJson: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: hostileString.map((text) => JSON.stringify(text)) },
  fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(hostileString, { maxLength: 3 }),
    fc.dictionary(hostileString, hostileString, { maxKeys: 3 })).map((value) => JSON.stringify(value)),
  fc.constantFrom('1e308', '-0', '1e999', '123456789012345678901234567890', '{"__proto__":{"admin":true}}'),
  fc.integer({ min: 1, max: 5_000 }).map((depth) => '['.repeat(depth) + ']'.repeat(depth)),
);

/** A JSON object as text, written by hand so that `__proto__` stays an own key. */
function objectText(fields: readonly (readonly [string, string])[]): string {
  return `{${fields.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`;
}
const fieldsOf = (names: readonly string[]) => fc.array(
  fc.tuple(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...names, '__proto__', 'constructor') }, hostileString), hostileJson),
  { maxLength: 6 },
);
/** A valid body with one field swapped for something hostile: gets past the first checks. */
const nearlyValid = (valid: Record<string, string>) => fc.tuple(fc.constantFrom(...Object.keys(valid)), hostileJson)
  .map(([swapped, value]) => objectText(Object.entries(valid).map(([key, v]) => [key, key === swapped ? value : JSON.stringify(v)])));
/** A body that may not be JSON at all, or nests deeper than any parser should recurse. */
const hostileJsonBody = (names: readonly string[], valid?: Record<string, string>) => fc.oneof(
  { weight: 6, arbitrary: fieldsOf(names).map(objectText) },
  { weight: valid ? 6 : 0, arbitrary: valid ? nearlyValid(valid) : fc.constant('{}') },
  fc.string({ unit: codeUnit, maxLength: 50 }),
  fc.constantFrom('', 'null', '[]', '"x"', '{', '{"email":', `{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
    `${'{"a":'.repeat(3_000)}1${'}'.repeat(3_000)}`, '{"__proto__":{"email":"polluted@example.org","list":"news"}}'),
);

/** The UTF-8 of a string, every byte percent-encoded: safe to put in a path, whatever it holds. */
const percentEncoded = (text: string) => [...Buffer.from(text, 'utf8')].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('');
/** A path segment: hostile text encoded, raw bytes (invalid UTF-8 too), or plain junk. */
const pathSegment = fc.oneof(
  hostileString.filter((text) => text.length > 0).map(percentEncoded),
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')),
  fc.stringMatching(/^[A-Za-z0-9._~-]{1,80}$/),
  fc.constantFrom('%', '%ZZ', '%E0%A4%A', '..', '.', '%2e%2e', '%2F', '00000000-0000-0000-0000-000000000000',
    '------------------------------------', '9999999999999999999', '99999999999999999999', '-1', '0', '1e3', 'NaN'),
);
const queryString = (names: readonly string[]) => fc.array(
  fc.tuple(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...names) }, hostileString), hostileString),
  { maxLength: 5 },
).map((pairs) => pairs.map(([key, value]) => `${percentEncoded(key)}=${percentEncoded(value)}`).join('&'));
const rawQuery = fc.oneof(queryString(['locale', 'saved']), fc.constantFrom('locale=%', 'locale=%E0%A4%A', '%=%', '&&&=&'));

// --- how each answer is judged --------------------------------------------------------------

/**
 * Sends the request and checks the two promises: below 500, and a 4xx (or any GET) leaves
 * every table as it was. Returns the answer for further checks.
 */
async function judged(method: string, path: string, init: { body?: BodyInit; headers?: Record<string, string>; duplex?: 'half' } = {}): Promise<{ status: number; body: string }> {
  const before = await snapshotAllTables(t.tdb);
  const response = await t.service.app.request(path, { method, ...init, headers: { 'x-forwarded-for': freshIp(), ...init.headers } });
  const body = await response.text();
  expect(response.status, `${method} ${path.slice(0, 200)} → ${body.slice(0, 300)}`).toBeLessThan(500);
  if (response.status >= 400 || method === 'GET') expect(await snapshotAllTables(t.tdb), `${method} ${path.slice(0, 200)} changed state`).toEqual(before);
  return { status: response.status, body };
}

const json = (body: string) => ({ body, headers: { 'content-type': 'application/json' } });
const form = (body: string) => ({ body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
const api = (init: { body?: BodyInit; headers?: Record<string, string> } = {}) =>
  ({ ...init, headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', ...init.headers } });

function formData(fields: readonly (readonly [string, string | Uint8Array])[]): FormData {
  const data = new FormData();
  for (const [key, value] of fields) {
    if (typeof value === 'string') data.append(key, value);
    else data.append(key, new Blob([Buffer.from(value)]), 'x.bin');
  }
  return data;
}
const multipartFields = (names: readonly string[]) => fc.array(fc.tuple(
  fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...names, '__proto__') }, hostileString),
  fc.oneof({ weight: 4, arbitrary: hostileString }, fc.uint8Array({ maxLength: 64 })),
), { maxLength: 6 });
const urlencoded = (names: readonly string[]) => fc.oneof(
  fc.array(fc.tuple(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...names, '__proto__', '__proto__[email]', 'constructor[prototype][list]') }, hostileString), hostileString), { maxLength: 6 })
    .map((pairs) => pairs.map(([key, value]) => `${percentEncoded(key)}=${percentEncoded(value)}`).join('&')),
  fc.string({ unit: codeUnit, maxLength: 60 }),
  fc.constantFrom('email=%', 'email=%E0%A4%A&list=news', '=&=&', 'email', '&'.repeat(5_000)),
);
/** Bytes that claim to be multipart and are not, or are cut short. */
const brokenMultipart = fc.tuple(fc.constantFrom('----x', '', '"quoted"', 'a'.repeat(200)), fc.uint8Array({ maxLength: 300 }))
  .map(([boundary, bytes]) => ({
    body: Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="email"\r\n\r\n`), Buffer.from(bytes)]),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  }));

// --- the people and things the valid tokens and ids point at ---------------------------------

let tokens: { confirm: string; unsubscribe: string; preferences: string };
let subscriberId: string;
/** Someone who confirmed: affinity can be recorded for them. */
let confirmedId: string;
let campaignId: string;

beforeAll(async () => {
  expect((await postJson(t.service, { email: 'held@example.org', list: 'news' })).status).toBe(202);
  const { rows: [row] } = await t.tdb.query(`select s.id, x.list_id from subscribers s join subscriptions x on x.subscriber_id = s.id where s.email = 'held@example.org'`);
  subscriberId = row.id;
  [confirmedId] = await seedConfirmed(t.tdb, 'weekly', 1, { prefix: 'confirmed' }) as [string];
  const { signer } = t.service.deps;
  const now = t.service.clock.now;
  tokens = {
    confirm: signer.signConfirm({ subscriberId, listId: row.list_id, issuedAt: now, expiresAt: now + 86_400_000 }),
    unsubscribe: signer.signUnsubscribe({ subscriberId, listId: row.list_id }),
    preferences: signer.signPreferences({ subscriberId, expiresAt: now + 86_400_000 }),
  };
  const created = await t.service.api('POST', '/api/v1/campaigns', {
    name: 'Draft', list: 'news', subject: 'Hi', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>',
  });
  campaignId = (await created.json()).id;
});

/** A token as an attacker would try one: garbage, or a real one cut, stretched or altered. */
const forgedToken = (real: () => string) => fc.oneof(
  pathSegment,
  fc.tuple(fc.nat(), fc.constantFrom('cut', 'append', 'flip', 'swap-mac')).map(([at, how]) => {
    const token = real();
    const i = at % token.length;
    if (how === 'cut') return token.slice(0, i);
    if (how === 'append') return `${token}A`;
    if (how === 'swap-mac') return `${token.split('.')[0]}.${tokens.confirm.split('.')[1]}`;
    return token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
  }).filter((token) => token.length > 0 && token !== real()),
);

const SUBSCRIBE_FIELDS = ['email', 'list', 'first_name', 'last_name', 'locale', 'redirect', 'website'];

describe('POST /subscribe', () => {
  it('JSON bodies', async () => {
    await fc.assert(fc.asyncProperty(hostileJsonBody(SUBSCRIBE_FIELDS, { email: 'near@example.org', list: 'news', first_name: 'Ada', locale: 'de' }), async (body) => {
      await judged('POST', '/subscribe', json(body));
    }), { ...RUNS, examples: [['{"email":"a@example.org","list":"ne\\u0000ws"}'], ['{"email":"a@example.org","list":"news","first_name":"\\ud800"}']] });
  });

  it('urlencoded bodies', async () => {
    await fc.assert(fc.asyncProperty(urlencoded(SUBSCRIBE_FIELDS), async (body) => {
      await judged('POST', '/subscribe', form(body));
    }), RUNS);
  });

  it('multipart bodies, files among the fields, and multipart that is not', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(multipartFields(SUBSCRIBE_FIELDS).map((fields) => ({ body: formData(fields) })), brokenMultipart), async (init) => {
      await judged('POST', '/subscribe', init);
    }), RUNS);
  });

  it('headers: content types, languages and forwarded addresses', async () => {
    const latin1 = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 60 });
    await fc.assert(fc.asyncProperty(
      fc.oneof(fc.constantFrom('application/json', 'application/json; charset=utf-16', 'text/plain', 'multipart/form-data', 'application/x-www-form-urlencoded;;;', ''), latin1),
      latin1, latin1, fieldsOf(SUBSCRIBE_FIELDS).map(objectText),
      async (type, language, forwarded, body) => {
        await judged('POST', '/subscribe', { body, headers: { 'content-type': type, 'accept-language': language, 'x-forwarded-for': forwarded, accept: language } });
      },
    ), RUNS);
  });

  it('leaves Object.prototype alone', () => {
    expect(({} as Record<string, unknown>).email).toBeUndefined();
    expect(({} as Record<string, unknown>).list).toBeUndefined();
  });
});

describe('links in mails', () => {
  for (const [name, base] of [['confirm', '/confirm/'], ['unsubscribe', '/u/'], ['preferences', '/preferences/']] as const) {
    it(`GET and POST ${base}{token} with forged tokens change nothing`, async () => {
      const actions = name === 'preferences' ? ['/leave', '/locale', '/cap', '/export', '/erase', '/erase/confirm'] : [''];
      await fc.assert(fc.asyncProperty(forgedToken(() => tokens[name]), fc.constantFrom('GET', 'POST'), fc.constantFrom(...actions), urlencoded(['List-Unsubscribe', 'list', 'locale', 'cap']), async (token, method, action, body) => {
        const response = await judged(method, method === 'POST' ? `${base}${token}${action}` : `${base}${token}`, method === 'POST' ? form(body) : {});
        expect(response.status).toBeGreaterThanOrEqual(400);
      }), RUNS);
    });
  }

  it('POST /u/{token} with a real token and any body other than One-Click changes nothing', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(urlencoded(['List-Unsubscribe']).map(form), multipartFields(['List-Unsubscribe']).map((f) => ({ body: formData(f) }))),
      async (init) => {
        const response = await judged('POST', `/u/${tokens.unsubscribe}`, init);
        if (response.status < 400) expect(await t.tdb.query(`select status from subscriptions where subscriber_id = $1`, [subscriberId]).then((r) => r.rows[0].status)).toBe('unsubscribed');
      }), RUNS);
  });

  it('GET pages with hostile queries', async () => {
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(`/confirm/${tokens.confirm}`, `/u/${tokens.unsubscribe}`, `/preferences/${tokens.preferences}`, '/manage', '/subscribe/check-inbox'),
      rawQuery, async (path, query) => {
        await judged('GET', `${path}?${query}`);
      },
    ), RUNS);
  });
});

describe('the preferences page', () => {
  it('POST forms with hostile bodies', async () => {
    await fc.assert(fc.asyncProperty(
      fc.constantFrom('leave', 'locale', 'cap', 'export', 'erase'),
      fc.oneof(urlencoded(['list', 'locale', 'cap']).map(form), multipartFields(['list', 'locale', 'cap']).map((f) => ({ body: formData(f) })), brokenMultipart),
      async (action, init) => {
        await judged('POST', `/preferences/${tokens.preferences}/${action}`, init);
      },
    ), { ...RUNS, examples: [['leave', form('list=ne%00ws')], ['leave', form('list=%ED%A0%80')]] });
  });

  it('POST /manage with hostile bodies', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(urlencoded(['email', 'locale']).map(form), multipartFields(['email', 'locale']).map((f) => ({ body: formData(f) }))), async (init) => {
      await judged('POST', '/manage', init);
    }), RUNS);
  });
});

describe('the marketers\' API with a valid key', () => {
  it('POST /api/v1/lists and PATCH /api/v1/lists/{slug}', async () => {
    await fc.assert(fc.asyncProperty(
      fc.oneof(fc.constant('POST /api/v1/lists'), fc.oneof(fc.constant('news'), pathSegment).map((slug) => `PATCH /api/v1/lists/${slug}`)),
      hostileJsonBody(['slug', 'name', 'consent_text', 'fields'], { slug: 'fresh', name: 'Fresh', consent_text: 'Yes, mail me.' }),
      async (route, body) => {
        const [method, path] = route.split(' ') as [string, string];
        await judged(method, path, api({ body }));
      },
    ), { ...RUNS, examples: [['PATCH /api/v1/lists/news', '{"name":"a\\u0000b"}'], ['POST /api/v1/lists', '{"slug":"zz","name":"a","consent_text":"\\ud800"}']] });
  });

  it('GET lists, subscribers and campaigns with hostile queries and path ids', async () => {
    const paths = fc.oneof(
      queryString(['email', 'list', 'status', 'limit', 'cursor']).map((q) => `/api/v1/subscribers?${q}`),
      queryString(['limit', 'cursor']).map((q) => `/api/v1/campaigns?${q}`),
      fc.tuple(pathSegment, fc.constantFrom('', '/consent', '/export')).map(([id, rest]) => `/api/v1/subscribers/${id}${rest}`),
      pathSegment.map((id) => `/api/v1/campaigns/${id}`),
      pathSegment.map((slug) => `/api/v1/lists/${slug}`),
    );
    await fc.assert(fc.asyncProperty(paths, async (path) => {
      await judged('GET', path, api());
    }), { ...RUNS, examples: [['/api/v1/campaigns/9999999999999999999'], ['/api/v1/lists/%00'], ['/api/v1/subscribers?list=%00'], ['/api/v1/campaigns?cursor=9999999999999999999']] });
  });

  it('POST affinity, DELETE subscribers, with hostile ids and bodies', async () => {
    await fc.assert(fc.asyncProperty(
      fc.oneof(fc.constant(confirmedId), fc.constant(subscriberId), pathSegment), fc.constantFrom('POST', 'DELETE'),
      hostileJsonBody(['level', 'reason'], { level: 'known', reason: 'asked' }),
      async (id, method, body) => {
        // erasing a person held is a success, not hostile input
        if (method === 'DELETE' && (id === subscriberId || id === confirmedId)) return;
        await judged(method, method === 'POST' ? `/api/v1/subscribers/${id}/affinity` : `/api/v1/subscribers/${id}`, api({ body }));
      },
    ), { ...RUNS, examples: [[confirmedId, 'POST', '{"level":"known","reason":"a\\u0000"}']] });
  });

  it('POST /api/v1/campaigns with hostile bodies and templates', async () => {
    const mjml = hostileString.map((text) => `<mjml><mj-body><mj-section><mj-column><mj-text>${text}</mj-text></mj-column></mj-section></mj-body></mjml>`);
    const bodies = fc.oneof(
      hostileJsonBody(['name', 'list', 'subject', 'mjml', 'min_affinity'], {
        name: 'Near', list: 'news', subject: 'Hello', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>',
      }),
      fc.tuple(hostileString, fc.constantFrom('news', 'weekly'), hostileString, fc.oneof(mjml, hostileString)).map(([name, list, subject, template]) =>
        JSON.stringify({ name, list, subject, mjml: template })),
    );
    await fc.assert(fc.asyncProperty(bodies, async (body) => {
      const response = await judged('POST', '/api/v1/campaigns', api({ body }));
      if (response.status === 201) {
        // A subject is one header line, whatever was typed into it.
        const { id } = JSON.parse(response.body) as { id: string };
        const preview = await t.service.api('POST', `/api/v1/campaigns/${id}/preview`, { subscriber_id: subscriberId });
        if (preview.status === 200) expect((await preview.json()).subject).not.toMatch(/[\r\n]/);
      }
    }), { numRuns: 60, examples: [['{"name":"a\\u0000","list":"news","subject":"s","mjml":"<mjml><mj-body></mj-body></mjml>"}']] });
  });

  it('POST /api/v1/campaigns with runaway Liquid (loops, captures, ranges, filters, nested), and preview of what it accepts', async () => {
    const bound = fc.constantFrom('1', '3', '1000', '10001', '1000000', '20000000', '100000000', '-5', '"a"', 'subscriber.first_name', 's.size');
    const program: fc.Arbitrary<string> = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' },
        fc.constantFrom('x', 'xxxxxxxxxxxxxxxx', '{{ s }}', '{{ s }}{{ s }}', '{{ subscriber.first_name }}', '{% assign s = s | append: s %}',
          '{% assign a = a | concat: a %}', '{{ "now" | date: "%99999999d" }}', '{{ s | split: "" | join: s }}', '{% cycle "a", "b" %}',
          '{% increment n %}', '{% break %}', '{% include "/etc/passwd" %}', '{{ a | sort | reverse | join }}'),
        fc.tuple(bound, tie('body')).map(([n, body]) => `{% for i in (1..${n}) %}${body}{% endfor %}`),
        fc.tuple(bound, tie('body')).map(([n, body]) => `{% tablerow i in (1..${n}) cols:3 %}${body}{% endtablerow %}`),
        tie('body').map((body) => `{% capture s %}${body}{% endcapture %}`),
      ),
      body: fc.array(tie('node'), { maxLength: 4 }).map((nodes) => nodes.join('')),
    })).body.map((body) => `{% assign s = "ab" %}{% assign a = "1,2,3" | split: "," %}${body}`);
    await fc.assert(fc.asyncProperty(program, fc.boolean(), async (liquid, inSubject) => {
      const body = JSON.stringify({
        name: 'Runaway', list: 'news', subject: inSubject ? liquid : 'Hi',
        mjml: `<mjml><mj-body><mj-section><mj-column><mj-text>${inSubject ? 'Hi' : liquid}</mj-text></mj-column></mj-section></mj-body></mjml>`,
      });
      const created = await judged('POST', '/api/v1/campaigns', api({ body }));
      if (created.status !== 201) return;
      const { id } = JSON.parse(created.body) as { id: string };
      const preview = await t.service.api('POST', `/api/v1/campaigns/${id}/preview`, { subscriber_id: subscriberId });
      expect([200, 422]).toContain(preview.status);
    }), { numRuns: 40, examples: [['{% for i in (1..20000000) %}{% endfor %}', false]] });
  }, 180_000);

  it('campaign actions with hostile ids and bodies', async () => {
    await fc.assert(fc.asyncProperty(
      fc.oneof(fc.constant(campaignId), pathSegment), fc.constantFrom('preview', 'pause', 'resume', 'cancel'),
      fc.oneof(hostileJsonBody(['subscriber_id']), fc.oneof(pathSegment, hostileString).map((id) => JSON.stringify({ subscriber_id: id }))),
      async (id, action, body) => {
        await judged('POST', `/api/v1/campaigns/${id}/${action}`, api({ body }));
      },
    ), { ...RUNS, examples: [['9999999999999999999', 'resume', '{}'], [campaignId, 'preview', '{"subscriber_id":"------------------------------------"}']] });
  });

  it('bodies that are not JSON get 415, and bodies over 1 MiB 413, announced or streamed', async () => {
    const list = '{"slug":"typed","name":"Typed","consent_text":"Yes, mail me."}';
    const key = { authorization: `Bearer ${API_KEY}` };
    const notJson: [string, { body: BodyInit; headers: Record<string, string> }][] = [
      ['text/plain', { body: list, headers: { ...key, 'content-type': 'text/plain' } }],
      ['urlencoded', { body: 'slug=typed&name=Typed&consent_text=Yes', headers: { ...key, 'content-type': 'application/x-www-form-urlencoded' } }],
      ['multipart', { body: formData([['slug', 'typed'], ['name', 'Typed'], ['consent_text', 'Yes']]), headers: key }],
      ['no content type', { body: new TextEncoder().encode(list), headers: key }],
    ];
    for (const [what, init] of notJson) {
      const { status, body } = await judged('POST', '/api/v1/lists', init);
      expect(status, what).toBe(415);
      expect(JSON.parse(body).error.code, what).toBe('unsupported_media_type');
    }

    // 12 MB with a million keys held the event loop for 3.4 s before it was refused
    const million = `{${Array.from({ length: 1_000_000 }, (_, i) => `"k${i}":0`).join(',')}}`;
    const oneChunkAtATime = (text: string) => {
      const bytes = new TextEncoder().encode(text);
      return new ReadableStream<Uint8Array>({
        start(controller) {
          for (let at = 0; at < bytes.length; at += 64 * 1024) controller.enqueue(bytes.subarray(at, at + 64 * 1024));
          controller.close();
        },
      });
    };
    const tooLarge: [string, string, Parameters<typeof judged>[2]][] = [
      ['announced', '/api/v1/lists', api({ body: million, headers: { 'content-length': String(Buffer.byteLength(million)) } })],
      ['streamed', '/api/v1/lists', { ...api({ body: oneChunkAtATime(million) }), duplex: 'half' }],
      ['with an Idempotency-Key', '/api/v1/lists', { ...api({ body: oneChunkAtATime(million), headers: { 'idempotency-key': 'big' } }), duplex: 'half' }],
      ['a campaign', '/api/v1/campaigns', api({ body: JSON.stringify({ name: 'Big', list: 'news', subject: 'Hi', mjml: `<mjml>${' '.repeat(1_100_000)}</mjml>` }) })],
    ];
    for (const [what, path, init] of tooLarge) {
      const { status, body } = await judged('POST', path, init);
      expect(status, what).toBe(413);
      expect(JSON.parse(body).error.code, what).toBe('payload_too_large');
    }
  });

  it('Idempotency-Key and Authorization headers', async () => {
    const latin1 = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 300 });
    await fc.assert(fc.asyncProperty(latin1, latin1, async (key, authorization) => {
      const response = await t.service.app.request('/api/v1/lists', {
        method: 'POST', body: '{"slug":"', headers: { authorization, 'idempotency-key': key, 'content-type': 'application/json' },
      });
      expect(response.status).toBeLessThan(500);
      const keyed = await t.service.app.request('/api/v1/campaigns/0/pause', {
        method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'idempotency-key': key },
      });
      expect(keyed.status).toBeLessThan(500);
    }), RUNS);
  });
});

describe('CR/LF where a mail header is built', () => {
  it('leaves a campaign\'s subject and its list\'s name one header line each, and the mail to its one recipient', async () => {
    const injected = '\r\nBcc: victim@example.net\r\nX-Injected: yes';
    expect((await t.service.api('POST', '/api/v1/lists', { slug: 'crlf', name: `Crlf${injected}`, consent_text: 'Yes.' })).status).toBe(201);
    await seedConfirmed(t.tdb, 'crlf', 1, { prefix: 'crlf', firstName: `Ada${injected}`, level: 'known' });
    const created = await t.service.api('POST', '/api/v1/campaigns', {
      name: 'Crlf', list: 'crlf', subject: `Hello {{ subscriber.first_name }}${injected}`,
      mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>',
    });
    expect(created.status).toBe(201);
    const since = t.smtp.received.length;
    expect((await t.service.api('POST', `/api/v1/campaigns/${(await created.json()).id}/send`)).status).toBe(202);
    await t.service.campaignWorker.runOnce();
    const [mail] = await t.smtp.waitFor(since + 1).then((all) => all.slice(since));
    expect(mail!.envelopeTo).toEqual(['crlf1@example.org']);
    expect(mail!.parsed.headers.has('x-injected')).toBe(false);
    expect(mail!.parsed.headers.has('bcc')).toBe(false);
    expect(mail!.parsed.subject).not.toMatch(/[\r\n]/);
    expect(mail!.parsed.subject).toContain('Bcc: victim@example.net'); // the text got there, as text
    const header = mail!.raw.toString('latin1').split(/\r\n\r\n/)[0]!;
    expect(header).not.toMatch(/^(Bcc|X-Injected):/im);
  });
});
