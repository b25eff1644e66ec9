import type { Knex } from 'knex';

/**
 * Where an incremental pull from a FHIR server stands, per server and resource type: the cursor (the
 * highest meta.lastUpdated committed) and, while a pull is unfinished, the next page to fetch. Written
 * in the transaction of the rows it covers, so a crash never moves the cursor past uncommitted data.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('fhir_sync_state', (t) => {
    // base URL without credentials, query or trailing slash
    t.text('server').notNullable();
    t.text('resource_type').notNullable();
    t.timestamp('last_updated', { useTz: true, precision: 6 });
    t.text('next_url');
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.bigInteger('run_id').references('runs.id').onDelete('SET NULL');
    t.primary(['server', 'resource_type']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('fhir_sync_state');
}
