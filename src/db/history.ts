/**
 * Row history as system versioning (as SQL Server's and MariaDB's system-versioned tables, or the
 * `temporal_tables` extension): the current row is the newest version and carries its own run and time
 * (`run_id`/`source_run`, `loaded_at`/`first_seen_at`/`first_seen`); `row_history` keeps only the
 * superseded images, each with the run, time and database user that replaced it: on UPDATE the row as
 * it was, on DELETE the last row. A first INSERT writes nothing. `rowHistory` derives the changes
 * (insert, update, delete, each with its before and after and the run behind it) from those images and
 * the current row.
 *
 * A table whose rows name no run and time of their own, or whose key is not unique (so that an
 * image's successor cannot be found by key), is recorded in full as before: inserts (the row after),
 * updates (before and after) and deletes. FHIR flat tables and `codings` have no triggers at all:
 * their rows are a pure function of a resource version and a ViewDefinition, recorded here
 * (`row_history_tables.views`) so that src/fhir/derived-history.ts derives their history from the
 * resource's versions.
 *
 * Triggers, not the writers, record it: a trigger runs inside the statement that changes the row, so
 * history and data commit or roll back together and no writer (ingest, clinicians, appointments, a
 * user's psql session) can forget it. The run comes from `carepipe.run_id`, which `inRunTransaction`
 * sets locally in every batch transaction; a versioned table's run column defaults to it, so a row
 * written in a run without naming it still carries its run.
 *
 * Statement-level triggers with transition tables, not row-level ones: a bulk load writes thousands of
 * rows per statement, and one `insert … select` from the transition table per statement does the work
 * of thousands of PL/pgSQL calls (`node bench/row-history.mjs`). Tables whose key is not unique pair
 * updates with a row-level trigger. TRUNCATE is not recorded.
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
`
create or replace function carepipe_history_superseded() returns trigger language plpgsql
set search_path from current as $$
declare
  run bigint := carepipe_history_run_id();
  old_key text;
  matched text;
begin
  -- superseded images only: the old row of an update (paired with its new row by the unique key
  -- TG_ARGV names), the last row of a delete; the key is the key columns' text values joined by '/'
  select string_agg(format('o.%I::text', k), ', ' order by i),
         string_agg(format('n.%1$I = o.%1$I', k), ' and ' order by i)
    into old_key, matched
    from unnest(TG_ARGV) with ordinality as u(k, i);
  if TG_OP = 'DELETE' then
    execute format(
      'insert into row_history (table_name, row_key, operation, before, run_id)
       select $1, concat_ws(''/'', %s), ''D'', to_jsonb(o), $2 from carepipe_old o', old_key)
      using TG_TABLE_NAME, run;
  elsif TG_OP = 'UPDATE' then
    -- an update that changes nothing is no change, nor one that only moves the "last seen" marks
    execute format(
      'insert into row_history (table_name, row_key, operation, before, run_id)
       select $1, concat_ws(''/'', %s), ''U'', j.o, $2
         from carepipe_new n join carepipe_old o on %s
        cross join lateral (select to_jsonb(o) as o, to_jsonb(n) as n) as j
        where not carepipe_history_unchanged(j.o, j.n)', old_key, matched)
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

/** Creates (or replaces) the trigger functions (those of full recording are migration 600's). */
export async function createHistoryFunctions(knex: Knex): Promise<void> {
  for (const sql of HISTORY_FUNCTIONS_SQL) await knex.raw(sql);
}

const TRIGGERS = ['carepipe_history_ins', 'carepipe_history_upd', 'carepipe_history_del', 'carepipe_history_row'];

/** Columns naming the run that wrote a row, and the time it was written, in order of preference. */
export const RUN_COLUMNS = ['run_id', 'source_run'];
export const TIME_COLUMNS = ['loaded_at', 'first_seen_at', 'first_seen'];

/** A table's column names, in order. */
async function columnNames(knex: Knex, table: string): Promise<string[]> {
  const result = await knex.raw<{ rows: { name: string }[] }>(
    `select attname as name from pg_attribute where attrelid = to_regclass(?) and attnum > 0 and not attisdropped order by attnum`,
    [quoteIdent(table)],
  );
  return result.rows.map((r) => r.name);
}


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

/** How a table is recorded: its key, and the run and time columns its rows carry (null: recorded in full). */
export interface HistoryTable {
  table_name: string;
  key_columns: string[];
  run_column: string | null;
  time_column: string | null;
  /** The ViewDefinitions whose rows the table holds: a derived table, with no triggers. */
  views: unknown[] | null;
}

