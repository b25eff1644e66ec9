/**
 * Rows to a text stream, for people and for other programs: ndjson (one JSON object per row, keys in
 * column order, values as FHIR JSON writes them: a decimal as a number with its digits, `71.50`),
 * CSV (csv-stringify, header row always, even with no rows), or a text table. A writer knows columns and values, nothing of where the rows come from. Back-pressure: `write` resolves once
 * the stream has room.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { isLosslessNumber, stringify as stringifyJson, type LosslessNumber } from 'lossless-json';
import { formatTable } from './table.js';
import { csvRecord } from './csv.js';

export type RowFormat = 'ndjson' | 'csv' | 'table';
export const ROW_FORMATS: readonly RowFormat[] = ['ndjson', 'csv', 'table'];

export interface RowColumn {
  name: string;
}

export interface RowWriter {
  write(row: Record<string, unknown>): Promise<void>;
  /** Flushes what is buffered (the table's last rows; the CSV header when there were no rows). */
  end(): Promise<void>;
}

/** Rows of a table printed together: column widths are computed per block so memory stays bounded. */
const TABLE_BLOCK = 1000;

/** `signal`: stop waiting for room (e.g. the reader of stdout went away). */
export function rowWriter(format: RowFormat, columns: readonly RowColumn[], out: Writable, options: { signal?: AbortSignal } = {}): RowWriter {
  const names = columns.map((c) => c.name);
  const put = async (text: string) => {
    options.signal?.throwIfAborted();
    if (!out.write(text)) await once(out, 'drain', { signal: options.signal });
  };
  switch (format) {
    case 'ndjson':
      return {
        write: (row) => put(`${ndjsonLine(row)}\n`),
        end: async () => undefined,
      };
    case 'csv': {
      let header = true;
      const line = csvRecord;
      return {
        write: async (row) => {
          if (header) {
            header = false;
            await put(line(names));
          }
          await put(line(names.map((n) => csvCell(row[n]))));
        },
        end: async () => {
          if (header) await put(line(names));
        },
      };
    }
    case 'table': {
      let block: (string | null)[][] = [];
      let printed = false;
      const flush = async () => {
        printed = true;
        await put(formatTable(names, block));
        block = [];
      };
      return {
        write: async (row) => {
          block.push(names.map((n) => textCell(row[n])));
          if (block.length >= TABLE_BLOCK) await flush();
        },
        end: async () => {
          if (block.length > 0 || !printed) await flush();
        },
      };
    }
  }
}

/**
 * One row as JSON. lossless-json writes a LosslessNumber's digits as they are, so a decimal read as
 * `71.50` comes out as the number `71.50`, not `71.5` nor the string `"71.50"`.
 */
function ndjsonLine(row: Record<string, unknown>): string {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(row)) out[name] = Buffer.isBuffer(value) ? value.toString('base64') : value;
  return stringifyJson(out, jsonValue)!;
}

/** JSON.stringify replacer: binary columns as base64 text. */
function jsonValue(this: unknown, _key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return Buffer.from((value as { data: number[] }).data).toString('base64');
  }
  return value;
}

/** A CSV cell: null empty, binary as base64, lists and objects as JSON text. */
function csvCell(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (isLosslessNumber(value)) return (value as LosslessNumber).value;
  if (typeof value === 'object') return stringifyJson(value, jsonValue);
  return value;
}

function textCell(value: unknown): string | null {
  const cell = csvCell(value);
  return cell === null ? null : String(cell);
}
