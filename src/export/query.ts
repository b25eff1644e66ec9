/**
 * Reading a source with constant memory, the same way on both back ends: a server-side cursor
 * (`DECLARE … CURSOR` then `FETCH n`, in one transaction, so one consistent snapshot) on the Postgres
 * server and on PGlite alike. Every column is read as Postgres text (format.ts decides how it is
 * written), and filters are built from validated column names and bound values, never pasted text.
 */
import type { Knex } from 'knex';
import { quoteIdent } from '../db/catalog.js';
import { CarepipeError } from '../errors.js';
import { kindOfType, type ValueKind } from './format.js';

/** A column of a query's result. */
export interface Field {
  name: string;
  oid: number;
  kind: ValueKind;
}

export interface SqlQuery {
  /** knex raw SQL: `?` binds a value, `??` an identifier. */
  sql: string;
  bindings: unknown[];
}

export type Operator = '=' | '!=' | '<' | '<=' | '>' | '>=';

/** One `--where` condition: a column, an operator and a value that is always bound, never pasted. */
export interface Condition {
  column: string;
  operator: Operator;
  value: string;
}

/** Parses `col=value`, `col>=value`, … (the value is everything after the operator, as typed). */
export function parseCondition(text: string): Condition {
  const match = /^\s*([^\s=!<>]+)\s*(>=|<=|!=|<>|=|<|>)(.*)$/s.exec(text);
  if (!match) {
    // The text is not echoed: a value typed without its column may be a patient identifier.
    throw new CarepipeError('USAGE', '--where: a condition has no operator: expected COLUMN=VALUE (or !=, <, <=, >, >=)', { field: 'where' });
  }
  const operator = (match[2] === '<>' ? '!=' : match[2]) as Operator;
  return { column: match[1]!, operator, value: match[3]! };
}


const SQL_OPERATORS: Record<Operator, string> = { '=': '=', '!=': '<>', '<': '<', '<=': '<=', '>': '>', '>=': '>=' };

export interface SelectPlan {
  /** The source: a table read or a computed query. */
  inner: SqlQuery;
  /** Columns to read, in order. */
  columns: Field[];
  conditions: Condition[];
  since?: { column: string; value: string };
  /** Column names, or SQL expressions over `q` (the research profile orders by pseudonyms). */
  orderBy: (string | SqlQuery)[];
  /** Expressions over `q` read after the columns (the row's patient key, for date shifting). */
  extra?: SqlQuery[];
  /** Instead of the columns as text: the cells made by the database (cell-sql.ts), each named for the CSV header. */
  cells?: { name: string; sql: SqlQuery }[];
  /** The SQL type of each `--where` column: a value is bound as that type, not left for the planner to guess. */
  conditionTypes?: Map<string, string>;
}

/**
 * `select <columns as text> from (<inner>) as q where <bound conditions> order by <key>`.
 * Arrays are read as compact JSON (`to_json`), everything else as its text output.
 */
export function buildSelect(plan: SelectPlan): SqlQuery {
  const list = plan.cells
    ? plan.cells.map((c) => `${c.sql.sql} as ${quoteIdent(c.name)}`).join(', ')
    : plan.columns
        .map((c) => (c.kind === 'array' ? `to_json(q.${quoteIdent(c.name)})::text` : `q.${quoteIdent(c.name)}::text`))
        .concat((plan.extra ?? []).map((e) => `(${e.sql})::text`))
        .join(', ');
  const where: string[] = [];
  const bindings = [...(plan.cells ? plan.cells.flatMap((c) => c.sql.bindings) : (plan.extra ?? []).flatMap((e) => e.bindings)), ...plan.inner.bindings];
  for (const condition of plan.conditions) {
    const type = plan.conditionTypes?.get(condition.column);
    where.push(`q.${quoteIdent(condition.column)} ${SQL_OPERATORS[condition.operator]} ?${type ? `::${type}` : ''}`);
    bindings.push(condition.value);
  }
  if (plan.since) {
    where.push(`q.${quoteIdent(plan.since.column)} >= ?::timestamptz`);
    bindings.push(plan.since.value);
  }
  const order = plan.orderBy.map((c) => {
    if (typeof c === 'string') return `q.${quoteIdent(c)}`;
    bindings.push(...c.bindings);
    return c.sql;
  });
  const sql =
    `select ${list || 'null'} from (${plan.inner.sql}) as q` +
    (where.length ? ` where ${where.join(' and ')}` : '') +
    (order.length ? ` order by ${order.join(', ')}` : '');
  return { sql, bindings };
}

interface RawResult {
  rows: unknown[];
  fields: { name: string; dataTypeID: number }[];
}

/**
 * One transaction that reads a source through a cursor. `begin` sets the session's output formats
 * for this transaction only: ISO dates in `timezone`, ISO 8601 intervals.
 */
export class ReadTransaction {
  private cursorOpen = false;

  private constructor(readonly trx: Knex.Transaction) {}

