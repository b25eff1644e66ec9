import type { Knex } from 'knex';
import { schemaLayout } from '../src/db/schemas.js';

/**
 * Which ViewDefinitions made each flat table: one row per view feeding a table (several views fill
 * `codings`), with the fingerprint of its canonical JSON and the JSON itself, so `carepipe views
 * refresh` can rebuild a table from fhir_resources without the view's file, and `carepipe migrate`
 * can tell the tables whose shipped view changed (src/fhir/flat-views.ts). A new table: nothing to
 * convert; tables loaded before it get their rows when migrate or ingest-fhir first sees them.
 */
export async function up(knex: Knex): Promise<void> {
  const layout = await layoutOf(knex);
  await knex.schema.withSchema(layout.carepipe).createTable('flat_views', (t) => {
    t.text('table_name').notNullable();
    // the shipped file's name without .json (codings_condition), or the user's file's
    t.text('view_name').notNullable();
    // sha256 (hex) of the canonical JSON of the ViewDefinition: keys sorted, no spaces
    t.text('view_hash').notNullable();
    t.jsonb('view_json').notNullable();
    t.boolean('shipped').notNullable();
    t.timestamp('refreshed_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.bigInteger('run_id').references('id').inTable(`${layout.carepipe}.runs`).onDelete('SET NULL');
    t.primary(['table_name', 'view_name']);
  });
}

export async function down(knex: Knex): Promise<void> {
  const layout = await layoutOf(knex);
  await knex.schema.withSchema(layout.carepipe).dropTable('flat_views');
}

async function layoutOf(knex: Knex) {
  const result = await knex.raw<{ rows: { schema: string }[] }>('select current_schema() as schema');
  return schemaLayout(result.rows[0]!.schema);
}
