/**
 * The directory writer: entries into organizations, health_care_workers and organization_workers, a
 * batch (a page) at a time inside the engine's transaction (one multi-row statement per table). Each row is created once (its key decides); later
 * sightings only move `last_seen_at`. `xmax = 0` in RETURNING tells a fresh insert from a row that was
 * already there, in the same statement.
 */
import type { Knex } from 'knex';
import type { Batch, Outcome } from '../pipeline/run.js';
import type { DirectoryEntry } from './map.js';

export type RowOutcome = 'created' | 'existing';

export interface EntryOutcome {
  organization: RowOutcome;
  worker: RowOutcome;
  link: RowOutcome;
}

export interface SaveOptions {
  /** The run writing; null in a dry run. */
  runId: number | null;
  now: Date;
}

/** Rows per statement: well under Postgres's 65,535 bind parameters for the widest table. */
const CHUNK = 1000;

/**
 * Insert rows that are not there yet, mark the others seen; returns the keys that were created. Rows
 * must have distinct keys (one statement cannot touch a row twice).
 */
async function upsertOnce(
  trx: Knex.Transaction,
  table: string,
  key: string[],
  rows: Record<string, unknown>[],
  options: SaveOptions,
): Promise<Set<string>> {
  const created = new Set<string>();
  if (rows.length === 0) return created;
  const runId = options.runId;
  const columns = [...Object.keys(rows[0]!), 'first_seen_at', 'last_seen_at', 'run_id', 'last_seen_run_id'];
  for (let i = 0; i < rows.length; i += CHUNK) {
    const chunk = rows.slice(i, i + CHUNK);
    const tuple = `(${columns.map(() => '?').join(', ')})`;
    const values = chunk.flatMap((row) => [...Object.values(row), options.now, options.now, runId, runId]) as Knex.Value[];
    const sql =
      `insert into ?? (${columns.map(() => '??').join(', ')}) values ${chunk.map(() => tuple).join(', ')} ` +
      `on conflict (${key.map(() => '??').join(', ')}) do update set last_seen_at = excluded.last_seen_at, last_seen_run_id = excluded.last_seen_run_id ` +
      `returning ${key.map(() => '??').join(', ')}, (xmax = 0) as created`;
    const result = await trx.raw<{ rows: (Record<string, string> & { created: boolean })[] }>(sql, [table, ...columns, ...values, ...key, ...key]);
    for (const row of result.rows) if (row.created) created.add(key.map((k) => row[k]).join('\u0000'));
  }
  return created;
}

/** The first row for each key, in order. */
function firstByKey<T>(items: T[], keyOf: (item: T) => string): Map<string, T> {
  const map = new Map<string, T>();
  for (const item of items) if (!map.has(keyOf(item))) map.set(keyOf(item), item);
  return map;
}

/**
 * Write a page of entries in the caller's transaction. An organization or worker that several entries
 * share counts as created for the first entry that brought it, existing for the others.
 */
export async function saveEntries(trx: Knex.Transaction, entries: DirectoryEntry[], options: SaveOptions): Promise<EntryOutcome[]> {
  const orgKey = (e: DirectoryEntry) => e.organization.finess;
  const workerKey = (e: DirectoryEntry) => e.worker.rpps_number;
  const linkKey = (e: DirectoryEntry) => `${e.link.finess}\u0000${e.link.rpps_number}`;
  const orgs = firstByKey(entries, orgKey);
  const workers = firstByKey(entries, workerKey);
  const links = firstByKey(entries, linkKey);
  // Parents before the link that references them.
  const orgsCreated = await upsertOnce(trx, 'organizations', ['finess'], [...orgs.values()].map((e) => ({ ...e.organization })), options);
  const workersCreated = await upsertOnce(trx, 'health_care_workers', ['rpps_number'], [...workers.values()].map((e) => ({ ...e.worker })), options);
  const linksCreated = await upsertOnce(trx, 'organization_workers', ['finess', 'rpps_number'], [...links.values()].map((e) => ({ ...e.link })), options);
  const outcome = (created: Set<string>, first: Map<string, DirectoryEntry>, key: string, entry: DirectoryEntry): RowOutcome =>
    created.has(key) && first.get(key) === entry ? 'created' : 'existing';
  return entries.map((e) => ({
    organization: outcome(orgsCreated, orgs, orgKey(e), e),
    worker: outcome(workersCreated, workers, workerKey(e), e),
    link: outcome(linksCreated, links, linkKey(e), e),
  }));
}

/**
 * A batch of entries for the engine: an entry that created any of its rows is `written`, one whose
 * rows were all there already `unchanged`; `rows` says which of its three rows were created.
 */
export async function writeEntries(
  trx: Knex.Transaction,
  batch: Batch<DirectoryEntry, unknown>,
  options: SaveOptions,
): Promise<{ outcomes: Outcome[]; rows: EntryOutcome[] }> {
  const rows = await saveEntries(trx, batch.items.map((item) => item.value), options);
  const outcomes = rows.map((r): Outcome => (r.organization === 'created' || r.worker === 'created' || r.link === 'created' ? 'written' : 'unchanged'));
  return { outcomes, rows };
}
