/**
 * `carepipe sql`: where the statement comes from (argument, `-` for stdin, or --file) and how its
 * rows are printed: a text table, CSV through the project's CSV writer (formula guard), a JSON array,
 * or with --json one JSON object holding the rows. Every output streams: rows are written batch by
 * batch as the cursor yields them, awaiting the reader, so memory does not grow with the result.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CarepipeError, isCarepipeError } from '../errors.js';
import type { SqlColumn, SqlOutcome, SqlRow, SqlSink } from '../db/sql.js';
import { csvTransform, guardFormula } from '../io/csv.js';
import type { CliState, CommandContext, CommandOutcome } from './common.js';
import { formatTable } from './output.js';

export type SqlFormat = 'table' | 'csv' | 'json';

export interface SqlCommandOptions {
  statement: string;
  format: SqlFormat;
  write: boolean;
  formulaGuard: boolean;
  batchSize?: number;
}

/** The statement from the argument, stdin (`-`) or --file: exactly one of them. */
export async function readStatement(argument: string | undefined, file: string | undefined, stdin: Readable, cwd: string): Promise<string> {
  if ((argument === undefined) === (file === undefined)) {
    throw new CarepipeError('USAGE', 'sql needs one statement: as an argument ("select …"), - to read it from stdin, or --file FILE');
  }
  let text: string;
  if (file !== undefined) {
    const resolved = path.resolve(cwd, file);
    try {
      text = await readFile(resolved, 'utf8');
    } catch (err) {
      throw new CarepipeError('INPUT_NOT_FOUND', `cannot read the SQL file ${resolved}: ${(err as Error).message}`, { file: resolved });
    }
  } else if (argument === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
    text = Buffer.concat(chunks).toString('utf8');
  } else {
    text = argument!;
  }
  // A trailing `;` is how people end a statement; DECLARE … FOR must not see it.
  const statement = text.trim().replace(/;\s*$/, '').trim();
  if (statement === '') throw new CarepipeError('USAGE', 'the SQL statement is empty');
  return statement;
}

/**
 * The command line for the ledger (only `--write` runs are recorded). The statement itself is left
 * out: a `where nhs_number = '…'` would put a patient identifier in `runs.arguments`. A --file path
 * is kept; it names a script, not a patient.
 */
export function sqlLedgerArgs(argument: string | undefined, file: string | undefined, format: SqlFormat): string[] {
  const source = file !== undefined ? ['--file', file] : argument === '-' ? ['-'] : ['<statement not recorded>'];
  return [...source, '--write', '--format', format];
}

// Types printed as numbers: no formula guard for them (`-3` is a number, not a formula), and JSON
// numbers. int8 only when it fits a double; numeric stays text to keep every digit.
const BOOL = 16;
const INT8 = 20;
const SMALL_INTEGERS = new Set([21, 23, 26]);
const FLOATS = new Set([700, 701]);
const NUMERIC = new Set([INT8, 21, 23, 26, 700, 701, 1700, 790]);
const JSON_TYPES = new Set([114, 3802]);

/** A value for JSON output: booleans, numbers and json as such, everything else as Postgres' text. */
export function jsonValue(text: string | null, dataTypeID: number): unknown {
  if (text === null) return null;
  if (dataTypeID === BOOL) return text === 't';
  if (SMALL_INTEGERS.has(dataTypeID)) return Number(text);
  if (dataTypeID === INT8 || FLOATS.has(dataTypeID)) {
    const n = Number(text);
    return (dataTypeID === INT8 ? Number.isSafeInteger(n) : Number.isFinite(n)) ? n : text;
  }
  if (JSON_TYPES.has(dataTypeID)) return JSON.parse(text) as unknown;
  return text;
}

function rowObject(columns: SqlColumn[], row: SqlRow): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  columns.forEach((c, i) => (object[c.name] = jsonValue(row[i] ?? null, c.dataTypeID)));
  return object;
}

/** Writes text, waiting for room when the stream's buffer is full. */
function writer(out: Writable, signal: AbortSignal) {
  return async (text: string) => {
    signal.throwIfAborted();
    if (!out.write(text)) await once(out, 'drain', { signal });
  };
}

/** Rows of a table printed together: column widths are computed per block so memory stays bounded. */
const TABLE_BLOCK = 1000;

function tableSink(out: Writable, signal: AbortSignal): SqlSink & { end(): Promise<void> } {
  const put = writer(out, signal);
  let columns: SqlColumn[] = [];
  let block: SqlRow[] = [];
  let printed = false;
  const flush = async () => {
    printed = true;
    await put(formatTable(columns.map((c) => c.name), block));
    block = [];
  };
  return {
    columns: (c) => void (columns = c),
    rows: async (rows) => {
      for (const row of rows) {
        block.push(row);
        if (block.length >= TABLE_BLOCK) await flush();
      }
    },
    end: async () => {
      if (columns.length > 0 && (block.length > 0 || !printed)) await flush();
    },
  };
}

