/**
 * The row history of migrations 600 to 950, frozen: triggers that record every insert (the row after),
 * update (before and after) and delete (before) on a clinical or flat table. Migration
 * 20261207_100_history_superseded_images replaced it with superseded images only (src/db/history.ts);
 * the earlier migrations and that migration's rollback use this copy, so a database built or rolled
 * back to them has exactly the triggers it had.
 */
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import { quoteIdent, tableExists } from './catalog.js';

/** How updates are paired: by key in one statement, or row by row. `auto` picks by key uniqueness. */
export type HistoryMode = 'auto' | 'statement' | 'row';

/**
 * Functions the triggers call; created by the migration and again (idempotently) by attachHistory.
 * The trigger functions keep the search path of carepipe's connection that created them: row_history
 * lives in carepipe's own schema, which a user's psql session changing a clinical row need not list.
 */
export const LEGACY_HISTORY_FUNCTIONS_SQL: string[] = [`
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
  for (const sql of LEGACY_HISTORY_FUNCTIONS_SQL) await knex.raw(sql);
}

export const LEGACY_TRIGGERS = ['carepipe_history_ins', 'carepipe_history_upd', 'carepipe_history_del', 'carepipe_history_row'];


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
    for (const trigger of LEGACY_TRIGGERS) await trx.raw(`drop trigger if exists ${trigger} on ${t}`);
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
    for (const trigger of LEGACY_TRIGGERS) await knex.raw(`drop trigger if exists ${trigger} on ${quoteIdent(table)}`);
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


async function recordedKeyColumns(knex: Knex, table: string): Promise<string[] | undefined> {
  const row = await knex('row_history_tables').where({ table_name: table }).first('key_columns');
  return row ? (row.key_columns as string[]) : undefined;
}
