/**
 * `carepipe ingest-fhir`: FHIR files (or, later, a server) into fhir_resources and the flat tables of
 * the shipped views plus the user's --view files. The command file wires flags to `runIngestFhir`.
 */
import type { Readable } from 'node:stream';
import type { Knex } from 'knex';
import type { Database } from '../db/connection.js';
import type { RunLedger } from '../db/ledger.js';
import { CarepipeError, formatLocation } from '../errors.js';
import type { FileFingerprint, ReadFhirFilesOptions } from './read/files.js';
import { formatTable } from '../io/table.js';
import type { Reporter } from '../pipeline/reporter.js';
import { ensureFlatTable, refuseReservedTableName } from './write/flat-table.js';
import { ensureHistory } from '../db/history.js';
import { ensureCodingsExtras } from './codings.js';
import type { FhirItem } from './read/item.js';
import { DEFAULT_BATCH_SIZE, ingestFhir, type CheckpointHandler, type IngestResult, type TypeCounts } from './ingest.js';
import { flatView, loadShippedViews, tablesOf } from './views.js';
import { claimFiles, enqueueInputs, workerName, type QueueOptions } from './read/queue.js';
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

/** Where the resources come from: the one place `--server`/`--bulk` readers plug in. */
export async function selectReader(
  options: Pick<IngestFhirOptions, 'inputs'>,
  context: Pick<ReadFhirFilesOptions, 'cwd' | 'stdin' | 'signal' | 'skip' | 'maxStdinBytes' | 'onWarning'>,
): Promise<{ items: AsyncIterable<FhirItem>; onCheckpoint: CheckpointHandler }> {
  const { readFhirFiles } = await import('./read/files.js');
  // Lossless: a decimal keeps its digits (`71.50`) on its way into a numeric column.
  return { items: readFhirFiles(options.inputs, { ...context, numbers: 'lossless' }), onCheckpoint: recordFileDone };
}

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

export interface IngestFhirOutcome {
  human: string;
  summary: Record<string, unknown>;
}

