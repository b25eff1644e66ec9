/**
 * Row history: every insert, update and delete on a clinical table leaves a row in `row_history`
 * (table, key, operation, the row before and after as jsonb, the run, the time, the database user).
 *
 * Triggers, not the writers, record it: a trigger runs inside the statement that changes the row, so
 * history and data commit or roll back together and no writer (ingest, clinicians, appointments, a
 * user's psql session) can forget it. The run comes from `carepipe.run_id`, which `inRunTransaction`
 * sets locally in every batch transaction.
 *
 * Statement-level triggers with transition tables, not row-level ones: a bulk load writes thousands of
 * rows per statement, and one `insert … select` from the transition table per statement does the work
 * of thousands of PL/pgSQL calls. Measured by `node bench/row-history.mjs` on a 10k-row upsert, ms,
 * PGlite / Postgres, statement-level against row-level: new rows 1417/807 against 5130/1134, changed
 * rows 3362/1317 against 6744/2637, delete 1223/488 against 8249/1651 (no history: 1394/636, 1396/729,
 * 118/52). The figures are in the README.
 * One exception: pairing the old and new image of an updated row needs a key that identifies the row.
 * Flat FHIR tables have several rows per resource (`_resource_id` is not unique), so on tables whose key
 * columns are not a primary key or unique index, updates are recorded by a row-level trigger.
 * TRUNCATE is not recorded.
 */
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import { quoteIdent, tableExists } from './catalog.js';

export type HistoryOperation = 'I' | 'U' | 'D';

/** How updates are paired: by key in one statement, or row by row. `auto` picks by key uniqueness. */
export type HistoryMode = 'auto' | 'statement' | 'row';

/**
 * Functions the triggers call; created by the migration and again (idempotently) by attachHistory.
 * The trigger functions keep the search path of carepipe's connection that created them: row_history
 * lives in carepipe's own schema, which a user's psql session changing a clinical row need not list.
 */
export const HISTORY_FUNCTIONS_SQL: string[] = [`
create or replace function carepipe_history_unchanged(before_row jsonb, after_row jsonb) returns boolean
language sql immutable as $$
  -- Columns that record when a row was last seen by an import, not what it says: a nightly re-import
  -- that only moves them is not a change of the row (clinicians, directory tables).
  select (before_row - array['last_seen', 'last_seen_at', 'last_seen_run_id'])
         is not distinct from (after_row - array['last_seen', 'last_seen_at', 'last_seen_run_id'])
$$`,
`
create or replace function carepipe_history_run_id() returns bigint language sql stable as $$
  select nullif(current_setting('carepipe.run_id', true), '')::bigint
$$`,
`
create or replace function carepipe_history_statement() returns trigger language plpgsql
set search_path from current as $$
declare
  run bigint := carepipe_history_run_id();
  new_key text;
  old_key text;
  matched text;
begin
  -- TG_ARGV holds the key columns; the key is their text values joined by '/'.
  select string_agg(format('n.%I::text', k), ', ' order by i),
         string_agg(format('o.%I::text', k), ', ' order by i),
         string_agg(format('n.%1$I = o.%1$I', k), ' and ' order by i)
    into new_key, old_key, matched
    from unnest(TG_ARGV) with ordinality as u(k, i);
  if TG_OP = 'INSERT' then
    execute format(
      'insert into row_history (table_name, row_key, operation, after, run_id)
       select $1, concat_ws(''/'', %s), ''I'', to_jsonb(n), $2 from carepipe_new n', new_key)
      using TG_TABLE_NAME, run;
  elsif TG_OP = 'DELETE' then
    execute format(
      'insert into row_history (table_name, row_key, operation, before, run_id)
       select $1, concat_ws(''/'', %s), ''D'', to_jsonb(o), $2 from carepipe_old o', old_key)
      using TG_TABLE_NAME, run;
  else
    -- pairs old and new images by key (attachHistory uses this only when the key is unique);
    -- an update that changes nothing is no change, nor one that only moves the "last seen" marks
    -- that importers set on every row they see again (see carepipe_history_unchanged)
    execute format(
      'insert into row_history (table_name, row_key, operation, before, after, run_id)
       select $1, concat_ws(''/'', %s), ''U'', j.o, j.n, $2
         from carepipe_new n join carepipe_old o on %s
        cross join lateral (select to_jsonb(o) as o, to_jsonb(n) as n) as j
        where not carepipe_history_unchanged(j.o, j.n)', new_key, matched)
      using TG_TABLE_NAME, run;
  end if;
  return null;
end
$$`,
`create or replace function carepipe_history_row() returns trigger language plpgsql
set search_path from current as $$
declare
  before_row jsonb;
  after_row jsonb;
  key text;
begin
  if TG_OP <> 'INSERT' then before_row := to_jsonb(OLD); end if;
  if TG_OP <> 'DELETE' then after_row := to_jsonb(NEW); end if;
  if TG_OP = 'UPDATE' and carepipe_history_unchanged(before_row, after_row) then return null; end if;
  select string_agg(coalesce(after_row, before_row) ->> k, '/' order by i) into key
    from unnest(TG_ARGV) with ordinality as u(k, i);
  insert into row_history (table_name, row_key, operation, before, after, run_id)
  values (TG_TABLE_NAME, key, left(TG_OP, 1), before_row, after_row, carepipe_history_run_id());
  return null;
end
$$`];

