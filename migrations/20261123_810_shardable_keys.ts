import type { Knex } from 'knex';

/**
 * Keys a distributed Postgres (Citus) can shard on without a cross-shard check: a unique constraint
 * of a distributed table must contain its distribution column. The two append-only logs are keyed
 * by the column they would be distributed by, with their serial id second:
 * - rejects by run_id (a run's rejects live together; runs is a reference table);
 * - row_history by row_key (a row's history lives together).
 * See docs/scaling.md for the whole layout.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('alter table rejects drop constraint rejects_pkey, add constraint rejects_pkey primary key (run_id, id)');
  await knex.raw('alter table row_history drop constraint row_history_pkey, add constraint row_history_pkey primary key (row_key, id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('alter table row_history drop constraint row_history_pkey, add constraint row_history_pkey primary key (id)');
  await knex.raw('alter table rejects drop constraint rejects_pkey, add constraint rejects_pkey primary key (id)');
}
