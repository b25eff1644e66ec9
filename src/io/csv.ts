/**
 * The CSV writer stage: rows of cells (strings, or null for SQL NULL) in, RFC 4180 text out, to
 * stdout or to a file that appears only once complete. It knows nothing of databases or FHIR.
 */
import { once } from 'node:events';
import type { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { stringify } from 'csv-stringify';
import { stringify as stringifySync } from 'csv-stringify/sync';

/** A cell: text, or null for a SQL NULL (written as an empty, unquoted field). */
export type Cell = string | null;

export interface CsvFormat {
  /** One character; default `,`. */
  delimiter?: string;
  /** Record separator; default CRLF, as RFC 4180 says. */
  eol?: '\r\n' | '\n';
  /** A UTF-8 byte order mark first, so Excel reads the file as UTF-8. */
  bom?: boolean;
}

/**
 * The csv-stringify transform with carepipe's conventions: a header row always (even for zero rows);
 * fields quoted when they hold the delimiter, a quote, CR or LF (RFC 4180), and an empty string
 * quoted (`""`) so that it stays distinct from NULL (an empty field), as Postgres' own CSV does.
 */
export function csvTransform(header: string[], format: CsvFormat = {}): Transform {
  return stringify({
    header: true,
    columns: header.map((name, i) => ({ key: String(i), header: name })),
    delimiter: format.delimiter ?? ',',
    record_delimiter: format.eol ?? '\r\n',
    bom: format.bom ?? false,
    // csv-stringify quotes a field holding the record delimiter, not a lone CR or LF: RFC 4180 wants both.
    quoted_match: /^$|[\r\n]/,
  });
}

const FORMULA_START = new Set(['=', '+', '-', '@', '\t', '\r']);

/**
 * Spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, tab or CR as a formula (CSV
 * injection); a leading `'` makes it text. The caller skips numeric columns, whose `-3.5` is a number.
 */
export function guardFormula(cell: string): string {
  return cell.length > 0 && FORMULA_START.has(cell[0]!) ? `'${cell}` : cell;
}

/**
 * One CSV record as text, for output written a row at a time (`view run`, `directory-lookup list`):
 * text cells go through guardFormula like every export; numbers and booleans are written as they are,
 * so a number `-3.5` stays a number. Dates as ISO 8601.
 */
export function csvRecord(cells: readonly unknown[]): string {
  return stringifySync([cells.map((cell) => (typeof cell === 'string' ? guardFormula(cell) : cell))], {
    cast: { boolean: (b) => String(b), date: (d) => d.toISOString() },
  });
}

/**
 * Writes batches of rows as CSV to `output`, awaiting back-pressure: a full buffer stops the reading
 * until it drains. `output` is left open (it may be stdout); `signal` aborts.
 */
export async function writeCsv(
  batches: AsyncIterable<Cell[][]>,
  header: string[],
  output: Writable,
  options: CsvFormat & { signal?: AbortSignal } = {},
): Promise<void> {
  const csv = csvTransform(header, options);
  const piped = pipeline(csv, output, { end: false, signal: options.signal });
  // If the pipeline fails first (output closed, aborted), stop reading at once.
  let failed: unknown;
  piped.catch((err: unknown) => {
    failed = err ?? new Error('CSV output failed');
  });
  try {
    for await (const batch of batches) {
      for (const row of batch) {
        if (!csv.write(row)) await once(csv, 'drain', { signal: options.signal });
      }
      if (failed) break;
    }
  } catch (err) {
    csv.destroy(err as Error);
    await piped.catch(() => undefined);
    throw err;
  }
  csv.end();
  await piped;
}

/** Output files are written by the format-generic helper; exported here too for existing imports. */
export { writeFileAtomically } from './output-file.js';