/** Creates (or replaces) the trigger functions. */
export async function createHistoryFunctions(knex: Knex): Promise<void> {
  for (const sql of HISTORY_FUNCTIONS_SQL) await knex.raw(sql);
}

const TRIGGERS = ['carepipe_history_ins', 'carepipe_history_upd', 'carepipe_history_del', 'carepipe_history_row'];


/** The columns of the table's primary key, in key order (empty when it has none). */
export async function primaryKeyColumns(knex: Knex, table: string): Promise<string[]> {
  const result = await knex.raw<{ rows: { column_name: string }[] }>(
    `select a.attname as column_name
       from pg_index i
       join unnest(i.indkey) with ordinality as k(attnum, ord) on true
       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
      where i.indrelid = to_regclass(?) and i.indisprimary
      order by k.ord`,
    [quoteIdent(table)],
  );
  return result.rows.map((r) => r.column_name);
}

/** Whether some primary key or unique index covers exactly these columns. */
async function keyIsUnique(knex: Knex, table: string, keyColumns: string[]): Promise<boolean> {
  const result = await knex.raw<{ rows: { cols: string[] }[] }>(
    `select array(select a.attname::text from unnest(i.indkey) as k(attnum)
                  join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum) as cols
       from pg_index i
      where i.indrelid = to_regclass(?) and i.indisunique and i.indpred is null`,
    [quoteIdent(table)],
  );
  const wanted = [...keyColumns].sort().join(',');
  return result.rows.some((r) => [...r.cols].sort().join(',') === wanted);
}

/**
 * Records every insert, update and delete on `table` in `row_history`, keyed by `keyColumns` (their
 * values joined by '/', e.g. `Patient/123`). Idempotent: attaching again replaces the triggers, so
 * the ingest writer may call it each time it creates or finds a `--view` table.
 */
export async function attachHistory(
  knex: Knex,
  table: string,
  keyColumns: string[],
  options: { mode?: HistoryMode } = {},
): Promise<void> {
  if (keyColumns.length === 0) throw new CarepipeError('INTERNAL', `attachHistory(${table}): no key columns`);
  if (!(await tableExists(knex, table))) throw new CarepipeError('INTERNAL', `attachHistory: no table ${table}`);
  if (table === 'row_history') throw new CarepipeError('INTERNAL', 'row_history does not record itself');
  const mode = options.mode ?? 'auto';
  const updateByRow = mode === 'row' || (mode === 'auto' && !(await keyIsUnique(knex, table, keyColumns)));
  const t = quoteIdent(table);
  const args = keyColumns.map((c) => `'${c.replace(/'/g, "''")}'`).join(', ');
  await knex.transaction(async (trx) => {
    await createHistoryFunctions(trx);
    for (const trigger of TRIGGERS) await trx.raw(`drop trigger if exists ${trigger} on ${t}`);
    if (mode === 'row') {
      await trx.raw(
        `create trigger carepipe_history_row after insert or update or delete on ${t}
         for each row execute function carepipe_history_row(${args})`,
      );
    } else {
      await trx.raw(
        `create trigger carepipe_history_ins after insert on ${t} referencing new table as carepipe_new
         for each statement execute function carepipe_history_statement(${args})`,
      );
      await trx.raw(
        `create trigger carepipe_history_del after delete on ${t} referencing old table as carepipe_old
         for each statement execute function carepipe_history_statement(${args})`,
      );
      await trx.raw(
        updateByRow
          ? `create trigger carepipe_history_upd after update on ${t}
             for each row execute function carepipe_history_row(${args})`
          : `create trigger carepipe_history_upd after update on ${t}
             referencing old table as carepipe_old new table as carepipe_new
             for each statement execute function carepipe_history_statement(${args})`,
      );
    }
    await trx.raw(
      `insert into row_history_tables (table_name, key_columns) values (?, ?)
       on conflict (table_name) do update set key_columns = excluded.key_columns, attached_at = now()`,
      [table, keyColumns],
    );
  });
}

