// An import's columns: ours (the contract's), and the names listmonk's and Mailchimp's
// exports use for the same things, accepted as they are.
//
// listmonk (subscribers export): uuid, email, name, attributes (JSON), status, created_at, updated_at.
// Mailchimp (audience export): "Email Address", "First Name", "Last Name", OPTIN_TIME, OPTIN_IP,
// CONFIRM_TIME, CONFIRM_IP, … ; CONFIRM_TIME/IP is the double opt-in's click, OPTIN_* the signup.

/** Our name for each accepted header (lower-cased, trimmed). */
const ALIASES: Record<string, string> = {
  email: 'email',
  'email address': 'email',
  first_name: 'first_name',
  'first name': 'first_name',
  fname: 'first_name',
  last_name: 'last_name',
  'last name': 'last_name',
  lname: 'last_name',
  name: 'name',
  locale: 'locale',
  attributes: 'attributes',
  status: 'status',
  consented_at: 'consented_at',
  consent_ip: 'consent_ip',
  consent_source: 'consent_source',
  consent_text: 'consent_text',
  confirm_time: 'confirm_time',
  confirm_ip: 'confirm_ip',
  optin_time: 'optin_time',
  optin_ip: 'optin_ip',
};

/** A header cell as our column name; `attributes.x` kept as is; undefined: ignored (Mailchimp's LEID, TAGS, …). */
export function columnName(header: string): string | undefined {
  const key = header.replace(/^\uFEFF/, '').trim().toLowerCase();
  if (key.startsWith('attributes.') && key.length > 'attributes.'.length) return `attributes.${header.trim().slice('attributes.'.length)}`;
  return ALIASES[key];
}

export interface ImportRow {
  email: string;
  firstName: string | null;
  lastName: string | null;
  locale: string | null;
  attributes: Record<string, string | number | boolean>;
  /** Set when the row brings consent collected elsewhere: what the row said of it. */
  consent: { consented_at: string; consent_ip: string | null; consent_source: string | null; consent_text: string | null } | null;
  /** listmonk's `blocklisted`: the source itself says not to mail this person. */
  blocklisted: boolean;
}

export class RowError extends Error {}

const text = (value: unknown): string | null => {
  if (value === undefined || value === null) return null;
  const s = String(value).trim();
  return s === '' ? null : s;
};

/**
 * A time as exports write it: RFC 3339, or Mailchimp's `2023-01-02 10:11:12` (UTC). Refused
 * when unreadable or in the future: consent cannot have been given later than now.
 */
function consentTime(value: string, now: number): string {
  const iso = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?$/.test(value) ? `${value.replace(' ', 'T')}Z` : value;
  const time = Date.parse(iso);
  if (Number.isNaN(time)) throw new RowError(`consented_at: not a date and time ("${value.slice(0, 40)}")`);
  if (time > now + 60_000) throw new RowError('consented_at: in the future');
  return new Date(time).toISOString();
}

/** One record (CSV cells by our column names, or an NDJSON object) as a row, or a RowError saying why not. */
export function toImportRow(record: Record<string, unknown>, now: number): Omit<ImportRow, 'email'> & { email: string | null } {
  const attributes: Record<string, string | number | boolean> = {};
  const given = record.attributes;
  if (typeof given === 'string' && given.trim() !== '') {
    let parsed: unknown;
    try { parsed = JSON.parse(given); } catch { throw new RowError('attributes: not JSON'); }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new RowError('attributes: not a JSON object');
    Object.assign(attributes, scalars(parsed as Record<string, unknown>));
  } else if (typeof given === 'object' && given !== null && !Array.isArray(given)) {
    Object.assign(attributes, scalars(given as Record<string, unknown>));
  }
  for (const [key, value] of Object.entries(record)) {
    if (key.startsWith('attributes.') && text(value) !== null) attributes[key.slice('attributes.'.length)] = text(value)!;
  }
  let firstName = text(record.first_name);
  let lastName = text(record.last_name);
  const name = text(record.name);
  if (name && firstName === null && lastName === null) {
    const space = name.indexOf(' ');
    firstName = space < 0 ? name : name.slice(0, space);
    lastName = space < 0 ? null : name.slice(space + 1).trim() || null;
  }
  const at = text(record.consented_at) ?? text(record.confirm_time) ?? text(record.optin_time);
  const consent = at === null ? null : {
    consented_at: consentTime(at, now),
    consent_ip: text(record.consent_ip) ?? text(record.confirm_ip) ?? text(record.optin_ip),
    consent_source: text(record.consent_source),
    consent_text: text(record.consent_text),
  };
  return {
    email: text(record.email), firstName, lastName, locale: text(record.locale), attributes, consent,
    blocklisted: text(record.status)?.toLowerCase() === 'blocklisted',
  };
}

function scalars(object: Record<string, unknown>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(object)) {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') out[key] = value;
    else if (value !== null && value !== undefined) out[key] = JSON.stringify(value);
  }
  return out;
}
