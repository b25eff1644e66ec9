/**
 * The fastest way to put many rows into one table inside the caller's transaction:
 * - on a Postgres server, `COPY … FROM STDIN` (text format) through pg-copy-streams, streamed from the
 *   rows as they are encoded, so a batch is never held twice in memory;
 * - on the embedded PGlite, multi-row INSERTs in chunks that stay under Postgres' 65535-parameter limit.
 * Values: null/undefined → NULL; Date → ISO 8601; objects and arrays → JSON (for jsonb columns);
 * booleans → t/f; strings as they are (a string bound for a jsonb column must be JSON text).
 * The writer knows tables and columns, nothing of where the rows came from.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Knex } from 'knex';
import { quoteIdent } from '../db/catalog.js';
import type { DatabaseKind } from '../db/connection.js';

export type Row = readonly unknown[];

export async function bulkInsert(
  trx: Knex.Transaction | Knex,
  kind: DatabaseKind,
  table: string,
  columns: readonly string[],
  rows: Iterable<Row> | AsyncIterable<Row>,
): Promise<number> {
  return kind === 'postgres' ? copyRows(trx, table, columns, rows) : insertRows(trx, table, columns, rows);
}


interface PoolClient {
  acquireConnection(): Promise<{ query(stream: unknown): NodeJS.WritableStream }>;
  releaseConnection(connection: unknown): Promise<void>;
}

async function copyRows(
  trx: Knex.Transaction | Knex,
  table: string,
  columns: readonly string[],
  rows: Iterable<Row> | AsyncIterable<Row>,
): Promise<number> {
  const { from: copyFrom } = await import('pg-copy-streams');
  // Inside a transaction knex's client hands back the transaction's own connection.
  const client = trx.client as PoolClient;
  const inTransaction = 'isTransaction' in trx && trx.isTransaction === true;
  const connection = await client.acquireConnection();
  let count = 0;
  try {
    const target = connection.query(copyFrom(`COPY ${qualified(table)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`));
    async function* encode() {
      let chunk = '';
      for await (const row of rows) {
        chunk += encodeRow(row);
        count++;
        // ~64 KiB writes: fewer round trips than one per row, without building the batch as one string.
        if (chunk.length >= 65536) {
          yield chunk;
          chunk = '';
        }
      }
      if (chunk) yield chunk;
    }
    await pipeline(Readable.from(encode()), target);
  } finally {
    if (!inTransaction) await client.releaseConnection(connection);
  }
  return count;
}

function qualified(table: string): string {
  return table.split('.').map(quoteIdent).join('.');
}

function encodeRow(row: Row): string {
  let line = '';
  for (let i = 0; i < row.length; i++) {
    if (i > 0) line += '\t';
    line += encodeValue(row[i]);
  }
  return line + '\n';
}

function encodeValue(value: unknown): string {
  if (value === null || value === undefined) return '\\N';
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'boolean') return value ? 't' : 'f';
  else if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  else if (value instanceof Date) return value.toISOString();
  else text = JSON.stringify(value);
  // COPY text format: backslash, tab, newline and carriage return are escaped.
  return text.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

async function insertRows(
  trx: Knex.Transaction | Knex,
  table: string,
  columns: readonly string[],
  rows: Iterable<Row> | AsyncIterable<Row>,
): Promise<number> {
  const perStatement = Math.max(1, Math.floor(60_000 / Math.max(1, columns.length)));
  let pending: Record<string, unknown>[] = [];
  let count = 0;
  const flush = async () => {
    if (pending.length === 0) return;
    await trx(table).insert(pending);
    count += pending.length;
    pending = [];
  };
  for await (const row of rows) {
    const record: Record<string, unknown> = {};
    columns.forEach((c, i) => {
      const v = row[i];
      // objects and arrays go as JSON text, as they do through COPY (for jsonb columns)
      record[c] = v !== null && typeof v === 'object' && !(v instanceof Date) ? JSON.stringify(v) : (v ?? null);
    });
    pending.push(record);
    if (pending.length >= perStatement) await flush();
  }
  await flush();
  return count;
}
