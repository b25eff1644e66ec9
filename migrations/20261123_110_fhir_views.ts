import type { Knex } from 'knex';
import { loadShippedViews, tablesOf } from '../src/fhir/views.js';
import { ensureFlatTable, type TableSpec } from '../src/fhir/write/flat-table.js';

/**
 * The views this migration creates tables for, named so that views shipped later (with their own
 * migrations) are not created here. ingest-fhir also creates any missing table of a shipped view.
 */
const VIEW_FILES = [
  'allergyintolerance.json',
  'appointment.json',
  'condition.json',
  'diagnosticreport.json',
  'encounter.json',
  'imagingstudy.json',
  'immunization.json',
  'medicationrequest.json',
  'observation.json',
  'observation_component.json',
  'organization.json',
  'patient.json',
  'practitioner.json',
  'procedure.json',
];

/**
 * The tables as this migration created them: imagingstudy's `description` came with migration 950
 * (which merged imaging_studies into it), which adds the column itself.
 */
function tablesAsCreated(): TableSpec[] {
  return tablesOf(loadShippedViews(VIEW_FILES)).map((t) =>
    t.table === 'imagingstudy' ? { ...t, columns: t.columns.filter((c) => c.name !== 'description') } : t,
  );
}

/** Flat tables of the shipped views, and the record of FHIR files already loaded. */
export async function up(knex: Knex): Promise<void> {
  for (const table of tablesAsCreated()) await ensureFlatTable(knex, table);
  await knex.schema.createTable('fhir_files_done', (t) => {
    t.text('path').primary();
    t.bigInteger('size').notNullable();
    t.text('sha256').notNullable();
    t.bigInteger('run_id').references('runs.id').onDelete('SET NULL');
    t.timestamp('loaded_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('fhir_files_done');
  for (const table of tablesOf(loadShippedViews(VIEW_FILES))) await knex.schema.dropTableIfExists(table.table);
}
