import type { Knex } from 'knex';
import { quoteIdent, tableExists } from '../src/db/catalog.js';
import { attachHistory, createHistoryFunctions, rowHistory } from '../src/db/history.js';
import * as legacy from '../src/db/history-legacy.js';
import { compileRecordedViews, derivedChanges, RESOURCE_TABLE } from '../src/fhir/derived-history.js';
import { loadShippedViews } from '../src/fhir/views.js';

/**
 * Row history as system versioning (issue #22): `row_history` keeps superseded images only, the
 * current row being the newest version with its own run and time (see src/db/history.ts).
 *
 * Up, with every version kept:
 * - `runs.db_user` (who ran it, as the history rows named it; from now on `current_user` at start):
 *   the database user of an insert that is no longer stored;
 * - each clinical table with a unique key and a run and a time column (fhir_resources, clinicians, the
 *   directory and appointment tables) gets the new triggers; of its stored rows, an update keeps its
 *   `after` only when that version is not the next image or the current row, and an insert row goes
 *   only when all it held is found elsewhere: the version (next image or current row), the run (the
 *   version's run column), the time (its time column) and the database user (its run's);
 * - FHIR flat tables and `codings` lose their triggers and record the ViewDefinitions of their rows
 *   (`row_history_tables.views`): their history is derived from the resource's versions. Their stored
 *   rows go when the table is one of the shipped views' (the same views derive them again from the
 *   resource versions, all kept); a `--view` table's, or a table no longer there (imaging_studies),
 *   stay readable as stored, since no view kept here derives them.
 * Down restores the old shape: the old triggers, an insert row for every version that was inserted
 * (before the image that superseded it, or for the current row), each update's `after`, and for the
 * flat tables of shipped views an insert row per current row and the deletes and inserts derived
 * from each resource change; ids are renumbered in the same order.
 */

/** FHIR flat tables on the search path (they have the bookkeeping columns `_resource_type`, `_resource_id`). */
async function flatTables(knex: Knex): Promise<string[]> {
  const { rows } = await knex.raw<{ rows: { name: string }[] }>(
    `select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(current_schemas(false)) and c.relkind in ('r', 'p')
        and (select count(*) from pg_attribute a where a.attrelid = c.oid and not a.attisdropped
              and a.attname in ('_resource_type', '_resource_id')) = 2
      order by 1`,
  );
  return rows.map((r) => r.name);
}

/** The definitions of the shipped views, by table. */
function shippedDefinitions(): Map<string, unknown[]> {
  const byTable = new Map<string, unknown[]>();
  for (const v of loadShippedViews()) byTable.set(v.table.table, [...(byTable.get(v.table.table) ?? []), v.definition]);
  return byTable;
}

const TRIGGER_NAMES = ['carepipe_history_ins', 'carepipe_history_upd', 'carepipe_history_del', 'carepipe_history_row'];

async function dropTriggers(knex: Knex, table: string): Promise<void> {
  for (const trigger of TRIGGER_NAMES) await knex.raw(`drop trigger if exists ${trigger} on ${quoteIdent(table)}`);
}

/**
 * A temp table `carepipe_successors` of the stored rows of `table` with the version that came next:
 * the next row's image, or the current row after the last one.
 */
async function successors(knex: Knex, table: string, keys: string[]): Promise<void> {
  const rowKey = `concat_ws('/', ${keys.map((k) => `t.${quoteIdent(k)}::text`).join(', ')})`;
  await knex.raw('drop table if exists carepipe_successors');
  await knex.raw(
    `create temp table carepipe_successors as
     with h as (
       select h.id, h.row_key, h.operation, h.before, h.after, h.run_id, h.changed_at, h.db_user,
              lag(h.operation) over w as previous_op, lead(h.id) over w as next_id,
              lead(h.operation) over w as next_op, lead(h.before) over w as next_before
         from row_history h where h.table_name = ?
       window w as (partition by h.row_key order by h.id)
     )
     select h.*, case when h.next_id is not null then case when h.next_op <> 'I' then h.next_before end
                      else to_jsonb(t) end as successor
       from h left join ${quoteIdent(table)} t on h.next_id is null and ${rowKey} = h.row_key`,
    [table],
  );
}