function csvSink(out: Writable, signal: AbortSignal, formulaGuard: boolean): SqlSink & { end(): Promise<void> } {
  let csv: Transform | undefined;
  let piped: Promise<void> | undefined;
  let guarded: boolean[] = [];
  return {
    columns: (columns) => {
      // A statement without a result (UPDATE without RETURNING) prints no CSV at all.
      if (columns.length === 0) return;
      guarded = columns.map((c) => formulaGuard && !NUMERIC.has(c.dataTypeID));
      csv = csvTransform(columns.map((c) => c.name));
      piped = pipeline(csv, out, { end: false, signal });
      // Awaited in end(); a failure meanwhile also fails the next write.
      piped.catch(() => undefined);
    },
    rows: async (rows) => {
      if (!csv) return;
      for (const row of rows) {
        const cells = row.map((cell, i) => (cell !== null && guarded[i] ? guardFormula(cell) : cell));
        if (!csv.write(cells)) await once(csv, 'drain', { signal });
      }
    },
    end: async () => {
      if (!csv) return;
      csv.end();
      await piped;
    },
  };
}

function jsonArraySink(out: Writable, signal: AbortSignal): SqlSink & { end(): Promise<void> } {
  const put = writer(out, signal);
  let columns: SqlColumn[] = [];
  let count = 0;
  return {
    columns: async (c) => {
      columns = c;
      await put('[');
    },
    rows: async (rows) => {
      for (const row of rows) await put(`${count++ === 0 ? '\n' : ',\n'}${JSON.stringify(rowObject(columns, row))}`);
    },
    end: () => put(count === 0 ? ']\n' : '\n]\n'),
  };
}

/**
 * --json: one object, streamed. Its rows are written as they come; the fields that are known only
 * at the end (counts, status) follow them. A failure after the object began closes it with the
 * error, so stdout still holds exactly one JSON object.
 */
function jsonObjectSink(out: Writable, signal: AbortSignal, state: CliState, head: Record<string, unknown>) {
  const put = writer(out, signal);
  let columns: SqlColumn[] = [];
  let count = 0;
  let begun = false;
  const begin = async () => {
    if (begun) return;
    begun = true;
    state.jsonPrinted = true;
    await put(`${JSON.stringify(head).slice(0, -1)},"columns":${JSON.stringify(columns.map((c) => ({ name: c.name, type_oid: c.dataTypeID })))},"rows":[`);
  };
  const sink: SqlSink = {
    columns: async (c) => {
      columns = c;
      await begin();
    },
    rows: async (rows) => {
      for (const row of rows) await put(`${count++ === 0 ? '' : ','}${JSON.stringify(rowObject(columns, row))}`);
    },
  };
  return {
    sink,
    end: async (tail: Record<string, unknown>) => {
      await begin();
      await put(`],"row_count":${count},${JSON.stringify(tail).slice(1)}\n`);
    },
    /** Closes a begun object with the error; false when nothing was written yet. */
    fail: (err: unknown): boolean => {
      if (!begun || signal.aborted) return false;
      const code = isCarepipeError(err) ? err.code : 'INTERNAL';
      const exitCode = isCarepipeError(err) ? err.exitCode : 70;
      out.write(`],"row_count":${count},${JSON.stringify({ status: 'failed', exit_code: exitCode, error: { code, message: (err as Error).message } }).slice(1)}\n`);
      return true;
    },
  };
}

/** Runs the statement and prints its result in the chosen format. */
export async function runSqlCommand(options: SqlCommandOptions, ctx: CommandContext, state: CliState): Promise<CommandOutcome> {
  const { runSql } = await import('../db/sql.js');
  const { io, reporter, settings, db, ledger } = ctx;
  // A reader of stdout that goes away (`| head`) ends the run quietly, the statement rolled back.
  const stdoutGone = new AbortController();
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') stdoutGone.abort(err);
  };
  io.stdout.on('error', onStdoutError);
  // Writes stop only for a reader gone; a SIGINT is seen by runSql between batches (exit 130).
  const signal = stdoutGone.signal;
  const runOptions = { write: options.write, runId: options.write ? ledger.id : undefined, batchSize: options.batchSize, signal: ctx.signal };
  try {
    if (settings.json) {
      const json = jsonObjectSink(io.stdout, signal, state, { command: 'sql', run_id: options.write ? ledger.id : null });
      let outcome: SqlOutcome;
      try {
        outcome = await runSql(db, options.statement, runOptions, json.sink);
      } catch (err) {
        if (json.fail(err)) state.jsonPrinted = true;
        throw err;
      }
      record(ledger, outcome);
      await json.end({ statement: outcome.command, changed: outcome.changed, status: 'succeeded', exit_code: 0 });
      return { printed: true };
    }
    const sink =
      options.format === 'csv' ? csvSink(io.stdout, signal, options.formulaGuard) : options.format === 'json' ? jsonArraySink(io.stdout, signal) : tableSink(io.stdout, signal);
    const outcome = await runSql(db, options.statement, runOptions, sink);
    await sink.end();
    record(ledger, outcome);
    const tag = outcome.command === 'SELECT' || outcome.changed === null ? `(${outcome.rows} row${outcome.rows === 1 ? '' : 's'})` : `${outcome.command} ${outcome.changed}`;
    if (options.format === 'table') return { human: tag };
    reporter.info('done', { message: tag, statement: outcome.command, rows: outcome.rows, changed: outcome.changed });
    return {};
  } catch (err) {
    if (stdoutGone.signal.aborted) return { printed: true };
    throw err;
  } finally {
    io.stdout.off('error', onStdoutError);
  }
}

/** What a --write run did, in its ledger entry: the command tag and the rows, never the statement. */
function record(ledger: CommandContext['ledger'], outcome: SqlOutcome): void {
  ledger.details.statement = outcome.command;
  ledger.add({ read: outcome.rows, written: outcome.changed ?? 0 });
}
