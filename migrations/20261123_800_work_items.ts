import type { Knex } from 'knex';

/**
 * Units of work (input files, server pages or time windows) that several carepipe processes, on one
 * machine or many, share through the database: claimed with FOR UPDATE SKIP LOCKED under a lease,
 * marked done in the same transaction as the rows they produced (see src/db/work-queue.ts).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('work_items', (t) => {
    t.bigIncrements('id').primary();
    // a name shared by the cooperating runs, e.g. 'ingest-fhir:/data/export-2026-11-23'
    t.text('queue').notNullable();
    // what the unit is, unique in its queue (an input file's path)
    t.text('unit_key').notNullable();
    t.jsonb('payload').notNullable().defaultTo('{}');
    // pending | claimed | done | failed
    t.text('status').notNullable().defaultTo('pending');
    t.text('claimed_by');
    t.timestamp('lease_until', { useTz: true });
    t.integer('attempts').notNullable().defaultTo(0);
    t.text('last_error');
    t.bigInteger('done_run_id').references('runs.id').onDelete('SET NULL');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['queue', 'unit_key']);
    t.index(['queue', 'status', 'id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('work_items');
}
