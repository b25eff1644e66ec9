/**
 * `carepipe ingest-fhir` on the engine (src/pipeline/run.ts): FHIR files, stdin, a server's search or
 * Bulk Data export, or the files of a shared work queue (read/), through the views (map.ts), into
 * fhir_resources and the flat tables of the shipped views plus the user's --view files (write/).
 * The command file wires flags to `runIngestFhir`; the dry run and interruption are the engine's.
 */
import type { Readable } from 'node:stream';
import type { Knex } from 'knex';
import type { Database, DatabaseKind } from '../db/connection.js';
import type { RunLedger } from '../db/ledger.js';
import type { FileFingerprint } from './read/format.js';
import { readFhirFiles, type ReadFhirFilesOptions } from './read/files.js';
import { formatTable } from '../io/table.js';
import type { Reporter } from '../pipeline/reporter.js';
import { run, type Counts, type Pipeline, type RunSummary, type StageContext } from '../pipeline/run.js';
import { ensureFlatTable, refuseReservedTableName } from './write/flat-table.js';
import { recordDerivedTable } from '../db/history.js';
import { recordIngestViews } from './flat-views.js';
import { ensureCodingsExtras } from './codings.js';
import { fhirMapper, type FhirValue } from './map.js';
import { engineItems, type CheckpointHandler, type FhirCheckpoint, type FhirRecord, type FhirReadItem } from './read/source.js';
import { fhirWriter } from './write/batch.js';
import { flatView, loadShippedViews, tablesOf, type FlatView } from './views.js';
import { enqueueInputs, readQueue, workerName, type QueueOptions } from './read/queue.js';
import { openServerSource, type ServerSource, type ServerSourceOptions } from './read/server.js';

export interface IngestFhirOptions {
  /** Files, folders, globs, `-` for stdin. */
  inputs: string[];
  /** User ViewDefinition files, in addition to the shipped views. */
  viewFiles: string[];
  /** Reload files already recorded in fhir_files_done. */
  fullRefresh: boolean;
  batchSize?: number;
  dryRun: boolean;
  /** Share the input with other processes through this work queue (see read/queue.ts). */
  queue?: QueueOptions;
  /** Pull from a FHIR server instead of reading `inputs` (see read/server.ts). */
  server?: Omit<ServerSourceOptions, 'fullRefresh' | 'signal' | 'onRetry' | 'onProgress' | 'onWarning'>;
}

export interface IngestFhirDeps {
  db: Database;
  ledger: RunLedger;
  reporter: Reporter;
  signal: AbortSignal;
  cwd: string;
  stdin: Readable;
  /** Most bytes taken from stdin (--max-response-mb). */
  maxStdinBytes?: number;
}

/**
 * Resources per transaction, at most (a batch also ends at BATCH_JSON_LIMIT characters of resources,
 * so memory stays bounded whatever the resources' size). 5,000 by default, by measurement: Synthea
 * Observation + Encounter ndjson (14.5k resources) into Postgres on this 2-core machine under heavy
 * shared load took 134.6 s at 100, 98.2 s at 1,000 and 75.2 s at 5,000 per batch, peak RSS 184, 211
 * and 217 MB: each transaction has a fixed cost (round trips, the staging table, the commit's fsync)
 * that larger batches amortise, and the byte limit keeps the memory cost of larger batches small.
 */
export const DEFAULT_BATCH_SIZE = 5000;
/** Characters of resource JSON after which a batch is committed whatever its count: ~3 batches of this in memory. */
export const BATCH_JSON_LIMIT = 16 * 1024 * 1024;

/** Checkpoint handler of the file reader: the file is done, in the transaction of its last batch. */
export const recordFileDone: CheckpointHandler = async (trx, checkpoint, runId) => {
  const file = checkpoint.state as FileFingerprint;
  await trx.raw(
    `insert into fhir_files_done (path, size, sha256, run_id, loaded_at) values (?, ?, ?, ?, now())
     on conflict (path) do update set size = excluded.size, sha256 = excluded.sha256, run_id = excluded.run_id, loaded_at = excluded.loaded_at`,
    [file.path, file.size, file.sha256, runId],
  );
};

/** Files loaded before, as `path → size:sha256`. */
async function filesDone(q: Knex | Knex.Transaction): Promise<Map<string, string>> {
  const rows = await q('fhir_files_done').select('path', 'size', 'sha256');
  return new Map(rows.map((r: { path: string; size: number; sha256: string }) => [r.path, `${r.size}:${r.sha256}`]));
}