/**
 * Attaches history to `table` unless it already has it, keyed by `keyColumns` or else by
 * historyKeyColumns (`_resource_type`/`_resource_id`, else the primary key). For writers that create tables
 * at run time (ingest-fhir's `--view` tables): one cheap lookup when already attached. Returns whether
 * it attached.
 */
export async function ensureHistory(knex: Knex, table: string, keyColumns?: string[]): Promise<boolean> {
  if (await recordedKeyColumns(knex, table)) return false;
  const keys = keyColumns ?? (await historyKeyColumns(knex, table));
  if (keys.length === 0) throw new CarepipeError('INTERNAL', `ensureHistory(${table}): no primary key and no _resource_type/_resource_id columns`);
  await attachHistory(knex, table, keys);
  return true;
}

/** Stops recording `table` (its past history stays). */
export async function detachHistory(knex: Knex, table: string): Promise<void> {
  if (await tableExists(knex, table)) {
    for (const trigger of TRIGGERS) await knex.raw(`drop trigger if exists ${trigger} on ${quoteIdent(table)}`);
  }
  await knex('row_history_tables').where({ table_name: table }).delete();
}

/**
 * The key to record a table by: the flat-table bookkeeping columns (`_resource_type`, `_resource_id`:
 * one resource's rows share it, so `history patient Patient/123` shows the resource's rows, not a
 * primary key that also counts the row's position), else its primary key, else none.
 */
export async function historyKeyColumns(knex: Knex, table: string): Promise<string[]> {
  const result = await knex.raw<{ rows: { column_name: string }[] }>(
    `select a.attname as column_name from pg_attribute a
      where a.attrelid = to_regclass(?) and not a.attisdropped and a.attname in ('_resource_type', '_resource_id')`,
    [quoteIdent(table)],
  );
  if (result.rows.length === 2) return ['_resource_type', '_resource_id'];
  return primaryKeyColumns(knex, table);
}

/** One recorded change with the run behind it. */
export interface RowChange {
  id: number;
  table_name: string;
  row_key: string;
  operation: HistoryOperation;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  changed_at: Date;
  db_user: string;
  run_id: number | null;
  run_command: string | null;
  run_arguments: string[] | null;
  run_user: string | null;
  run_started_at: Date | null;
}

/** The key columns a table is recorded by, or undefined when it has no history. */
export async function recordedKeyColumns(knex: Knex, table: string): Promise<string[] | undefined> {
  const row = await knex('row_history_tables').where({ table_name: table }).first('key_columns');
  return row ? (row.key_columns as string[]) : undefined;
}

