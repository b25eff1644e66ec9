/**
 * The write stage of ingest-fhir on the engine (src/pipeline/run.ts): one batch, inside the engine's
 * transaction, merges its resources into fhir_resources (newer wins, resource-store.ts), marks its
 * deletions, replaces the flat rows of exactly the records that changed (flat-table.ts, COPY on a
 * server), and stores the checkpoints that close it. Each item comes back written, unchanged or deleted.
 */
import type { Knex } from 'knex';
import type { DatabaseKind } from '../../db/connection.js';
import type { Row } from '../../io/json-rows.js';
import type { Batch, Outcome, StageContext, WriteResult } from '../../pipeline/run.js';
import type { FhirValue } from '../map.js';
import type { FhirCheckpoint } from '../read/source.js';
import { tablesOf, type FlatView } from '../views.js';
import { replaceRecordRows } from './flat-table.js';
import { markDeleted, mergeDocuments } from './resource-store.js';

export const RESOURCES_TABLE = 'fhir_resources';

export interface FhirWriter {
  write(trx: Knex.Transaction, batch: Batch<FhirValue, FhirCheckpoint>, ctx: StageContext): Promise<WriteResult>;
  /** Partial dates and dateTimes of the committed rows, stored as the first instant of their period. */
  readonly partialDates: number;
}

export function fhirWriter(kind: DatabaseKind, views: readonly FlatView[]): FhirWriter {
  const tables = tablesOf(views);
  // Which resource types fill each table: a changed resource's old rows go from every one of them.
  const typesOfTable = new Map<string, Set<string>>();
  for (const v of views) typesOfTable.set(v.table.table, (typesOfTable.get(v.table.table) ?? new Set()).add(v.view.resource));
  let partialDates = 0;

  async function write(trx: Knex.Transaction, batch: Batch<FhirValue, FhirCheckpoint>, ctx: StageContext): Promise<WriteResult> {
    const documents = [];
    const deletes = [];
    for (const item of batch.items) {
      if (item.value.kind === 'resource') documents.push({ ...item.value.mapped.document, source: item.at.source });
      else deletes.push(item.value.key);
    }
    const written = await mergeDocuments(trx, kind, RESOURCES_TABLE, documents, ctx.runId);
    const deleted = await markDeleted(trx, RESOURCES_TABLE, deletes, ctx.runId);
    const writtenSet = new Set(written.map(keyOf));
    const deletedSet = new Set(deleted.map(keyOf));
    const changed = [...written, ...deleted];
    for (const table of tables) {
      const fills = typesOfTable.get(table.table)!;
      const keys = changed.filter((k) => fills.has(k.type));
      if (keys.length === 0) continue;
      const rows: Row[] = [];
      for (const { value } of batch.items) {
        if (value.kind === 'resource' && writtenSet.has(keyOf(value.key))) rows.push(...(value.mapped.rows.get(table.table) ?? []));
      }
      await replaceRecordRows(trx, kind, table, keys, rows);
    }
    for (const checkpoint of batch.checkpoints) await checkpoint.save(trx, checkpoint, ctx.runId);
    let partial = 0;
    const outcomes = batch.items.map(({ value }): Outcome => {
      const k = keyOf(value.key);
      if (writtenSet.has(k)) {
        if (value.kind === 'resource') partial += value.mapped.partialDates;
        return 'written';
      }
      return deletedSet.has(k) ? 'deleted' : 'unchanged';
    });
    return {
      outcomes,
      committed: () => {
        partialDates += partial;
        for (const checkpoint of batch.checkpoints) checkpoint.committed?.();
      },
    };
  }

  return {
    write,
    get partialDates() {
      return partialDates;
    },
  };
}

function keyOf(key: { type: string; id: string }): string {
  return `${key.type}/${key.id}`;
}
