// Header-style fields as reports carry them: the message/delivery-status body (RFC 3464
// §2.1: a per-message group, then one group per recipient, blank lines between), the
// message/feedback-report body (RFC 5965 §3.1), and the header block of an attached
// original (message/rfc822, text/rfc822-headers). mailparser hands these parts over as
// bytes, so they are read here, leniently: real reports fold lines wrongly, start with an
// mbox "From " line, or put a blank line inside their headers.

/** Field values by lower-case name, unfolded, every occurrence kept in order. */
export type Fields = ReadonlyMap<string, readonly string[]>;

const FIELD = /^([!-9;-~]+):[ \t]*(.*)$/;
const BLANK_LINE = /\n[ \t]*\r?\n/;
// Bounds on what one report may make us hold: no real field is longer than a few hundred
// characters, no real DSN lists more recipients than this.
const MAX_FIELDS = 500;
const MAX_VALUE_CHARS = 8192;

export function firstField(fields: Fields, name: string): string | null {
  return fields.get(name)?.[0] ?? null;
}

/** The fields of one block, up to its first blank line (the headers of a message). */
export function parseFieldBlock(text: string): Fields {
  const end = BLANK_LINE.exec(text)?.index;
  return parseLines(splitLines(end === undefined ? text : text.slice(0, end)), 0).fields;
}

/** The field blocks of a text, one per run of non-blank lines (a delivery-status body). */
export function parseFieldGroups(text: string): Fields[] {
  const groups: Fields[] = [];
  const lines = splitLines(text);
  let start = 0;
  while (start < lines.length && groups.length < MAX_FIELDS) {
    if (lines[start]!.trim() === '') {
      start++;
      continue;
    }
    const { fields, end } = parseLines(lines, start);
    if (fields.size > 0) groups.push(fields);
    start = Math.max(end, start + 1);
  }
  return groups;
}

function splitLines(text: string): string[] {
  return text.split(/\r?\n|\r/);
}

/** The fields from `start` up to the next blank line; `end` is that line's index. */
function parseLines(lines: readonly string[], start: number): { fields: Fields; end: number } {
  const fields = new Map<string, string[]>();
  let count = 0;
  let current: { name: string; value: string } | undefined;
  const flush = () => {
    if (!current) return;
    const values = fields.get(current.name);
    if (values) values.push(current.value.trim());
    else fields.set(current.name, [current.value.trim()]);
    count++;
    current = undefined;
  };
  let index = start;
  for (; index < lines.length && count < MAX_FIELDS; index++) {
    const line = lines[index]!;
    if (line.trim() === '') break;
    const field = /^[ \t]/.test(line) ? undefined : FIELD.exec(line);
    if (field) {
      flush();
      current = { name: field[1]!.toLowerCase(), value: field[2]!.slice(0, MAX_VALUE_CHARS) };
    } else if (current && current.value.length < MAX_VALUE_CHARS) {
      // A folded line, or one that lost its leading whitespace (Outlook's attached headers).
      current.value = `${current.value} ${line.trim()}`.slice(0, MAX_VALUE_CHARS);
    }
    // A line before the first field (an mbox "From " line) is skipped.
  }
  flush();
  return { fields, end: index };
}
