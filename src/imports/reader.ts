// Reading an import file without holding it: the body is spooled to a temporary file while
// its SHA-256 is computed (every row's evidence names the file by that hash, so it must be
// known before the first row is written), then parsed as a stream, a record at a time.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parse } from 'csv-parse';
import { columnName } from './columns.js';

export type ImportFormat = 'csv' | 'ndjson';

export interface SpooledFile {
  path: string;
  sha256: string;
  bytes: number;
  remove(): Promise<void>;
}

/** Writes the stream to a temporary file, hashing it on the way. */
export async function spool(source: Readable | ReadableStream<Uint8Array>, maxBytes = Number.POSITIVE_INFINITY): Promise<SpooledFile> {
  const dir = await mkdtemp(path.join(tmpdir(), 'assent-import-'));
  const file = path.join(dir, 'body');
  const hash = createHash('sha256');
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > maxBytes) return callback(new Error(`the file is larger than ${maxBytes} bytes`));
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  const input = source instanceof Readable ? source : Readable.fromWeb(source as never);
  try {
    await pipeline(input, counter, createWriteStream(file));
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return { path: file, sha256: hash.digest('hex'), bytes, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** The CSV's header as our column names (undefined for a column we ignore). */
export async function readCsvHeader(file: string): Promise<(string | undefined)[]> {
  const parser = createReadStream(file).pipe(parse({ bom: true, to_line: 1, relax_column_count: true }));
  for await (const record of parser as AsyncIterable<string[]>) {
    parser.destroy();
    return record.map(columnName);
  }
  return [];
}

/** The keys of the first NDJSON object, as our column names; [] when the first line is not an object. */
export async function readNdjsonKeys(file: string): Promise<(string | undefined)[]> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    lines.close();
    try {
      const value: unknown = JSON.parse(line);
      return typeof value === 'object' && value !== null && !Array.isArray(value) ? Object.keys(value).map(columnName) : [];
    } catch {
      return [];
    }
  }
  return [];
}

export interface FileRecord {
  /** The line the record starts on, counting the header as line 1. */
  line: number;
  record: Record<string, unknown> | undefined;
  /** Why the record could not be read at all (bad JSON, a broken quote). */
  error?: string;
  /** Bytes of the file read so far, for progress. */
  position: number;
}

/** Every record of the file in order, with its line number; a bad one is reported, and the rest goes on. */
export async function* readRecords(file: string, format: ImportFormat): AsyncGenerator<FileRecord> {
  if (format === 'ndjson') {
    const stream = createReadStream(file);
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    let line = 0;
    for await (const text of lines) {
      line += 1;
      if (text.trim() === '') continue;
      let value: unknown;
      try { value = JSON.parse(text); } catch { yield { line, record: undefined, error: 'not valid JSON', position: stream.bytesRead }; continue; }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        yield { line, record: undefined, error: 'not a JSON object', position: stream.bytesRead };
        continue;
      }
      const record: Record<string, unknown> = {};
      for (const [key, cell] of Object.entries(value)) {
        const name = columnName(key);
        if (name !== undefined) record[name] = cell;
      }
      yield { line, record, position: stream.bytesRead };
    }
    return;
  }
  const stream = createReadStream(file);
  const header = await readCsvHeader(file);
  // Each record is read on its own terms: relax_column_count keeps a short or long row
  // readable (it is judged by its cells), skip_records_with_error reports a broken quote and goes on.
  const parser = stream.pipe(parse({
    bom: true, from_line: 2, relax_column_count: true, skip_empty_lines: true, info: true,
    skip_records_with_error: true,
  }));
  const broken: FileRecord[] = [];
  parser.on('skip', (error: Error & { lines?: number }) => broken.push({ line: error.lines ?? 0, record: undefined, error: `not valid CSV: ${error.message.slice(0, 200)}`, position: stream.bytesRead }));
  for await (const { record: cells, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
    yield* broken.splice(0);
    const record: Record<string, unknown> = {};
    header.forEach((name, index) => { if (name !== undefined && cells[index] !== undefined) record[name] = cells[index]; });
    yield { line: info.lines, record, position: stream.bytesRead };
  }
  yield* broken.splice(0);
}
