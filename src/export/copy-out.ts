/**
 * A query's rows written as CSV by the Postgres server itself: `COPY (SELECT …) TO STDOUT WITH
 * (FORMAT csv, HEADER)` through pg-copy-streams, in the caller's (read-only) transaction, so rows
 * never become JavaScript values. Postgres' CSV quoting is carepipe's (writers/csv.ts): a field is
 * quoted when it holds the delimiter, a quote, CR or LF, or is an empty string; NULL is an empty
 * field. What Postgres cannot do is done on the bytes as they pass: CRLF record ends (COPY writes LF)
 * and the byte order mark. Memory holds a chunk, whatever the size of the export.
 *
 * COPY takes no bound parameters. Rather than paste values into the statement (which the server may
 * log, or show in pg_stat_activity: a --where value, the pseudonym key's HMAC pads), each string is
 * set as a transaction-local setting and read back with current_setting(), as text: the SQL casts it
 * where it means another type (`?::date`; --where values are cast to their column's type).
 */
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Knex } from 'knex';
import { quoteIdent } from '../db/catalog.js';
import { CarepipeError } from '../errors.js';
import type { CsvFormat } from '../io/csv.js';
import { literal } from './cell-sql.js';
import type { SqlQuery } from './query.js';

const SETTING = 'carepipe.export_';

/**
 * A knex raw query with its value bindings turned into current_setting() reads (text) and its
 * identifier bindings quoted, as knex itself would: `\?` is a literal question mark.
 */
export function withSettings(query: SqlQuery): { sql: string; settings: string[] } {
  const settings: string[] = [];
  let index = 0;
  const sql = query.sql.replace(/\\?\?\??/g, (match) => {
    if (match === '\\?') return '?';
    const value = query.bindings[index++];
    if (match === '??') return String(value).split('.').map(quoteIdent).join('.');
    // NULL, numbers and booleans say nothing of anyone: written as they are.
    if (value === null || value === undefined) return 'null';
    if (typeof value === 'number' && Number.isFinite(value)) return `(${value})`;
    if (typeof value === 'boolean') return String(value);
    if (typeof value === 'string') settings.push(value);
    else if (value instanceof Date) settings.push(value.toISOString());
    else throw new CarepipeError('INTERNAL', `COPY cannot take a ${typeof value} binding`);
    return `current_setting('${SETTING}${settings.length}')`;
  });
  if (index !== query.bindings.length) throw new CarepipeError('INTERNAL', `expected ${query.bindings.length} bindings, saw ${index}`);
  return { sql, settings };
}

/**
 * Whether COPY can write this format byte for byte: a one-byte delimiter, and more than one column
 * (a lone column's `\.` would be quoted by Postgres, lest it read as the end of data).
 */
export function copyWrites(format: CsvFormat, columns: number): boolean {
  const delimiter = format.delimiter ?? ',';
  return columns > 1 && delimiter.length === 1 && delimiter.charCodeAt(0) < 0x80 && !'"\r\n'.includes(delimiter);
}

const QUOTE = 0x22;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');
const BOM = Buffer.from('\ufeff', 'utf8');

/**
 * COPY's CSV bytes as carepipe writes them: record ends (LF outside a quoted field) as `eol`, a BOM
 * first if asked. Counts the records after the header as they pass.
 */
export class CsvRecords extends Transform {
  /** Records seen after the header. */
  rows = 0;
  private quoted = false;
  private header = true;