/**
 * Records the changes of `table` in `row_history`, keyed by `keyColumns` (their values joined by '/',
 * e.g. `Patient/123`). When the key is unique and the rows carry a run and a time column (RUN_COLUMNS,
 * TIME_COLUMNS), only superseded images are kept and the run column defaults to the run of the
 * transaction; otherwise inserts, updates and deletes are recorded in full. Idempotent: attaching
 * again replaces the triggers.
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
  const unique = await keyIsUnique(knex, table, keyColumns);
  const updateByRow = mode === 'row' || (mode === 'auto' && !unique);
  const columns = await columnNames(knex, table);
  const runColumn = RUN_COLUMNS.find((c) => columns.includes(c)) ?? null;
  const timeColumn = TIME_COLUMNS.find((c) => columns.includes(c)) ?? null;
  const versioned = unique && mode !== 'row' && runColumn !== null && timeColumn !== null;
  const t = quoteIdent(table);
  const args = keyColumns.map((c) => `'${c.replace(/'/g, "''")}'`).join(', ');
  await knex.transaction(async (trx) => {
    await createHistoryFunctions(trx);
    for (const trigger of TRIGGERS) await trx.raw(`drop trigger if exists ${trigger} on ${t}`);
    if (versioned) {
      // the current row names its own run: written in a run without naming it, it still does
      await trx.raw(`alter table ${t} alter column ${quoteIdent(runColumn)} set default carepipe_history_run_id()`);
      await trx.raw(
        `create trigger carepipe_history_upd after update on ${t}
         referencing old table as carepipe_old new table as carepipe_new
         for each statement execute function carepipe_history_superseded(${args})`,
      );
      await trx.raw(
        `create trigger carepipe_history_del after delete on ${t} referencing old table as carepipe_old
         for each statement execute function carepipe_history_superseded(${args})`,
      );
    } else if (mode === 'row') {
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
      `insert into row_history_tables (table_name, key_columns, run_column, time_column, views) values (?, ?, ?, ?, null)
       on conflict (table_name) do update set key_columns = excluded.key_columns, run_column = excluded.run_column,
         time_column = excluded.time_column, views = null, attached_at = now()`,
      [table, keyColumns, versioned ? runColumn : null, versioned ? timeColumn : null],
    );
  });
}

/**
 * Attaches history to `table` unless it already has it, keyed by `keyColumns` or else by
 * historyKeyColumns (`_resource_type`/`_resource_id`, else the primary key). Returns whether it attached.
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
 * Records that `table` holds rows derived from FHIR resources by `views` (their ViewDefinitions as
 * JSON), keyed by the resource (`_resource_type`/`_resource_id`): no triggers (any left are dropped),
 * its history is derived from the resource's versions. Cheap when nothing changed: the ingest calls it
 * for each of its tables.
 */
