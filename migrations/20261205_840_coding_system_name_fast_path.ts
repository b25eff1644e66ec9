import type { Knex } from 'knex';
import { CODING_SYSTEM_NAME_SQL, systemNameRulesSql } from '../src/fhir/codings.js';

/**
 * coding_system_name() names the usual spellings of a system by plain comparisons, inlined into the
 * codings.system_name generated column, and keeps the normalising rules for the rest (see
 * CODING_SYSTEM_NAME_SQL). The names are the same, so the stored values stay right: nothing is rewritten.
 */
export async function up(knex: Knex): Promise<void> {
  for (const sql of CODING_SYSTEM_NAME_SQL) await knex.raw(sql);
}

export async function down(knex: Knex): Promise<void> {
  // Back to the rules alone (migration 640): coding_system_name in PL/pgSQL. The generated column
  // depends on coding_system_name, which is replaced in place, so the helper can go.
  await knex.raw(systemNameRulesSql('coding_system_name'));
  await knex.raw('drop function if exists coding_system_name_normalised(text)');
}
