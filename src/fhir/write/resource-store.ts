/**
 * The lossless store of versioned documents keyed by (type, id) — `fhir_resources` — and the merge rule
 * that makes re-runs safe: the copy with the later last_updated (then the higher version) wins, an older
 * copy never overwrites a newer one, and an identical copy (the same content hash, or equal
 * JSON when the texts differ: another spacing, another order of keys) is not written again.
 *
 * A batch is first put into a staging table (one per session, emptied at commit), then merged with one
 * `INSERT … ON CONFLICT … DO UPDATE … WHERE` whose WHERE is the newer-wins rule. The statement returns
 * the keys it inserted or updated: the caller replaces the flat rows of exactly those records.
 */
import type { Knex } from 'knex';
import type { RecordKey } from './flat-table.js';
import type { TableColumn } from '../../io/json-rows.js';
import type { DatabaseKind } from '../../db/connection.js';
import { RawJson, recordset, writeRows } from '../../io/json-rows.js';

export interface StoredDocument {
  type: string;
  id: string;
  versionId: string | null;
  /** An instant (validated by the caller). */
  lastUpdated: string | null;
  /** The document as JSON text. */
  json: string;
  contentHash: string;
  source: string;
}


const STAGE = 'carepipe_stage_documents';
const STAGE_COLUMNS: TableColumn[] = [
  { name: 'resource_type', sqlType: 'text' },
  { name: 'id', sqlType: 'text' },
  { name: 'version_id', sqlType: 'text' },
  { name: 'last_updated', sqlType: 'timestamptz' },
  // text, parsed to jsonb once by the merge: staging stores it as it came, uncompressed below 2 kB
  { name: 'resource', sqlType: 'text' },
  { name: 'content_hash', sqlType: 'text' },
  { name: 'source', sqlType: 'text' },
];

/**
 * SQL that is true when the copy `a` is older than the copy `b`: an earlier last_updated (a missing
 * one counts as earliest), or the same last_updated and a lower version (numerically when both are
 * numbers). Equal copies are not older: the copy that arrives last wins a tie.
 */
function olderSql(a: string, b: string): string {
  const lu = (x: string) => `coalesce(${x}.last_updated, '-infinity'::timestamptz)`;
  const numeric = (x: string) => `${x}.version_id ~ '^[0-9]{1,18}$'`;
  return `(${lu(a)} < ${lu(b)} or (${lu(a)} = ${lu(b)} and case when ${numeric(a)} and ${numeric(b)}
    then ${a}.version_id::bigint < ${b}.version_id::bigint
    else coalesce(${a}.version_id, '') < coalesce(${b}.version_id, '') end))`;
}

/** The JS twin of olderSql, for copies of one record that meet inside one batch. */
export function isOlder(a: Pick<StoredDocument, 'lastUpdated' | 'versionId'>, b: Pick<StoredDocument, 'lastUpdated' | 'versionId'>): boolean {
  const ta = a.lastUpdated ? Date.parse(a.lastUpdated) : -Infinity;
  const tb = b.lastUpdated ? Date.parse(b.lastUpdated) : -Infinity;
  if (ta !== tb) return ta < tb;
  const numeric = (v: string | null) => v !== null && /^[0-9]{1,18}$/.test(v);
  if (numeric(a.versionId) && numeric(b.versionId)) return BigInt(a.versionId!) < BigInt(b.versionId!);
  return (a.versionId ?? '') < (b.versionId ?? '');
}

/**
 * Merges `documents` (at most one per key) into `table`. Returns the keys written: new records, and
 * records whose stored copy was older and different (or deleted).
 */
export async function mergeDocuments(
  trx: Knex.Transaction,
  kind: DatabaseKind,
  table: string,
  documents: StoredDocument[],
  runId: number | null,
): Promise<RecordKey[]> {
  if (documents.length === 0) return [];
  await trx.raw(
    `create temp table if not exists ${STAGE} (${STAGE_COLUMNS.map((c) => `"${c.name}" ${c.sqlType}`).join(', ')}) on commit delete rows`,
  );
  await writeRows(
    trx,
    kind,
    STAGE,
    STAGE_COLUMNS,
    documents.map((d) => ({
      resource_type: d.type,
      id: d.id,
      version_id: d.versionId,
      last_updated: d.lastUpdated,
      // The text goes through as JSON, parsed once by Postgres, never re-serialised here.
      resource: new RawJson(d.json),
      content_hash: d.contentHash,
      source: d.source,
    })),
  );
  const result = await trx.raw<{ rows: { resource_type: string; id: string }[] }>(
    `insert into ?? as t (resource_type, id, version_id, last_updated, resource, content_hash, deleted, source, run_id, loaded_at)
     select resource_type, id, version_id, last_updated, resource::jsonb, content_hash, false, source, ?::bigint, now() from ${STAGE}
     on conflict (resource_type, id) do update set
       version_id = excluded.version_id, last_updated = excluded.last_updated, resource = excluded.resource,
       content_hash = excluded.content_hash, deleted = false, source = excluded.source, run_id = excluded.run_id,
       loaded_at = excluded.loaded_at
     where (t.deleted or (t.content_hash <> excluded.content_hash and t.resource <> excluded.resource)) and not ${olderSql('excluded', 't')}
     returning resource_type, id`,
    [table, runId],
  );
  return result.rows.map((r) => ({ type: r.resource_type, id: r.id }));
}

/** Marks records deleted. Returns the keys that were present and not yet deleted. */
export async function markDeleted(trx: Knex.Transaction, table: string, keys: RecordKey[], runId: number | null): Promise<RecordKey[]> {
  if (keys.length === 0) return [];
  const result = await trx.raw<{ rows: { resource_type: string; id: string }[] }>(
    `update ?? as t set deleted = true, run_id = ?::bigint, loaded_at = now()
       from ${recordset([{ name: 'type', sqlType: 'text' }, { name: 'id', sqlType: 'text' }], 'k')}
      where t.resource_type = k.type and t.id = k.id and not t.deleted
      returning t.resource_type, t.id`,
    [table, runId, JSON.stringify(keys)],
  );
  return result.rows.map((r) => ({ type: r.resource_type, id: r.id }));
}