/** The stored rows of a versioned table as superseded images: redundant insert rows and update `after`s go. */
async function toSupersededImages(knex: Knex, table: string, keys: string[], run: string, time: string): Promise<void> {
  await successors(knex, table, keys);
  await knex.raw(
    `update row_history h set after = null from carepipe_successors s
      where h.table_name = ? and h.row_key = s.row_key and h.id = s.id and s.operation = 'U' and s.after = s.successor`,
    [table],
  );
  await knex.raw(
    `delete from row_history h using carepipe_successors s
      where h.table_name = ? and h.row_key = s.row_key and h.id = s.id and s.operation = 'I' and s.after = s.successor
        and s.run_id is not null and s.run_id = (s.after ->> ?)::bigint and s.changed_at = (s.after ->> ?)::timestamptz
        and s.db_user = (select r.db_user from runs r where r.id = s.run_id)`,
    [table, run, time],
  );
  await knex.raw('drop table carepipe_successors');
}

export async function up(knex: Knex): Promise<void> {
  await knex.raw(
    `alter table row_history_tables add column if not exists run_column text, add column if not exists time_column text,
       add column if not exists views jsonb`,
  );
  await knex.raw('alter table runs add column if not exists db_user text');
  await knex.raw(
    `update runs r set db_user = h.db_user
       from (select run_id, min(db_user) as db_user from row_history where run_id is not null group by run_id) h
      where h.run_id = r.id`,
  );
  await knex.raw('alter table runs alter column db_user set default current_user');
  await createHistoryFunctions(knex);

  const shipped = shippedDefinitions();
  const flat = new Set(await flatTables(knex));
  const recorded = (await knex('row_history_tables').orderBy('table_name').select('table_name', 'key_columns')) as { table_name: string; key_columns: string[] }[];
  for (const { table_name: table, key_columns: keys } of recorded) {
    if (!(await tableExists(knex, table))) continue;
    if (flat.has(table)) {
      await dropTriggers(knex, table);
      const views = shipped.get(table);
      if (views) {
        await knex.raw(`update row_history_tables set views = ?::jsonb where table_name = ?`, [JSON.stringify(views), table]);
        await knex('row_history').where({ table_name: table }).delete();
      }
      continue;
    }
    await attachHistory(knex, table, keys);
    const how = await knex('row_history_tables').where({ table_name: table }).first('run_column', 'time_column');
    if (how.run_column && how.time_column) await toSupersededImages(knex, table, keys, how.run_column, how.time_column);
  }
  // shipped flat tables that had no history (none, unless detached by hand) are derived all the same
  for (const table of flat) {
    const views = shipped.get(table);
    if (views && !recorded.some((r) => r.table_name === table)) {
      await knex('row_history_tables').insert({ table_name: table, key_columns: ['_resource_type', '_resource_id'], views: JSON.stringify(views) });
    }
  }
}

