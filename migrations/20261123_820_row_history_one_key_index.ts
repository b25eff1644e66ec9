import type { Knex } from 'knex';

/**
 * row_history had two indexes of nearly the same columns: the primary key (row_key, id) of migration
 * 810 and (table_name, row_key, id) for `carepipe history TABLE KEY`. One key (table_name, row_key, id)
 * serves that lookup, still contains the distribution column row_key (docs/scaling.md),
 * and spares every written row one index insert: on a Synthea load, 136k history rows and 15 MB.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('alter table row_history drop constraint row_history_pkey, add constraint row_history_pkey primary key (table_name, row_key, id)');
  await knex.raw('drop index if exists row_history_table_name_row_key_id_index');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('create index if not exists row_history_table_name_row_key_id_index on row_history (table_name, row_key, id)');
  await knex.raw('alter table row_history drop constraint row_history_pkey, add constraint row_history_pkey primary key (row_key, id)');
}