  constructor(
    private readonly format: CsvFormat,
    private readonly onRows: (n: number) => void = () => undefined,
  ) {
    super();
    if (format.bom) this.push(BOM);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const crlf = (this.format.eol ?? '\r\n') === '\r\n';
    const parts: Buffer[] = [];
    let records = 0;
    let start = 0;
    let i = 0;
    let quote = chunk.indexOf(QUOTE);
    let lf = chunk.indexOf(LF);
    for (;;) {
      if (this.quoted) {
        // inside a quoted field: only its closing quote matters (`""` closes and opens again)
        if (quote < 0) break;
        this.quoted = false;
        i = quote + 1;
        quote = chunk.indexOf(QUOTE, i);
        continue;
      }
      if (lf >= 0 && lf < i) lf = chunk.indexOf(LF, i);
      if (quote >= 0 && (lf < 0 || quote < lf)) {
        this.quoted = true;
        i = quote + 1;
        quote = chunk.indexOf(QUOTE, i);
        continue;
      }
      if (lf < 0) break;
      if (this.header) this.header = false;
      else records += 1;
      if (crlf) {
        parts.push(chunk.subarray(start, lf), CRLF);
        start = lf + 1;
      }
      i = lf + 1;
      lf = chunk.indexOf(LF, i);
    }
    if (records > 0) {
      this.rows += records;
      this.onRows(records);
    }
    if (!crlf || start === 0) return done(null, chunk);
    parts.push(chunk.subarray(start));
    done(null, Buffer.concat(parts));
  }
}

interface PgConnection {
  processID: number;
  query(stream: Readable): Readable;
}

/**
 * Writes `select` as CSV with a header of its column names to `output` (left open), in `trx`:
 * returns the rows written. If writing stops early (the reader of a pipe went away, an abort, a
 * full disk), the COPY is cancelled on the server and the transaction stays usable for its rollback.
 */
export async function copyCsv(
  knex: Knex,
  trx: Knex.Transaction,
  select: SqlQuery,
  output: Writable,
  options: CsvFormat & { signal?: AbortSignal; onRows?: (n: number) => void },
): Promise<number> {
  const { to: copyTo } = await import('pg-copy-streams');
  const { sql, settings } = withSettings(select);
  if (settings.length > 0) {
    await trx.raw(`select ${settings.map((_, i) => `set_config('${SETTING}${i + 1}', ?, true)`).join(', ')}`, settings);
  }
  const delimiter = options.delimiter ?? ',';
  // Inside a transaction knex's client hands back the transaction's own connection.
  const connection = (await (trx.client as { acquireConnection(): Promise<PgConnection> }).acquireConnection()) as PgConnection;
  const copy = connection.query(copyTo(`COPY (${sql}) TO STDOUT WITH (FORMAT csv, HEADER true, DELIMITER ${literal(delimiter)})`));
  const records = new CsvRecords(options, options.onRows);
  const written = pipeline(records, output, { end: false, signal: options.signal });
  let ended = false;
  let failed: unknown;
  const copied = new Promise<void>((resolve, reject) => {
    copy.on('data', (chunk: Buffer) => {
      if (!records.write(chunk)) {
        copy.pause();
        records.once('drain', () => copy.resume());
      }
    });
    copy.once('end', () => {
      ended = true;
      records.end();
      resolve();
    });
    copy.once('error', (err) => {
      ended = true;
      failed ??= err;
      records.destroy();
      reject(err);
    });
  });
  try {
    await Promise.all([copied, written]);
  } catch (err) {
    // The write failed first (the COPY's own error, if any, comes after the cancel and says less).
    if (!ended) {
      failed = err;
      await cancel(knex, connection, copy);
    }
    await Promise.allSettled([copied, written]);
    throw failed ?? err;
  }
  return records.rows;
}

/** Stops a COPY that is still sending: asks the server to cancel it and drops what still arrives. */
async function cancel(knex: Knex, connection: PgConnection, copy: Readable): Promise<void> {
  const finished = new Promise<void>((resolve) => {
    copy.once('end', () => resolve());
    copy.once('error', () => resolve());
  });
  copy.removeAllListeners('data');
  copy.on('data', () => undefined);
  copy.resume();
  // Another connection of the pool: the transaction's own is busy with the COPY.
  await knex.raw('select pg_cancel_backend(?)', [connection.processID]).catch(() => undefined);
  await finished;
}