export interface IngestPipelineOptions {
  kind: DatabaseKind;
  views: readonly FlatView[];
  read: (ctx: StageContext) => AsyncIterable<FhirReadItem>;
  batchSize?: number;
  /** The schema new flat tables are created in (the FHIR schema); the search path's first when not given. */
  schema?: string;
  /** Before reading, after the tables exist (e.g. load what was done before). */
  prepare?: (ctx: StageContext) => Promise<void>;
  /** Told when a table's recorded views differ from the ones this run maps through (see flat-views.ts). */
  onViewChanged?: (message: string) => void;
}

export interface IngestPipeline extends Pipeline<FhirRecord, FhirValue, FhirCheckpoint> {
  /** Partial dates of the committed rows (see firstInstantOf). */
  readonly partialDates: number;
}

/**
 * The pipeline of ingest-fhir: `read` as given; map through the views; write into fhir_resources
 * and the views' tables (created, or checked, first: a refused --view name leaves nothing behind).
 */
export function ingestPipeline(options: IngestPipelineOptions): IngestPipeline {
  const tables = tablesOf(options.views);
  const writer = fhirWriter(options.kind, options.views);
  let lz4 = false;
  return {
    name: 'ingest-fhir',
    read: options.read,
    map: fhirMapper(options.views),
    write: writer.write,
    async prepare(ctx) {
      const q = ctx.q;
      // Every name is checked before any table is created, so a refused --view leaves nothing behind.
      for (const table of tables) await refuseReservedTableName(q, table.table);
      const created = new Set<string>();
      for (const table of tables) {
        if ((await ensureFlatTable(q, table, options.schema)) === 'created') created.add(table.table);
        // no triggers: its history derives from the resources' versions through these views
        await recordDerivedTable(q as Knex, table.table, options.views.filter((v) => v.table.table === table.table).map((v) => v.definition));
      }
      // The codings table, when created here, gets its derived columns and the diseases view.
      if (created.size > 0) await ensureCodingsExtras(q as Knex);
      // which views make each table (flat_views): what `views refresh` and `migrate` rebuild it with
      for (const message of await recordIngestViews(q, options.views, created, ctx.runId)) options.onViewChanged?.(message);
      // lz4 compresses large resources several times faster than Postgres' default pglz, where the server has it.
      lz4 = options.kind === 'postgres' && (await hasLz4(q));
      await options.prepare?.(ctx);
    },
    async begin(trx) {
      if (lz4) await trx.raw(`set local default_toast_compression = 'lz4'`);
    },
    batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
    batchWeight: BATCH_JSON_LIMIT,
    get partialDates() {
      return writer.partialDates;
    },
  };
}

export interface IngestFhirOutcome {
  human: string;
  summary: Record<string, unknown>;
}

