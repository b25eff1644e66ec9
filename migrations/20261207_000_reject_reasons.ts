import type { Knex } from 'knex';
import { RENAMED_REASONS } from '../src/pipeline/reasons.js';

/**
 * One closed list of reject reasons (src/pipeline/reasons.ts): the two codes that said the same thing
 * as another under a different spelling are renamed in the rejects already kept, so a query for
 * `MISSING_ID` or `MISSING_FIELD` finds every such record whichever command met it. Each old code was
 * used by one command only, so rollback restores it exactly.
 */
export async function up(knex: Knex): Promise<void> {
  for (const [from, { to, command }] of Object.entries(RENAMED_REASONS)) {
    await knex('rejects').where({ reason_code: from, command }).update({ reason_code: to });
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const [from, { to, command }] of Object.entries(RENAMED_REASONS)) {
    await knex('rejects').where({ reason_code: to, command }).update({ reason_code: from });
  }
}
