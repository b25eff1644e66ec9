/**
 * A user's own SQL statement, run as given on either back end, for `carepipe sql`. It goes to the
 * driver, not through knex (which would read a `?`, the jsonb operator, as a binding). Reads happen
 * in a read-only transaction unless writing is asked for; a query is read through a cursor, a batch
 * at a time, so memory holds one batch whatever the size of the result. Values come back as
 * Postgres' own text, as psql shows them; the writers decide what to make of them.
 */
import { CarepipeError } from '../errors.js';
import type { Database } from './connection.js';

/** A column of the result: its name and its type's oid. */
export interface SqlColumn {
  name: string;
  dataTypeID: number;
}

/** A row: each value as Postgres' text output, null for NULL. */
export type SqlRow = (string | null)[];

/** Where the result goes: the columns once, then the rows batch by batch (awaited: back-pressure). */
export interface SqlSink {
  columns(columns: SqlColumn[]): Promise<void> | void;
  rows(rows: SqlRow[]): Promise<void> | void;
}

export interface RunSqlOptions {
  /** Allow changes and commit them; otherwise the transaction is read-only and rolled back. */
  write: boolean;
  /** The run in the ledger behind a write, for the row-history triggers (`carepipe.run_id`). */
  runId?: number;
  /** Rows per cursor fetch (default 1000). */
  batchSize?: number;
  /** Aborted (SIGINT/SIGTERM): stop between batches and roll back. */
  signal?: AbortSignal;
}

export interface SqlOutcome {
  /** The command tag: SELECT, INSERT, UPDATE, … */
  command: string | null;
  /** Rows returned. */
  rows: number;
  /** Rows a write changed (INSERT, UPDATE, DELETE, …), when Postgres says. */
  changed: number | null;
}

interface DriverResult {
  rows: SqlRow[];
  fields?: { name: string; dataTypeID: number }[];
  command?: string | null;
  rowCount?: number | null;
}

type Run = (text: string) => Promise<DriverResult>;

const CURSOR = 'carepipe_sql';

/**
 * Runs `statement` and hands its result to `sink`. A query (SELECT, VALUES, TABLE, WITH …) streams
 * through a cursor; any other statement (INSERT … RETURNING, SHOW, EXPLAIN, DDL) runs as it is and
 * its rows, usually few, come at once. One statement per call: Postgres refuses several.
 */
export async function runSql(db: Database, statement: string, options: RunSqlOptions, sink: SqlSink): Promise<SqlOutcome> {
  const client = db.knex.client as { acquireConnection(): Promise<unknown>; releaseConnection(connection: unknown): Promise<void> };
  const connection = await client.acquireConnection();
  const batchSize = options.batchSize ?? 1000;
  try {
    const run = await driver(db, connection);
    await run(options.write ? 'begin' : 'begin read only');
    try {
      if (options.write && options.runId) await run(`select set_config('carepipe.run_id', '${Number(options.runId)}', true)`);
      const outcome = await runInTransaction(run, statement, batchSize, options.signal, sink);
      await run(options.write ? 'commit' : 'rollback');
      return outcome;
    } catch (err) {
      await run('rollback').catch(() => undefined);
      throw err;
    }
  } catch (err) {
    throw sqlError(err);
  } finally {
    await client.releaseConnection(connection);
  }
}

async function runInTransaction(run: Run, statement: string, batchSize: number, signal: AbortSignal | undefined, sink: SqlSink): Promise<SqlOutcome> {
  // DECLARE takes only a query; anything else fails it, and then runs as given (the savepoint keeps
  // the transaction usable, and the second run reports a genuine mistake at its own position).
  await run(`savepoint ${CURSOR}`);
  let cursor = true;
  try {
    await run(`declare ${CURSOR} no scroll cursor for ${statement}`);
  } catch {
    cursor = false;
    await run(`rollback to savepoint ${CURSOR}`);
  }
  if (!cursor) {
    const result = await run(statement);
    await sink.columns(columnsOf(result));
    if (result.rows.length > 0) await sink.rows(result.rows);
    const command = result.command ?? null;
    return { command, rows: result.rows.length, changed: command === 'SELECT' ? null : (result.rowCount ?? null) };
  }
  let rows = 0;
  for (let first = true; ; first = false) {
    if (signal?.aborted) throw new CarepipeError('INTERRUPTED', 'interrupted: the statement was rolled back');
    const result = await run(`fetch forward ${batchSize} from ${CURSOR}`);
    if (first) await sink.columns(columnsOf(result));
    rows += result.rows.length;
    if (result.rows.length > 0) await sink.rows(result.rows);
    if (result.rows.length < batchSize) break;
  }
  await run(`close ${CURSOR}`);
  return { command: 'SELECT', rows, changed: null };
}

function columnsOf(result: DriverResult): SqlColumn[] {
  return (result.fields ?? []).map((f) => ({ name: f.name, dataTypeID: f.dataTypeID }));
}

/** The statement runner of the connection's driver, with every value read as text. */
async function driver(db: Database, connection: unknown): Promise<Run> {
  if (db.kind === 'postgres') {
    const client = connection as { query(config: object): Promise<DriverResult> };
    const types = { getTypeParser: () => (value: string) => value };
    // The extended protocol, as on PGlite: one statement, whichever back end.
    return (text) => client.query({ text, rowMode: 'array', types, queryMode: 'extended' });
  }
  const pglite = connection as {
    query(text: string, params: unknown[], options: object): Promise<DriverResult & { affectedRows?: number }>;
  };
  // PGlite takes parsers per type oid, so every type it knows gets one that keeps the text.
  const types = await pglite.query('select oid::int as oid from pg_type', [], { rowMode: 'array' });
  const parsers = Object.fromEntries(types.rows.map(([oid]) => [Number(oid), (value: string) => value]));
  return async (text) => {
    const result = await pglite.query(text, [], { rowMode: 'array', parsers });
    return { ...result, rowCount: result.rowCount ?? result.affectedRows ?? null };
  };
}

/**
 * Postgres' refusal of the statement as a usage error (exit 2) with its message and the character
 * position it points at. The DETAIL is left out: it can quote stored values (a duplicate key).
 */
function sqlError(err: unknown): unknown {
  const pg = err as { code?: unknown; message?: string; position?: unknown };
  if (typeof pg.code !== 'string' || !/^[0-9A-Z]{5}$/.test(pg.code)) return err;
  if (pg.code.startsWith('08')) {
    return new CarepipeError('DB_UNREACHABLE', `the database connection failed: ${pg.message}`, {}, { cause: err });
  }
  const position = pg.position === undefined ? undefined : Number(pg.position);
  const hint = pg.code === '25006' ? '; pass --write to change data' : '';
  return new CarepipeError(
    'SQL_ERROR',
    `SQL error: ${pg.message}${position === undefined ? '' : ` (at character ${position})`}${hint}`,
    // The ledger gets no Postgres wording: it can quote the statement's values (`invalid input … "…"`).
    { sqlstate: pg.code, position, ledgerMessage: `SQL error, SQLSTATE ${pg.code}${position === undefined ? '' : ` at character ${position}`}` },
    { cause: err },
  );
}
