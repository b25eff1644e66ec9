import type { Knex } from 'knex';
import { tableExists } from '../src/db/catalog.js';
import { attachHistory, detachHistory, historyKeyColumns, createHistoryFunctions } from '../src/db/history-legacy.js';

/** Clinical tables of other migrations; each is attached only when present, so any subset works. */
export const CLINICAL_TABLES = [
  'fhir_resources',
  'clinicians',
  'organizations',
  'health_care_workers',
  'organization_workers',
  'patients',
  'appointments',
];

/** The FHIR flat tables: every table of this schema with the bookkeeping column `_resource_id`. */
export async function flatTables(knex: Knex): Promise<string[]> {
  const result = await knex.raw<{ rows: { table_name: string }[] }>(
    `select c.table_name from information_schema.columns c
       join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
      where c.table_schema = current_schema() and c.column_name = '_resource_id' and t.table_type = 'BASE TABLE'
      order by c.table_name`,
  );
  return result.rows.map((r) => r.table_name);
}

/** Row history: who changed which clinical row, when, in which run, from what to what. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('row_history', (t) => {
    t.bigIncrements('id').primary();
    t.text('table_name').notNullable();
    // the key column values joined by '/', e.g. 'Patient/123' for fhir_resources (resource_type, id)
    t.text('row_key').notNullable();
    t.specificType('operation', 'char(1)').notNullable();
    t.jsonb('before');
    t.jsonb('after');
    // no foreign key: a check per history row would slow bulk loads, and history outlives pruned runs
    t.bigInteger('run_id');
    t.timestamp('changed_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('db_user').notNullable().defaultTo(knex.raw('current_user'));
    t.index(['table_name', 'row_key', 'id']);
    t.index(['run_id']);
  });
  await knex.raw(`alter table row_history add constraint row_history_operation check (operation in ('I', 'U', 'D'))`);
  await knex.schema.createTable('row_history_tables', (t) => {
    t.text('table_name').primary();
    t.specificType('key_columns', 'text[]').notNullable();
    t.timestamp('attached_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await createHistoryFunctions(knex);

  const present: string[] = [];
  for (const table of CLINICAL_TABLES) {
    if (await tableExists(knex, table)) present.push(table);
  }
  for (const table of [...present, ...(await flatTables(knex)).filter((t) => !present.includes(t))]) {
    const keys = await historyKeyColumns(knex, table);
    if (keys.length > 0) await attachHistory(knex, table, keys);
  }
}

export async function down(knex: Knex): Promise<void> {
  const tables = (await knex('row_history_tables').pluck('table_name')) as string[];
  for (const table of tables) await detachHistory(knex, table);
  await knex.raw('drop function if exists carepipe_history_row() cascade');
  await knex.raw('drop function if exists carepipe_history_statement() cascade');
  await knex.raw('drop function if exists carepipe_history_run_id()');
  await knex.schema.dropTable('row_history_tables');
  await knex.schema.dropTable('row_history');
}