/** The changes of one row, oldest first, each with its run from the ledger. */
export async function rowHistory(knex: Knex, table: string, key: string): Promise<RowChange[]> {
  const keyColumns = await recordedKeyColumns(knex, table);
  if (!keyColumns) {
    const tables = (await knex('row_history_tables').orderBy('table_name').pluck('table_name')) as string[];
    throw new CarepipeError('USAGE', `${table} has no row history; tables with history: ${tables.join(', ') || 'none'}`);
  }
  if (key.split('/').length !== keyColumns.length) {
    throw new CarepipeError(
      'USAGE',
      `the key of ${table} is ${keyColumns.join('/')}: give ${keyColumns.length === 1 ? 'its value' : `${keyColumns.length} values joined by '/'`}, for example ${keyColumns.map((c) => `<${c}>`).join('/')}`,
    );
  }
  return knex('row_history as h')
    .leftJoin('runs as r', 'r.id', 'h.run_id')
    .where({ 'h.table_name': table, 'h.row_key': key })
    .orderBy('h.id')
    .select(
      'h.id',
      'h.table_name',
      'h.row_key',
      'h.operation',
      'h.before',
      'h.after',
      'h.changed_at',
      'h.db_user',
      'h.run_id',
      'r.command as run_command',
      'r.arguments as run_arguments',
      'r.os_user as run_user',
      'r.started_at as run_started_at',
    );
}

/** One difference between two row images: a column, or a path inside a jsonb column (`resource.name[0].family`). */
export interface FieldChange {
  path: string;
  before?: unknown;
  after?: unknown;
}

/**
 * The differences between two row images, down to the leaves of jsonb values, so that a changed
 * FHIR resource shows the one field that changed rather than two whole resources.
 */
export function diffRow(before: Record<string, unknown> | null, after: Record<string, unknown> | null): FieldChange[] {
  const out: FieldChange[] = [];
  diffValue('', before ?? undefined, after ?? undefined, out);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A non-empty object or array: shown leaf by leaf when added or removed whole. */
function isContainer(v: unknown): boolean {
  return (Array.isArray(v) && v.length > 0) || (isObject(v) && Object.keys(v).length > 0);
}

function diffValue(path: string, before: unknown, after: unknown, out: FieldChange[]): void {
  if (isObject(before) && isObject(after)) {
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
      diffValue(path ? `${path}.${key}` : key, before[key], after[key], out);
    }
  } else if (Array.isArray(before) && Array.isArray(after)) {
    for (let i = 0; i < Math.max(before.length, after.length); i++) diffValue(`${path}[${i}]`, before[i], after[i], out);
  } else if (before === undefined && isContainer(after)) {
    diffValue(path, Array.isArray(after) ? [] : {}, after, out);
  } else if (after === undefined && isContainer(before)) {
    diffValue(path, before, Array.isArray(before) ? [] : {}, out);
  } else if (JSON.stringify(before) !== JSON.stringify(after)) {
    const change: FieldChange = { path };
    if (before !== undefined) change.before = before;
    if (after !== undefined) change.after = after;
    out.push(change);
  }
}

const OPERATION_NAMES: Record<HistoryOperation, string> = { I: 'insert', U: 'update', D: 'delete' };

function iso(d: Date | null): string {
  return d ? d.toISOString().replace(/\.\d+Z$/, 'Z') : '';
}

/** The command as typed: the ledger's arguments may or may not start with the command's name. */
function commandLine(command: string, args: string[]): string {
  return (args[0] === command ? args : [command, ...args]).join(' ');
}

/** The changes of one row as text for people: one header per change, then its fields, + - ~. */
export function formatChanges(changes: RowChange[], options: { color?: boolean } = {}): string {
  const paint = (code: number, text: string) => (options.color ? `\u001b[${code}m${text}\u001b[0m` : text);
  const show = (v: unknown) => JSON.stringify(v);
  const lines: string[] = [];
  for (const change of changes) {
    const run = change.run_id === null
      ? 'outside any carepipe run'
      : `run ${change.run_id}${change.run_command ? ` ${commandLine(change.run_command, change.run_arguments ?? [])}` : ''}${change.run_user ? ` by ${change.run_user}` : ''}${change.run_started_at ? ` at ${iso(change.run_started_at)}` : ''}`;
    lines.push(paint(1, `${iso(change.changed_at)}  ${OPERATION_NAMES[change.operation]}  ${run} (db user ${change.db_user})`));
    for (const field of diffRow(change.before, change.after)) {
      if (!('before' in field)) lines.push(paint(32, `  + ${field.path}: ${show(field.after)}`));
      else if (!('after' in field)) lines.push(paint(31, `  - ${field.path}: ${show(field.before)}`));
      else lines.push(paint(33, `  ~ ${field.path}: ${show(field.before)} → ${show(field.after)}`));
    }
  }
  return lines.join('\n');
}