export async function runIngestFhir(options: IngestFhirOptions, deps: IngestFhirDeps): Promise<IngestFhirOutcome> {
  const { db, ledger, reporter } = deps;
  const views = [...loadShippedViews(), ...options.viewFiles.map((file) => flatView(file))];
  let skipped = 0;
  let done = new Map<string, string>();
  let serverSource: ServerSource | undefined;
  const fileOptions: ReadFhirFilesOptions = {
    cwd: deps.cwd,
    stdin: deps.stdin,
    signal: deps.signal,
    skip: (file: FileFingerprint) => {
      const same = done.get(file.path) === `${file.size}:${file.sha256}`;
      if (same) skipped += 1;
      return same;
    },
    maxStdinBytes: deps.maxStdinBytes,
    onWarning: (message: string) => reporter.warn('input_skipped', { message }),
    // Lossless: a decimal keeps its digits (`71.50`) on its way into a numeric column.
    numbers: 'lossless',
  };
  const worker = options.queue && !options.dryRun ? workerName() : undefined;
  const queue = options.queue && worker
    ? readQueue(db.knex, ledger, { ...options.queue, worker, recordFileDone, signal: deps.signal }, (file) => readFhirFiles([file], fileOptions))
    : undefined;

  // Each layer of async generators costs every resource a few promise turns: files and the queue
  // hand the reader's items to the engine with one layer between them.
  function read(ctx: StageContext): AsyncIterable<FhirReadItem> {
    if (queue) return queueItems();
    if (options.server) return serverItems(ctx);
    return engineItems(readFhirFiles(options.inputs, fileOptions), recordFileDone);
  }
  async function* queueItems(): AsyncGenerator<FhirReadItem> {
    await enqueueInputs(db, options.inputs, deps.cwd, options.queue!);
    yield* queue!.items;
  }
  async function* serverItems(ctx: StageContext): AsyncGenerator<FhirReadItem> {
    serverSource = await openServerSource(ctx.q as Knex, {
      ...options.server!,
      fullRefresh: options.fullRefresh,
      signal: deps.signal,
      onRetry: (e) => reporter.info('retry', { message: `${e.what}: ${e.reason}; attempt ${e.attempt}, next in ${e.waitMs} ms` }),
      onProgress: (message) => reporter.progress(`ingest-fhir: ${message}`),
      onWarning: (message) => reporter.warn('server', { message }),
    });
    yield* engineItems(serverSource.items, serverSource.onCheckpoint);
  }

  // A server's checkpoints are its pages (or, for an export, its types once done).
  const unit = options.server ? (options.server.bulk ? 'types' : 'pages') : 'files';
  const pipeline: IngestPipeline = ingestPipeline({
    kind: db.kind,
    views,
    read,
    batchSize: options.batchSize,
    schema: db.schemas.fhir,
    onViewChanged: (message) => reporter.warn('view_changed', { message }),
    prepare: async (ctx) => {
      if (!options.fullRefresh) done = await filesDone(ctx.q);
    },
  });
  const describe = (s: RunSummary) => {
    const rate = s.elapsedMs > 0 ? Math.round((s.read * 1000) / s.elapsedMs) : 0;
    return {
      text: `ingest-fhir: ${s.checkpoints} ${unit}, ${s.read} resources, ${rate}/s${s.rejected ? `, ${s.rejected} rejected` : ''}`,
      fields: { [unit]: s.checkpoints, resources: s.read, per_second: rate, rejected: s.rejected },
    };
  };
  await reporter.start('ingest-fhir: reading');
  if (worker) ledger.details.worker = worker;
  let summary: RunSummary | undefined;
  let failure: Error | undefined;
  try {
    summary = await run({ ...pipeline, describe }, { knex: db.knex, ledger, signal: deps.signal, dryRun: options.dryRun, reporter, groupsDetail: 'types' });
  } catch (err) {
    failure = err as Error;
    throw err;
  } finally {
    await queue?.settle(failure);
    const groups = (ledger.details.types ?? {}) as Record<string, Counts>;
    ledger.details.deleted = Object.values(groups).reduce((n, c) => n + c.deleted, 0);
    ledger.details.partial_dates = pipeline.partialDates;
    if (serverSource) {
      const st = serverSource.stats;
      ledger.details.server = { requests: st.requests, pages: st.pages, files: st.files, retries: st.retries, token_refreshes: st.tokenRefreshes };
    } else {
      ledger.details.files = { loaded: summary?.checkpoints ?? 0, skipped };
    }
  }
  const files = { loaded: summary.checkpoints, skipped };
  const human = summaryText(summary, pipeline.partialDates, serverSource ? undefined : files, options.dryRun);
  if (!serverSource) return { human, summary: {} };
  const st = serverSource.stats;
  const what = st.files ? `${st.files} export files` : `${st.pages} pages`;
  return { human: `${human}server: ${st.requests} requests, ${what}, ${st.retries} retries, ${st.tokenRefreshes} token refreshes\n`, summary: {} };
}

async function hasLz4(knex: Knex | Knex.Transaction): Promise<boolean> {
  const { rows } = await knex.raw<{ rows: unknown[] }>(
    `select 1 from pg_settings where name = 'default_toast_compression' and 'lz4' = any(enumvals)`,
  );
  return rows.length > 0;
}

function summaryText(result: RunSummary, partialDates: number, files: { loaded: number; skipped: number } | undefined, dryRun: boolean): string {
  const row = (type: string, c: Counts) => [type, c.read, c.written, c.unchanged, c.rejected, c.deleted];
  const types = Object.keys(result.groups).sort();
  const table = formatTable(
    ['resource type', 'read', 'written', 'unchanged', 'rejected', 'deleted'],
    [...types.map((t) => row(t, result.groups[t]!)), row('total', result)],
  );
  const fileLine = files ? `files: ${files.loaded} loaded, ${files.skipped} skipped (unchanged since they were loaded)\n` : '';
  const partialLine = partialDates > 0
    ? `partial dates: ${partialDates} (a year, a month or a day without its time), stored as the first instant of their period\n`
    : '';
  return `${table}${fileLine}${partialLine}${dryRun ? 'dry run: nothing was written\n' : ''}`;
}
