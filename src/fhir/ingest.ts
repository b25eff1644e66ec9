/**
 * The ingest pipeline: FhirItems in (from any reader), batches out, each batch one transaction that
 * merges the raw resources into fhir_resources (newer wins), replaces the flat rows of the resources
 * it wrote, keeps the rejects, and stores the checkpoints that close it. Killing the process at any
 * point leaves whole batches only; running again redoes what was not committed.
 *
 * Reading and mapping overlap the writes (on a server, Postgres works on the other core meanwhile): one
 * batch is being written, the next waits mapped behind it, a third is being read; no more are held.
 * Measured against holding two (one written, one read), on the Synthea ndjson into Postgres, four
 * alternating pairs: 4–10% less wall time, the same peak RSS. Sampling pg_stat_activity
 * (bench/_pg-activity.mjs) shows why: with two, the backend waited for Node between batches 11–16% of
 * the run; with three and the reader yielding every few ms (see readAll), it works 75–78% of the run
 * instead of 68–71%.
 */
import type { Knex } from 'knex';
import type { DatabaseKind } from '../db/connection.js';
import type { RejectRecord, RunLedger } from '../db/ledger.js';
import { inRunTransaction } from '../db/transaction.js';
import { isMappingIssue, mapResource, viewsByResourceType, type MappedResource } from './map.js';
import { replaceRecordRows, type RecordKey } from './write/flat-table.js';
import { markDeleted, mergeDocuments } from './write/resource-store.js';
import type { Row } from '../io/json-rows.js';
import type { FhirItem, Origin } from './read/item.js';
import { tablesOf, type FlatView } from './views.js';

export type CheckpointItem = Extract<FhirItem, { kind: 'checkpoint' }>;

/** Stores a checkpoint's state inside the transaction of the batch it closes. */
export type CheckpointHandler = (trx: Knex.Transaction, checkpoint: CheckpointItem, runId: number | null) => Promise<void>;

export interface TypeCounts {
  read: number;
  written: number;
  unchanged: number;
  rejected: number;
  deleted: number;
}

export interface IngestProgress {
  checkpoints: number;
  read: number;
  written: number;
  rejected: number;
  elapsedMs: number;
}

export interface IngestOptions {
  knex: Knex;
  /** Which back end: COPY on a server, JSON recordsets on PGlite. */
  kind: DatabaseKind;
  ledger: RunLedger;
  views: readonly FlatView[];
  /**
   * Resources per transaction, at most (a batch also ends at BATCH_JSON_LIMIT characters of resources,
   * so memory stays bounded whatever the resources' size). 5,000 by default, by measurement: Synthea
   * Observation + Encounter ndjson (14.5k resources) into Postgres on this 2-core machine under heavy
   * shared load took 134.6 s at 100, 98.2 s at 1,000 and 75.2 s at 5,000 per batch, peak RSS 184, 211
   * and 217 MB: each transaction has a fixed cost (round trips, the staging table, the commit's fsync)
   * that larger batches amortise, and the byte limit keeps the memory cost of larger batches small.
   */
  batchSize?: number;
  onCheckpoint?: CheckpointHandler;
  signal?: AbortSignal;
  onProgress?: (progress: IngestProgress) => void;
  /** Told of each reject once its batch is committed. */
  onReject?: (reject: RejectRecord) => void;
  /**
   * Runs every batch in this transaction (as a savepoint) instead of its own: --dry-run passes one
   * that it rolls back at the end, so the counts are exact and nothing stays.
   */
  dryRunTransaction?: Knex.Transaction;
}

export interface IngestResult {
  types: Record<string, TypeCounts>;
  totals: TypeCounts;
  checkpoints: number;
  /** Partial dates and dateTimes written as the first instant of their period (see firstInstantOf). */
  partialDates: number;
  /** The signal stopped the run after a committed batch. */
  interrupted: boolean;
}

export const DEFAULT_BATCH_SIZE = 5000;
/** Characters of resource JSON after which a batch is committed whatever its count: ~3 batches of this in memory. */
export const BATCH_JSON_LIMIT = 16 * 1024 * 1024;
/** Longest stretch of reading and mapping before the event loop gets a turn (see readAll). */
const YIELD_EVERY_MS = 2;
/** Per-type bucket of records that could not be read as a resource at all. */
export const UNREADABLE = '(unreadable)';
const RESOURCES_TABLE = 'fhir_resources';

type Pending =
  | { kind: 'resource'; key: RecordKey; mapped: MappedResource; origin: Origin }
  | { kind: 'delete'; key: RecordKey; origin: Origin };

interface Batch {
  items: Map<string, Pending>;
  /** Characters of resource JSON in `items`. */
  chars: number;
  rejects: { type: string; record: RejectRecord }[];
  checkpoints: CheckpointItem[];
}

