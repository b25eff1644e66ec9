/**
 * Moving many rows into Postgres at once, the same way on both back ends. One statement per chunk:
 * the rows travel as a single JSON text parameter that Postgres unpacks with json_to_recordset, so a
 * batch costs one round trip and one parameter whatever its size (a 1,000-row multi-row VALUES list
 * needs 1,000 × columns parameters, which PGlite and pg both bind one by one).
 *
 * On a Postgres server `writeRows` goes through COPY instead (copy.ts, pg-copy-streams): the fastest
 * path there. On PGlite there is no COPY FROM STDIN; one JSON parameter per chunk is what is cheapest.
 */
import type { Knex } from 'knex';
import type { DatabaseKind } from '../db/connection.js';
import { bulkInsert } from './copy.js';

/** The SQL types of the columns rows are written to. */
export type ColumnSqlType = 'boolean' | 'integer' | 'bigint' | 'numeric' | 'bytea' | 'date' | 'timestamptz' | 'text' | 'jsonb';

export interface TableColumn {
  name: string;
  sqlType: ColumnSqlType;
}

/** Rows as objects keyed by column name; Buffers for bytea, plain JSON values for jsonb. */
export type Row = Record<string, unknown>;

/** Characters of JSON per statement: large enough to amortise the round trip, small enough to stay out of Postgres' 1 GB limits. */
const MAX_CHUNK_CHARS = 32 * 1024 * 1024;

function quote(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** One row as a JSON object; RawJson values are spliced in as they are. */
function encode(row: Row, columns: TableColumn[]): string {
  const parts: string[] = [];
  for (const c of columns) {
    const v = row[c.name];
    if (v === undefined || v === null) continue;
    const json = v instanceof RawJson ? v.json : JSON.stringify(Buffer.isBuffer(v) ? `\\x${v.toString('hex')}` : v);
    parts.push(`${JSON.stringify(c.name)}:${json}`);
  }
  return `{${parts.join(',')}}`;
}

/** A JSON text for a json/jsonb column, spliced into the batch as is instead of being stringified again. */
export class RawJson {
  constructor(readonly json: string) {}
}

/** `json_to_recordset(?::json) as r("a" text, …)` for these columns. */
export function recordset(columns: TableColumn[], alias = 'r'): string {
  return `json_to_recordset(?::json) as ${alias}(${columns.map((c) => `${quote(c.name)} ${c.sqlType}`).join(', ')})`;
}

/** Inserts `rows` into `table`, in as few statements as the chunk limit allows. Returns the number of rows. */
export async function insertRows(
  trx: Knex | Knex.Transaction,
  table: string,
  columns: TableColumn[],
  rows: Row[],
): Promise<number> {
  if (rows.length === 0) return 0;
  const names = columns.map((c) => quote(c.name)).join(', ');
  const sql = `insert into ${quote(table)} (${names}) select ${names} from ${recordset(columns)}`;
  let chunk: string[] = [];
  let chars = 0;
  const send = async () => {
    if (chunk.length === 0) return;
    await trx.raw(sql, [`[${chunk.join(',')}]`]);
    chunk = [];
    chars = 0;
  };
  for (const row of rows) {
    const json = encode(row, columns);
    if (chars + json.length > MAX_CHUNK_CHARS) await send();
    chunk.push(json);
    chars += json.length + 1;
  }
  await send();
  return rows.length;
}

/** Inserts `rows` the fastest way the back end allows: COPY on a server, JSON recordsets on PGlite. */
export async function writeRows(
  trx: Knex | Knex.Transaction,
  kind: DatabaseKind,
  table: string,
  columns: TableColumn[],
  rows: Row[],
): Promise<number> {
  if (rows.length === 0) return 0;
  if (kind === 'pglite') return insertRows(trx, table, columns, rows);
  return bulkInsert(
    trx,
    kind,
    table,
    columns.map((c) => c.name),
    rows.map((row) =>
      columns.map((c) => {
        const v = row[c.name];
        if (v instanceof RawJson) return v.json;
        if (Buffer.isBuffer(v)) return `\\x${v.toString('hex')}`;
        // jsonb values (objects, lists, but also a bare string or number) go as JSON text
        if (c.sqlType === 'jsonb' && v !== null && v !== undefined) return JSON.stringify(v);
        return v;
      }),
    ),
  );
}
