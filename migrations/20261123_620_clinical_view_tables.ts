import type { Knex } from 'knex';
import { ensureHistory } from '../src/db/history-legacy.js';
import { ensureCodingsExtras } from '../src/fhir/codings.js';
import { loadShippedViews, tablesOf } from '../src/fhir/views.js';
import { ensureFlatTable, type TableSpec } from '../src/fhir/write/flat-table.js';

/** The views whose tables this migration creates (110 creates the per-resource ones). */
export const VIEW_FILES = [
  'codings_condition.json',
  'codings_diagnostic_report.json',
  'codings_imaging_study.json',
  'codings_observation.json',
  'codings_procedure.json',
  'image_labels_imaging_study.json',
  'image_labels_observation.json',
];

/**
 * The table of views/imaging_studies.json as this migration created it: migration 950 merged that view
 * into imagingstudy.json and removed the file.
 */
export const IMAGING_STUDIES: TableSpec = {
  table: 'imaging_studies',
  columns: [
    { name: 'study_id', sqlType: 'text' },
    { name: 'patient_id', sqlType: 'text' },
    { name: 'encounter_id', sqlType: 'text' },
    { name: 'status', sqlType: 'text' },
    { name: 'started', sqlType: 'text' },
    { name: 'modality', sqlType: 'text' },
    { name: 'body_site_code', sqlType: 'text' },
    { name: 'body_site', sqlType: 'text' },
    { name: 'series_count', sqlType: 'integer' },
    { name: 'instance_count', sqlType: 'integer' },
    { name: 'description', sqlType: 'text' },
  ],
};

/** Tables codings, imaging_studies and image_labels, with row history; codings.system_name and diseases. */
export async function up(knex: Knex): Promise<void> {
  const tables = [...tablesOf(loadShippedViews(VIEW_FILES)), IMAGING_STUDIES];
  for (const table of tables) await ensureFlatTable(knex, table);
  await ensureCodingsExtras(knex);
  for (const table of tables) await ensureHistory(knex, table.table);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop view if exists diseases');
  for (const table of [...tablesOf(loadShippedViews(VIEW_FILES)), IMAGING_STUDIES]) {
    await knex.schema.dropTableIfExists(table.table);
    await knex('row_history_tables').where({ table_name: table.table }).delete();
  }
}