const newBatch = (): Batch => ({ items: new Map(), chars: 0, rejects: [], checkpoints: [] });

function emptyCounts(): TypeCounts {
  return { read: 0, written: 0, unchanged: 0, rejected: 0, deleted: 0 };
}

/** Loads `items` through the views. Resolves when every batch is committed. */
export async function ingestFhir(items: AsyncIterable<FhirItem>, options: IngestOptions): Promise<IngestResult> {
  const { knex, ledger } = options;
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const viewsByType = viewsByResourceType(options.views);
  const tables = tablesOf(options.views);
  // Which resource types fill each table: a changed resource's old rows go from every one of them.
  const typesOfTable = new Map<string, Set<string>>();
  for (const v of options.views) typesOfTable.set(v.table.table, (typesOfTable.get(v.table.table) ?? new Set()).add(v.view.resource));
  const runId = options.dryRunTransaction ? null : ledger.id;
  const started = Date.now();
  const types: Record<string, TypeCounts> = {};
  const countsOf = (type: string) => (types[type] ??= emptyCounts());
  let checkpoints = 0;
  let partialDates = 0;

  // lz4 compresses large resources several times faster than Postgres' default pglz, where the server has it.
  const lz4 = options.kind === 'postgres' && (await hasLz4(options.dryRunTransaction ?? knex));
  const transact = <T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> =>
    inRunTransaction(options.dryRunTransaction ?? knex, ledger, async (trx) => {
      if (lz4) await trx.raw(`set local default_toast_compression = 'lz4'`);
      return work(trx);
    });

  async function write(trx: Knex.Transaction, batch: Batch) {
    const resources = [...batch.items.values()].filter((p): p is Extract<Pending, { kind: 'resource' }> => p.kind === 'resource');
    const deletes = [...batch.items.values()].filter((p) => p.kind === 'delete').map((p) => p.key);
    const written = await mergeDocuments(
      trx,
      options.kind,
      RESOURCES_TABLE,
      resources.map((p) => ({ ...p.mapped.document, source: p.origin.source })),
      runId,
    );
    const deleted = await markDeleted(trx, RESOURCES_TABLE, deletes, runId);
    const writtenSet = new Set(written.map(keyOf));
    const changed = [...written, ...deleted];
    for (const table of tables) {
      const fills = typesOfTable.get(table.table)!;
      const keys = changed.filter((k) => fills.has(k.type));
      if (keys.length === 0) continue;
      const rows: Row[] = [];
      for (const p of resources) if (writtenSet.has(keyOf(p.key))) rows.push(...(p.mapped.rows.get(table.table) ?? []));
      await replaceRecordRows(trx, options.kind, table, keys, rows);
    }
    if (batch.rejects.length > 0) await ledger.rejectMany(batch.rejects.map((r) => r.record), trx);
    for (const checkpoint of batch.checkpoints) await options.onCheckpoint?.(trx, checkpoint, runId);
    return { resources, writtenSet, deleted: new Set(deleted.map(keyOf)) };
  }

  /** Commits a batch; a value Postgres refuses (a data exception) is found by halving and rejected alone. */
  async function commit(batch: Batch): Promise<void> {
    let outcome: Awaited<ReturnType<typeof write>>;
    const rejectedBefore = ledger.counts.rejected;
    try {
      outcome = await transact((trx) => write(trx, batch));
    } catch (err) {
      // rejectMany may have counted the rejects of the batch that rolled back; they count on retry.
      ledger.counts.rejected = rejectedBefore;
      if (!isDataException(err) || batch.items.size === 0) throw err;
      if (batch.items.size === 1) {
        const [pending] = batch.items.values();
        batch.items.clear();
        batch.rejects.push({
          type: pending!.key.type,
          record: {
            ...originOf(pending!.origin),
            recordKey: keyOf(pending!.key),
            reasonCode: 'DATABASE_REFUSED',
            message: `the database refused a value: ${(err as Error).message}`,
            raw: pending!.kind === 'resource' ? pending!.mapped.document.json : undefined,
          },
        });
        return commit(batch);
      }
      const entries = [...batch.items.entries()];
      const half = Math.ceil(entries.length / 2);
      await commit({ items: new Map(entries.slice(0, half)), chars: 0, rejects: [], checkpoints: [] });
      await commit({ items: new Map(entries.slice(half)), chars: 0, rejects: batch.rejects, checkpoints: batch.checkpoints });
      return;
    }
    for (const p of batch.items.values()) {
      const c = countsOf(p.key.type);
      const k = keyOf(p.key);
      if (outcome.writtenSet.has(k)) {
        c.written += 1;
        if (p.kind === 'resource') partialDates += p.mapped.partialDates;
      }
      else if (outcome.deleted.has(k)) c.deleted += 1;
      else c.unchanged += 1;
    }
    for (const r of batch.rejects) {
      countsOf(r.type).rejected += 1;
      options.onReject?.(r.record);
    }
    checkpoints += batch.checkpoints.length;
    options.onProgress?.(progress());
  }

  function progress(): IngestProgress {
    const t = totalsOf(types);
    return { checkpoints, read: t.read, written: t.written, rejected: t.rejected, elapsedMs: Date.now() - started };
  }

  let batch = newBatch();
  let inflight: Promise<void> = Promise.resolve();
  let beforeInflight: Promise<void> = Promise.resolve();
  /**
   * Hands the batch to the writer and waits for the one two before it: one batch being written, one
   * mapped and queued behind it, one being read, so the database finds the next batch ready.
   */
  async function flush(): Promise<void> {
    if (batch.items.size === 0 && batch.rejects.length === 0 && batch.checkpoints.length === 0) return;
    const full = batch;
    batch = newBatch();
    const previous = inflight;
    const twoBefore = beforeInflight;
    beforeInflight = previous;
    inflight = previous.then(() => commit(full));
    // Awaited at the next flush or at the end; this only keeps Node from calling it unhandled meanwhile.
    inflight.catch(() => undefined);
    await twoBefore;
  }

  let interrupted = false;
  try {
    await readAll();
  } catch (err) {
    if (!options.signal?.aborted) {
      // The reader failed (a server gave up): the batch being committed is whole, with its
      // checkpoint, so let it finish before the database is closed.
      await inflight.catch(() => undefined);
      throw err;
    }
    // The reader stops with an AbortError when the signal fires: what was read still gets committed.
    interrupted = true;
  }
  await flush();
  await inflight;
  const totals = totalsOf(types);
  // A delete is a write for the ledger's totals; details keep it apart.
  ledger.add({ read: totals.read, written: totals.written + totals.deleted, unchanged: totals.unchanged });
  return { types, totals, checkpoints, partialDates, interrupted };

  async function readAll(): Promise<void> {
    let turn = performance.now();
    for await (const item of items) {
      // Parsing a chunk of input is synchronous work that keeps the event loop from the database
      // connection; let it through every few milliseconds, or the batch being written waits for us.
      if (performance.now() - turn > YIELD_EVERY_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        turn = performance.now();
      }
      switch (item.kind) {
        case 'resource': {
          const key = { type: item.resource.resourceType, id: item.resource.id };
          countsOf(key.type).read += 1;
          // Two copies of one resource in a batch would meet in one INSERT: commit the first copy first.
          if (batch.items.has(keyOf(key))) await flush();
          const mapped = mapResource(item.resource, viewsByType.get(key.type) ?? [], item.text);
          if (isMappingIssue(mapped)) {
            batch.rejects.push({
              type: key.type,
              record: { ...originOf(item), recordKey: keyOf(key), field: mapped.field, reasonCode: mapped.reasonCode, message: mapped.message, raw: item.resource },
            });
          } else {
            batch.items.set(keyOf(key), { kind: 'resource', key, mapped, origin: originOf(item) });
            batch.chars += mapped.document.json.length;
          }
          break;
        }
        case 'delete': {
          const key = { type: item.resourceType, id: item.id };
          countsOf(key.type).read += 1;
          if (batch.items.has(keyOf(key))) await flush();
          batch.items.set(keyOf(key), { kind: 'delete', key, origin: originOf(item) });
          break;
        }
        case 'invalid':
          countsOf(UNREADABLE).read += 1;
          batch.rejects.push({
            type: UNREADABLE,
            record: { ...originOf(item), field: item.field, reasonCode: item.reasonCode, message: item.message, raw: item.raw },
          });
          break;
        case 'checkpoint':
          batch.checkpoints.push(item);
          await flush();
          break;
      }
      if (batch.items.size + batch.rejects.length >= batchSize || batch.chars >= BATCH_JSON_LIMIT) await flush();
      if (options.signal?.aborted) {
        interrupted = true;
        return;
      }
    }
  }
}

function keyOf(key: RecordKey): string {
  return `${key.type}/${key.id}`;
}

function originOf(o: Origin): Origin {
  return { source: o.source, line: o.line, entry: o.entry };
}

function totalsOf(types: Record<string, TypeCounts>): TypeCounts {
  const t = emptyCounts();
  for (const c of Object.values(types)) for (const k of Object.keys(t) as (keyof TypeCounts)[]) t[k] += c[k];
  return t;
}

async function hasLz4(knex: Knex | Knex.Transaction): Promise<boolean> {
  const { rows } = await knex.raw<{ rows: unknown[] }>(
    `select 1 from pg_settings where name = 'default_toast_compression' and 'lz4' = any(enumvals)`,
  );
  return rows.length > 0;
}

/** SQLSTATE class 22 (data exception): a value Postgres cannot take, e.g. a NUL character in text. */
function isDataException(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('22');
}