  static async begin(knex: Knex, options: { timezone: string }): Promise<ReadTransaction> {
    const trx = await knex.transaction();
    try {
      // An export only reads: a source whose SQL would write (or a bug) fails instead of changing data.
      await trx.raw('set transaction read only');
      await trx.raw(
        "select set_config('TimeZone', ?, true), set_config('DateStyle', 'ISO, YMD', true), set_config('IntervalStyle', 'iso_8601', true)",
        [options.timezone],
      );
    } catch (err) {
      await trx.rollback().catch(() => undefined);
      if ((err as { code?: string }).code === '22023') {
        throw new CarepipeError('USAGE', `--timezone '${options.timezone}' is not a time zone Postgres knows (e.g. UTC, Europe/London)`);
      }
      throw err;
    }
    return new ReadTransaction(trx);
  }

  /** The columns a query returns (runs it with `limit 0`). */
  async describe(query: SqlQuery): Promise<Field[]> {
    const result = (await this.trx.raw(`select * from (${query.sql}) as q limit 0`, query.bindings as Knex.RawBinding[])) as RawResult;
    const oids = [...new Set(result.fields.map((f) => f.dataTypeID))];
    const types = (await this.trx.raw('select oid::int as oid, typcategory::text as category from pg_type where oid = any(?::oid[])', [
      oids,
    ])) as { rows: { oid: number; category: string }[] };
    const category = new Map(types.rows.map((t) => [Number(t.oid), t.category]));
    return result.fields.map((f) => ({ name: f.name, oid: f.dataTypeID, kind: kindOfType(f.dataTypeID, category.get(f.dataTypeID) ?? 'U') }));
  }

  /**
   * The SQL type of `oid` when `value` is not a value of it (`abc` for a date), else undefined: a
   * --where value is checked before the query runs so that the error can name its column and type.
   */
  async misfit(value: string, oid: number): Promise<string | undefined> {
    const name = await this.typeName(oid);
    try {
      // In a savepoint: a failed cast would otherwise abort the read transaction.
      await this.trx.transaction((sp) => sp.raw(`select ?::${name}`, [value]));
      return undefined;
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('22')) return name;
      throw err;
    }
  }

  /** The SQL name of a type (`integer`, `timestamp with time zone`, `"my schema".mood`). */
  async typeName(oid: number): Promise<string> {
    const type = (await this.trx.raw('select format_type(?::oid, null) as name', [oid])) as { rows: { name: string }[] };
    return type.rows[0]!.name;
  }

  /** Primary key columns of a table, in key order (none for a view). */
  async primaryKey(relation: string): Promise<string[]> {
    const result = (await this.trx.raw(
      `select a.attname::text as name
         from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where i.indrelid = to_regclass(?) and i.indisprimary
        order by array_position(i.indkey::int2[], a.attnum)`,
      [quoteIdent(relation)],
    )) as { rows: { name: string }[] };
    return result.rows.map((r) => r.name);
  }

  /**
   * Rows of `query` as arrays of text (null for NULL), `batchSize` at a time. Memory holds one batch.
   */
  async *batches(query: SqlQuery, batchSize: number): AsyncGenerator<(string | null)[][]> {
    await this.trx.raw(`declare carepipe_export no scroll cursor for ${query.sql}`, query.bindings as Knex.RawBinding[]);
    this.cursorOpen = true;
    for (;;) {
      const result = (await this.trx.raw(`fetch forward ${batchSize} from carepipe_export`).options({ rowMode: 'array' })) as RawResult;
      const rows = result.rows as (string | null)[][];
      if (rows.length > 0) yield rows;
      if (rows.length < batchSize) break;
    }
    await this.trx.raw('close carepipe_export');
    this.cursorOpen = false;
  }

  /** Ends the transaction; it is read only, so committing or not changes nothing but the cursor's fate. */
  async end(commit: boolean): Promise<void> {
    if (this.trx.isCompleted()) return;
    if (commit && !this.cursorOpen) await this.trx.commit();
    else await this.trx.rollback();
  }
}

/** Postgres errors a user causes with a flag value, as exit-2 errors naming the flag. */
export function userErrorFromDatabase(err: unknown, context: { source: string }): CarepipeError | undefined {
  const code = (err as { code?: string }).code;
  const message = (err as Error).message;
  if (code === '42P01') {
    return new CarepipeError('SOURCE_UNKNOWN', `${context.source}: the table does not exist yet (run the command that loads it, or carepipe migrate)`);
  }
  // class 22: data exception, e.g. a --where value that is not a number or a date for its column
  if (code?.startsWith('22')) {
    // Postgres quotes the offending value ("invalid input syntax for type date: \"…\""): keep its words, not the value.
    return new CarepipeError('USAGE', `${context.source}: a flag value (--where, --since, --from, --to) does not fit its column: ${message.replace(/"[^"]*"/g, '"****"')}`);
  }
  return undefined;
}
