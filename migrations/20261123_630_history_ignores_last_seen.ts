import type { Knex } from 'knex';
import { createHistoryFunctions } from '../src/db/history-legacy.js';

/**
 * Row history no longer records updates that only move an importer's "last seen" marks (last_seen,
 * last_seen_at, last_seen_run_id): a nightly re-import of unchanged clinicians or directory entries
 * left one history row per row per night. Re-creates the trigger functions with that rule.
 */
export async function up(knex: Knex): Promise<void> {
  await createHistoryFunctions(knex);
}

export async function down(): Promise<void> {
  // The functions of migration 600 differ only by this rule; keeping it on rollback loses nothing.
}
