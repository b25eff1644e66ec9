import type { Knex } from 'knex';
import { tableExists } from '../src/db/catalog.js';
import { ensureCodingsExtras } from '../src/fhir/codings.js';

/** coding_system_name(), codings.system_name and the diseases view (when the codings table exists). */
export async function up(knex: Knex): Promise<void> {
  await ensureCodingsExtras(knex);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop view if exists diseases');
  if (await tableExists(knex, 'codings')) {
    await knex.raw('drop index if exists codings_system_code');
    await knex.raw('drop index if exists codings_resource');
    await knex.raw('alter table codings drop column if exists system_name');
  }
  await knex.raw('drop function if exists coding_system_name(text)');
}
