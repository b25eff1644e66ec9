import type { Knex } from 'knex';
import { ensureHistory } from '../src/db/history.js';
import { ensureCodingsExtras } from '../src/fhir/codings.js';
import { loadShippedViews, tablesOf } from '../src/fhir/views.js';
import { ensureFlatTable } from '../src/writers/flat-table.js';

/** The views whose tables this migration creates (110 creates the per-resource ones). */
export const VIEW_FILES = [
  'codings_condition.json',
  'codings_diagnostic_report.json',
  'codings_imaging_study.json',
  'codings_observation.json',
  'codings_procedure.json',
  'image_labels_imaging_study.json',
  'image_labels_observation.json',
  'imaging_studies.json',
];

/** Tables codings, imaging_studies and image_labels, with row history; codings.system_name and diseases. */
export async function up(knex: Knex): Promise<void> {
  const tables = tablesOf(loadShippedViews(VIEW_FILES));
  for (const table of tables) await ensureFlatTable(knex, table);
  await ensureCodingsExtras(knex);
  for (const table of tables) await ensureHistory(knex, table.table);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop view if exists diseases');
  for (const table of tablesOf(loadShippedViews(VIEW_FILES))) {
    await knex.schema.dropTableIfExists(table.table);
    await knex('row_history_tables').where({ table_name: table.table }).delete();
  }
}
