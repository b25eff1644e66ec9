import type { Knex } from 'knex';

/** The lossless store: every FHIR resource as it came in (after reference resolution). */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('fhir_resources', (t) => {
    t.text('resource_type').notNullable();
    t.text('id').notNullable();
    t.text('version_id');
    t.timestamp('last_updated', { useTz: true });
    t.jsonb('resource').notNullable();
    // hash of the stored resource: an identical copy counts as unchanged, not written
    t.text('content_hash').notNullable();
    t.boolean('deleted').notNullable().defaultTo(false);
    t.text('source').notNullable();
    t.bigInteger('run_id').references('runs.id').onDelete('SET NULL');
    t.timestamp('loaded_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['resource_type', 'id']);
    t.index(['last_updated']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('fhir_resources');
}