export async function down(knex: Knex): Promise<void> {
  const maxId = Number((await knex.raw('select coalesce(max(id), 0) as m from row_history')).rows[0].m);
  await knex.raw(
    `create temp table carepipe_expanded (anchor bigint, sub integer, table_name text, row_key text, operation char(1),
       before jsonb, after jsonb, run_id bigint, changed_at timestamptz, db_user text)`,
  );
  const recorded = (await knex('row_history_tables').orderBy('table_name').select('table_name', 'key_columns', 'run_column', 'time_column', 'views')) as {
    table_name: string;
    key_columns: string[];
    run_column: string | null;
    time_column: string | null;
    views: unknown[] | null;
  }[];
  const user = `coalesce((select r.db_user from runs r where r.id = x.run_id), current_user)`;
  let anchor = maxId + 1;

  // versioned tables: each update's after, and an insert row for each version nothing inserted
  for (const { table_name: table, key_columns: keys, run_column: run, time_column: time } of recorded) {
    if (!run || !time || !(await tableExists(knex, table))) continue;
    await successors(knex, table, keys);
    await knex.raw(
      `update row_history h set after = s.successor from carepipe_successors s
        where h.table_name = ? and h.row_key = s.row_key and h.id = s.id and s.operation = 'U' and s.after is null`,
      [table],
    );
    await knex.raw(
      `insert into carepipe_expanded
       select x.id, 0, ?, x.row_key, 'I', null, x.before, x.run_id, x.changed_at, ${user}
         from (select s.id, s.row_key, s.before, (s.before ->> ?)::bigint as run_id, (s.before ->> ?)::timestamptz as changed_at
                 from carepipe_successors s where s.operation <> 'I' and (s.previous_op is null or s.previous_op = 'D')) x`,
      [table, run, time],
    );
    const rowKey = `concat_ws('/', ${keys.map((k) => `t.${quoteIdent(k)}::text`).join(', ')})`;
    await knex.raw(
      `insert into carepipe_expanded
       select ?, 0, ?, x.row_key, 'I', null, x.image, x.run_id, x.changed_at, ${user}
         from (select ${rowKey} as row_key, to_jsonb(t) as image, t.${quoteIdent(run)}::bigint as run_id, t.${quoteIdent(time)}::timestamptz as changed_at
                 from ${quoteIdent(table)} t) x
        where not exists (select 1 from carepipe_successors s where s.row_key = x.row_key and s.next_id is null and s.operation <> 'D')`,
      [anchor, table],
    );
    await knex.raw('drop table carepipe_successors');
    await knex.raw(`alter table ${quoteIdent(table)} alter column ${quoteIdent(run)} drop default`);
  }

  // derived tables: an insert row per current row of a resource never changed, the derived deletes
  // and inserts of each changed resource
  const changedResources = (await knex('row_history').where({ table_name: RESOURCE_TABLE }).distinct('row_key').orderBy('row_key').pluck('row_key')) as string[];
  for (const { table_name: table, views } of recorded) {
    if (!views || !(await tableExists(knex, table))) continue;
    await knex.raw(
      `insert into carepipe_expanded
       select ?, 0, ?, x.row_key, 'I', null, x.image, x.run_id, x.changed_at, ${user}
         from (select concat_ws('/', t._resource_type, t._resource_id) as row_key, to_jsonb(t) as image, r.run_id, r.loaded_at as changed_at
                 from ${quoteIdent(table)} t left join ${RESOURCE_TABLE} r on r.resource_type = t._resource_type and r.id = t._resource_id) x
        where not exists (select 1 from row_history h where h.table_name = ? and h.row_key = x.row_key)`,
      [anchor, table, RESOURCE_TABLE],
    );
    const compiled = compileRecordedViews(table, views);
    const types = new Set(compiled.map((v) => v.view.resource));
    for (const key of changedResources.filter((k) => types.has(k.split('/')[0]!))) {
      for (const change of derivedChanges(await rowHistory(knex, RESOURCE_TABLE, key), compiled, table)) {
        anchor += 1;
        await knex.raw(`insert into carepipe_expanded values (?, 0, ?, ?, ?, ?::jsonb, ?::jsonb, ?, ?, coalesce(?, current_user))`, [
          anchor,
          table,
          key,
          change.operation,
          change.before ? JSON.stringify(change.before) : null,
          change.after ? JSON.stringify(change.after) : null,
          change.run_id,
          change.changed_at,
          change.db_user,
        ]);
      }
    }
  }

  // every row in the order it was written, numbered again
  await knex.raw(
    `create temp table carepipe_history_all as
     select id as anchor, 1 as sub, table_name, row_key, operation, before, after, run_id, changed_at, db_user from row_history
     union all select anchor, sub, table_name, row_key, operation, before, after, run_id, changed_at, db_user from carepipe_expanded`,
  );
  await knex.raw('delete from row_history');
  await knex.raw(
    `insert into row_history (id, table_name, row_key, operation, before, after, run_id, changed_at, db_user)
     select row_number() over (order by anchor, sub, changed_at, row_key), table_name, row_key, operation, before, after, run_id,
            coalesce(changed_at, now()), db_user
       from carepipe_history_all`,
  );
  await knex.raw(`select setval(pg_get_serial_sequence('row_history', 'id'), (select coalesce(max(id), 0) + 1 from row_history), false)`);
  await knex.raw('drop table carepipe_history_all');
  await knex.raw('drop table carepipe_expanded');

  // the old triggers on every table recorded, flat ones included
  await legacy.createHistoryFunctions(knex);
  for (const { table_name: table, key_columns: keys } of recorded) {
    if (await tableExists(knex, table)) await legacy.attachHistory(knex, table, keys);
  }
  await knex.raw('drop function if exists carepipe_history_superseded() cascade');
  await knex.raw('alter table runs drop column if exists db_user');
  await knex.raw('alter table row_history_tables drop column if exists run_column, drop column if exists time_column, drop column if exists views');
}