export async function recordDerivedTable(knex: Knex | Knex.Transaction, table: string, views: unknown[]): Promise<void> {
  const json = JSON.stringify(views);
  const known = await knex('row_history_tables').where({ table_name: table }).first(knex.raw('views = ?::jsonb as same', [json]));
  if (known?.same) return;
  for (const trigger of TRIGGERS) await knex.raw(`drop trigger if exists ${trigger} on ${quoteIdent(table)}`);
  await knex.raw(
    `insert into row_history_tables (table_name, key_columns, run_column, time_column, views) values (?, ?, null, null, ?::jsonb)
     on conflict (table_name) do update set key_columns = excluded.key_columns, run_column = null, time_column = null,
       views = excluded.views, attached_at = now()`,
    [table, ['_resource_type', '_resource_id'], json],
  );
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

type Image = Record<string, unknown>;

/** One change with the run behind it, recorded or derived. */
export interface RowChange {
  /** the row_history id of a recorded image; 0 for an insert derived from the row itself */
  id: number;
  table_name: string;
  row_key: string;
  operation: HistoryOperation;
  before: Image | null;
  after: Image | null;
  changed_at: Date | null;
  /** null when unknown: an insert outside any run, derived from the row */
  db_user: string | null;
  run_id: number | null;
  run_command: string | null;
  run_arguments: string[] | null;
  run_user: string | null;
  run_started_at: Date | null;
}

/** How a table is recorded, or undefined when it has no history. */
export async function historyTable(knex: Knex, table: string): Promise<HistoryTable | undefined> {
  // every column: a database not yet migrated to superseded images has none but the key (all recorded in full)
  const row = await knex('row_history_tables').where({ table_name: table }).first();
  if (!row) return undefined;
  return { table_name: row.table_name, key_columns: row.key_columns, run_column: row.run_column ?? null, time_column: row.time_column ?? null, views: row.views ?? null };
}

/** The key columns a table is recorded by, or undefined when it has no history. */
export async function recordedKeyColumns(knex: Knex, table: string): Promise<string[] | undefined> {
  return (await historyTable(knex, table))?.key_columns;
}

/** How `table` is recorded; a usage error naming the tables with history, or the key's shape, when `key` cannot be looked up. */
export async function historyTableFor(knex: Knex, table: string, key: string): Promise<HistoryTable> {
  const recorded = await historyTable(knex, table);
  if (!recorded) {
    const tables = (await knex('row_history_tables').orderBy('table_name').pluck('table_name')) as string[];
    throw new CarepipeError('USAGE', `${table} has no row history; tables with history: ${tables.join(', ') || 'none'}`);
  }
  const keyColumns = recorded.key_columns;
  if (key.split('/').length !== keyColumns.length) {
    throw new CarepipeError(
      'USAGE',
      `the key of ${table} is ${keyColumns.join('/')}: give ${keyColumns.length === 1 ? 'its value' : `${keyColumns.length} values joined by '/'`}, for example ${keyColumns.map((c) => `<${c}>`).join('/')}`,
    );
  }
  return recorded;
}

/** A row_history row as stored. */
export interface StoredImage {
  id: number;
  operation: HistoryOperation;
  before: Image | null;
  after: Image | null;
  changed_at: Date;
  db_user: string;
  run_id: number | null;
}

/** A change before its run is looked up. */
type BareChange = Pick<RowChange, 'id' | 'operation' | 'before' | 'after' | 'changed_at' | 'db_user' | 'run_id'>;

function toNumber(v: unknown): number | null {
  return v === null || v === undefined || v === '' ? null : Number(v);
}

/**
 * The changes of one row from its stored images (oldest first) and its current row: each superseded
 * image is the `before` of the change that replaced it, whose `after` is the next image (or the current
 * row) unless the change kept its own; an image (or current row) that nothing inserted before it was
 * inserted by the run and at the time it names itself (`runColumn`, `timeColumn`). Tables recorded in
 * full have their insert rows and none is derived.
 */
export function changesFromImages(
  stored: StoredImage[],
  current: Image | undefined,
  columns: { run: string | null; time: string | null },
): BareChange[] {
  const out: BareChange[] = [];
  const derivesInserts = columns.run !== null && columns.time !== null;
  const inserted = (image: Image): BareChange => ({
    id: 0,
    operation: 'I',
    before: null,
    after: image,
    changed_at: image[columns.time!] ? new Date(String(image[columns.time!])) : null,
    db_user: null,
    run_id: toNumber(image[columns.run!]),
  });
  let exists = false;
  for (let i = 0; i < stored.length; i++) {
    const row = stored[i]!;
    if (row.operation !== 'I' && !exists && derivesInserts && row.before) out.push(inserted(row.before));
    const next = stored[i + 1];
    const successor = next ? (next.operation === 'I' ? null : next.before) : (current ?? null);
    out.push({
      id: Number(row.id),
      operation: row.operation,
      before: row.operation === 'I' ? null : row.before,
      after: row.operation === 'D' ? null : (row.after ?? successor),
      changed_at: row.changed_at,
      db_user: row.db_user,
      run_id: toNumber(row.run_id),
    });
    exists = row.operation !== 'D';
  }
  if (current && !exists && derivesInserts) out.push(inserted(current));
  return out;
}

/** The changes with the run of each from the ledger; an insert derived from a row gets its run's database user. */
export async function withRuns(knex: Knex, table: string, key: string, changes: BareChange[]): Promise<RowChange[]> {
  const ids = [...new Set(changes.map((c) => c.run_id).filter((id): id is number => id !== null))];
  const runs = new Map<number, { command: string; arguments: string[]; os_user: string; started_at: Date; db_user: string | null }>();
  if (ids.length > 0) {
    // every column: runs.db_user came with superseded images
    const rows = await knex('runs').whereIn('id', ids).select('*');
    for (const r of rows) runs.set(Number(r.id), r);
  }
  return changes.map((c) => {
    const run = c.run_id === null ? undefined : runs.get(c.run_id);
    return {
      ...c,
      table_name: table,
      row_key: key,
      db_user: c.db_user ?? run?.db_user ?? null,
      run_command: run?.command ?? null,
      run_arguments: run?.arguments ?? null,
      run_user: run?.os_user ?? null,
      run_started_at: run?.started_at ?? null,
    };
  });
}

/** The stored images of one row, oldest first. */
export async function storedImages(knex: Knex, table: string, key: string): Promise<StoredImage[]> {
  return knex('row_history')
    .where({ table_name: table, row_key: key })
    .orderBy('id')
    .select('id', 'operation', 'before', 'after', 'changed_at', 'db_user', 'run_id');
}

/** The current row of a table recorded by a unique key, as `to_jsonb` gives it (what the triggers store). */
async function currentImage(knex: Knex, table: string, keyColumns: string[], key: string): Promise<Image | undefined> {
  const parts = key.split('/');
  const result = await knex.raw<{ rows: { image: Image }[] }>(
    `select to_jsonb(t) as image from ${quoteIdent(table)} t where ${keyColumns.map((c) => `t.${quoteIdent(c)}::text = ?`).join(' and ')}`,
    parts,
  );
  return result.rows[0]?.image;
}

/**
 * The changes of one row of a table with stored history, oldest first, each with its run from the
 * ledger (derived tables: see src/fhir/derived-history.ts).
 */
export async function rowHistory(knex: Knex, table: string, key: string): Promise<RowChange[]> {
  const recorded = await historyTableFor(knex, table, key);
  const versioned = recorded.run_column !== null && recorded.time_column !== null;
  const stored = await storedImages(knex, table, key);
  const current = versioned && (await tableExists(knex, table)) ? await currentImage(knex, table, recorded.key_columns, key) : undefined;
  const changes = changesFromImages(stored, current, { run: recorded.run_column, time: recorded.time_column });
  return withRuns(knex, table, key, changes);
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
