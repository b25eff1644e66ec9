/**
 * The directory writer: one entry into organizations, health_care_workers and organization_workers.
 * Each row is created once (its key decides), later sightings only move `last_seen_at`; `xmax = 0` in
 * RETURNING tells a fresh insert from a row that was already there, in one statement.
 */
import type { Knex } from 'knex';
import type { DirectoryEntry } from './normalise.js';

export type RowOutcome = 'created' | 'existing';

export interface EntryOutcome {
  organization: RowOutcome;
  worker: RowOutcome;
  link: RowOutcome;
}

export interface SaveOptions {
  /** The run writing; 0 (a dry run) is stored as null. */
  runId: number;
  now: Date;
}

async function upsertOnce(
  trx: Knex.Transaction,
  table: string,
  key: string[],
  row: Record<string, unknown>,
  options: SaveOptions,
): Promise<RowOutcome> {
  const runId = options.runId > 0 ? options.runId : null;
  const full: Record<string, unknown> = { ...row, first_seen_at: options.now, last_seen_at: options.now, run_id: runId, last_seen_run_id: runId };
  const columns = Object.keys(full);
  const sql =
    `insert into ?? (${columns.map(() => '??').join(', ')}) values (${columns.map(() => '?').join(', ')}) ` +
    `on conflict (${key.map(() => '??').join(', ')}) do update set last_seen_at = excluded.last_seen_at, last_seen_run_id = excluded.last_seen_run_id ` +
    `returning (xmax = 0) as created`;
  const result = await trx.raw<{ rows: { created: boolean }[] }>(sql, [table, ...columns, ...columns.map((c) => full[c] as Knex.Value), ...key]);
  return result.rows[0]?.created ? 'created' : 'existing';
}

/** Write one entry (in the caller's transaction): organization, then worker, then their link. */
export async function saveEntry(trx: Knex.Transaction, entry: DirectoryEntry, options: SaveOptions): Promise<EntryOutcome> {
  const organization = await upsertOnce(trx, 'organizations', ['finess'], { ...entry.organization }, options);
  const worker = await upsertOnce(trx, 'health_care_workers', ['rpps_number'], { ...entry.worker }, options);
  const link = await upsertOnce(trx, 'organization_workers', ['finess', 'rpps_number'], { ...entry.link }, options);
  return { organization, worker, link };
}
