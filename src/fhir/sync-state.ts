/**
 * The state of incremental pulls from FHIR servers (table fhir_sync_state): loaded before a run and
 * handed to the server readers as a map by checkpoint key, and written by the ingest pipeline's
 * checkpoint handler inside the transaction of the batch that a checkpoint closes.
 */
import type { Knex } from 'knex';
import type { SearchState } from './read/search.js';

const TABLE = 'fhir_sync_state';
const PREFIX = 'server:';

/** `server:{url}:{type}` → its parts; undefined for other checkpoints (files). */
export function parseServerKey(key: string): { server: string; resourceType: string } | undefined {
  if (!key.startsWith(PREFIX)) return undefined;
  const cut = key.lastIndexOf(':');
  if (cut <= PREFIX.length) return undefined;
  return { server: key.slice(PREFIX.length, cut), resourceType: key.slice(cut + 1) };
}

/** The stored states of one server, keyed like the readers' checkpoints. */
export async function loadSyncStates(knex: Knex, server: string): Promise<Map<string, SearchState>> {
  const rows = (await knex(TABLE)
    .select(
      'resource_type',
      'next_url',
      // microseconds and UTC, as a FHIR instant: the cursor must not lose precision on the way back
      knex.raw(`to_char(last_updated at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as last_updated`),
    )
    .where({ server })) as { resource_type: string; next_url: string | null; last_updated: string | null }[];
  return new Map(rows.map((r) => [`${PREFIX}${server}:${r.resource_type}`, { lastUpdated: r.last_updated, nextUrl: r.next_url }]));
}

/** Store one server checkpoint (insert or replace); other checkpoints are not ours and are ignored. */
export async function saveSyncState(trx: Knex | Knex.Transaction, checkpoint: { key: string; state: unknown }, runId: number | null): Promise<boolean> {
  const parts = parseServerKey(checkpoint.key);
  if (!parts) return false;
  const state = checkpoint.state as SearchState;
  await trx(TABLE)
    .insert({
      server: parts.server,
      resource_type: parts.resourceType,
      last_updated: state.lastUpdated,
      next_url: state.nextUrl,
      updated_at: trx.fn.now(),
      run_id: runId,
    })
    .onConflict(['server', 'resource_type'])
    .merge(['last_updated', 'next_url', 'updated_at', 'run_id']);
  return true;
}

/** Forget a server's state (all types, or some). */
export async function clearSyncState(knex: Knex, server: string, types?: string[]): Promise<void> {
  const query = knex(TABLE).where({ server });
  if (types?.length) query.whereIn('resource_type', types);
  await query.delete();
}