export async function runIngestFhir(options: IngestFhirOptions, deps: IngestFhirDeps): Promise<IngestFhirOutcome> {
  const { db, ledger, reporter } = deps;
  const views = [...loadShippedViews(), ...options.viewFiles.map((file) => flatView(file))];
  const tables = tablesOf(views);
  // A dry run does everything in one transaction rolled back at the end: exact counts, nothing kept.
  const dryRun = options.dryRun ? await db.knex.transaction() : undefined;
  const q = dryRun ?? db.knex;
  let result: IngestResult;
  let skipped = 0;
  let serverSource: ServerSource | undefined;
  try {
    // Every name is checked before any table is created, so a refused --view leaves nothing behind.
    for (const table of tables) await refuseReservedTableName(q, table.table);
    let created = false;
    for (const table of tables) {
      created = (await ensureFlatTable(q, table, db.schemas.fhir)) === 'created' || created;
      // a --view table created now gets row history like the shipped ones (a no-op once attached)
      await ensureHistory(q, table.table);
    }
    // The codings table, when created here, gets its derived columns and the diseases view.
    if (created) await ensureCodingsExtras(q as Knex);
    const done = options.fullRefresh ? new Map<string, string>() : await filesDone(q);
    const skip = (file: FileFingerprint) => {
      const same = done.get(file.path) === `${file.size}:${file.sha256}`;
      if (same) skipped += 1;
      return same;
    };
    await reporter.start('ingest-fhir: reading');
    let shown = 0;
    const load = (items: AsyncIterable<FhirItem>, onCheckpoint: CheckpointHandler) =>
      ingestFhir(items, {
        knex: db.knex,
        kind: db.kind,
        ledger,
        views,
        batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
        onCheckpoint,
        signal: deps.signal,
        dryRunTransaction: dryRun,
        onProgress: (p) => {
          const rate = p.elapsedMs > 0 ? Math.round((p.read * 1000) / p.elapsedMs) : 0;
          // A server's checkpoints are its pages (or, for an export, its types once done).
          const unit = options.server ? (options.server.bulk ? 'types' : 'pages') : 'files';
          reporter.progress(`ingest-fhir: ${p.checkpoints} ${unit}, ${p.read} resources, ${rate}/s${p.rejected ? `, ${p.rejected} rejected` : ''}`, {
            [unit]: p.checkpoints,
            resources: p.read,
            per_second: rate,
            rejected: p.rejected,
          });
        },
        onReject: (r) => {
          // The first few on stderr (where and why, never the record itself); all of them in `rejects`.
          if (shown++ < 20) {
            const where = formatLocation({ file: r.source, line: r.line, entry: r.entry, field: r.field });
            reporter.warn('rejected', { message: `${where}: ${r.reasonCode}: ${r.message}` });
          } else if (shown === 21) {
            reporter.warn('rejected', { message: 'more rejects: see the rejects table' });
          }
        },
      });
    const context = {
      cwd: deps.cwd,
      stdin: deps.stdin,
      signal: deps.signal,
      skip,
      maxStdinBytes: deps.maxStdinBytes,
      onWarning: (message: string) => reporter.warn('input_skipped', { message }),
    };
    if (options.queue && !dryRun) {
      await enqueueInputs(db, options.inputs, deps.cwd, options.queue);
      result = emptyResult();
      const worker = workerName();
      ledger.details.worker = worker;
      for await (const file of claimFiles(db.knex, ledger, { ...options.queue, worker, recordFileDone, signal: deps.signal })) {
        try {
          const reader = await selectReader({ inputs: [file.unit.unit_key] }, context);
          const one = await load(reader.items, file.onCheckpoint);
          await file.finish();
          addResult(result, one);
          if (one.interrupted) break;
        } catch (err) {
          await file.fail(err as Error).catch(() => undefined);
          throw err;
        } finally {
          file.stop();
        }
      }
    } else if (options.server) {
      serverSource = await openServerSource(q, {
        ...options.server,
        fullRefresh: options.fullRefresh,
        signal: deps.signal,
        onRetry: (e) => reporter.info('retry', { message: `${e.what}: ${e.reason}; attempt ${e.attempt}, next in ${e.waitMs} ms` }),
        onProgress: (message) => reporter.progress(`ingest-fhir: ${message}`),
        onWarning: (message) => reporter.warn('server', { message }),
      });
      result = await load(serverSource.items, serverSource.onCheckpoint);
    } else {
      const reader = await selectReader(options, context);
      result = await load(reader.items, reader.onCheckpoint);
    }
  } finally {
    await dryRun?.rollback().catch(() => undefined);
  }
  const files = { loaded: result.checkpoints, skipped };
  ledger.details.types = result.types;
  ledger.details.deleted = result.totals.deleted;
  ledger.details.partial_dates = result.partialDates;
  if (serverSource) {
    const st = serverSource.stats;
    ledger.details.server = { requests: st.requests, pages: st.pages, files: st.files, retries: st.retries, token_refreshes: st.tokenRefreshes };
  } else {
    ledger.details.files = files;
  }
  if (result.interrupted) {
    throw new CarepipeError('INTERRUPTED', `interrupted after ${result.totals.read} resources; every committed batch is kept, run the same command again to finish`);
  }
  const human = summaryText(result, serverSource ? undefined : files, options.dryRun);
  if (!serverSource) return { human, summary: {} };
  const st = serverSource.stats;
  const what = st.files ? `${st.files} export files` : `${st.pages} pages`;
  return { human: `${human}server: ${st.requests} requests, ${what}, ${st.retries} retries, ${st.tokenRefreshes} token refreshes\n`, summary: {} };
}

function emptyResult(): IngestResult {
  return { types: {}, totals: { read: 0, written: 0, unchanged: 0, rejected: 0, deleted: 0 }, checkpoints: 0, partialDates: 0, interrupted: false };
}

/** Adds the result of one file to the run's. */
function addResult(into: IngestResult, one: IngestResult): void {
  for (const [type, counts] of Object.entries(one.types)) {
    const t = (into.types[type] ??= { read: 0, written: 0, unchanged: 0, rejected: 0, deleted: 0 });
    for (const k of Object.keys(counts) as (keyof TypeCounts)[]) t[k] += counts[k];
  }
  for (const k of Object.keys(one.totals) as (keyof TypeCounts)[]) into.totals[k] += one.totals[k];
  into.checkpoints += one.checkpoints;
  into.partialDates += one.partialDates;
  into.interrupted ||= one.interrupted;
}

function summaryText(result: IngestResult, files: { loaded: number; skipped: number } | undefined, dryRun: boolean): string {
  const row = (type: string, c: TypeCounts) => [type, c.read, c.written, c.unchanged, c.rejected, c.deleted];
  const types = Object.keys(result.types).sort();
  const table = formatTable(
    ['resource type', 'read', 'written', 'unchanged', 'rejected', 'deleted'],
    [...types.map((t) => row(t, result.types[t]!)), row('total', result.totals)],
  );
  const fileLine = files ? `files: ${files.loaded} loaded, ${files.skipped} skipped (unchanged since they were loaded)\n` : '';
  const partialLine = result.partialDates > 0
    ? `partial dates: ${result.partialDates} (a year, a month or a day without its time), stored as the first instant of their period\n`
    : '';
  return `${table}${fileLine}${partialLine}${dryRun ? 'dry run: nothing was written\n' : ''}`;
}
