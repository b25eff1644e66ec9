/**
 * Ingest shared by several carepipe processes, on one machine (`--workers N`) or many (the same
 * `--queue NAME` started on each host), against one Postgres. The input files are units of work in
 * `work_items` (src/db/work-queue.ts): each process enqueues what it sees (idempotent), then claims
 * one file at a time with FOR UPDATE SKIP LOCKED under a lease that it renews while it works.
 *
 * A file's last batch records it in fhir_files_done and marks its unit done in one transaction, so
 * "done" never runs ahead of the rows. A process that dies stops renewing; after the lease another
 * process claims the file again and loads it from the start: the batches already committed are
 * unchanged copies by then (newer-wins upsert, content hash), so nothing is written twice.
 *
 * The advisory lock of the single-process command is replaced by these per-file claims.
 */
import os from 'node:os';
import type { Knex } from 'knex';
import type { Database } from '../../db/connection.js';
import type { RunLedger } from '../../db/ledger.js';
import { claim, complete, enqueue, queueCounts, release, renew, type WorkUnit } from '../../db/work-queue.js';
import { CarepipeError } from '../../errors.js';
import type { FileFingerprint } from './format.js';
import { engineItems, type CheckpointHandler, type FhirReadItem } from './source.js';
import type { FhirItem } from './item.js';

export interface QueueOptions {
  /** Name shared by the cooperating processes. */
  queue: string;
  /** Seconds a claim lasts without renewal: how long a dead worker's file waits before another takes it. */
  leaseSeconds: number;
  /** Reset every unit of the queue to pending first (--full-refresh). */
  fullRefresh: boolean;
}

interface FilePayload {
  source: string;
  size: number;
  mtimeMs: number;
}

export const DEFAULT_LEASE_SECONDS = 120;

/** This process, as named in work_items.claimed_by: host, pid and a random tag (pids repeat across hosts). */
export function workerName(): string {
  return `${os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Puts the input files in the queue. A file already there comes back to pending when its size or
 * modification time changed (a new nightly file under the same name), or with --full-refresh.
 */
export async function enqueueInputs(db: Database, inputs: readonly string[], cwd: string, options: QueueOptions): Promise<number> {
  if (db.kind === 'pglite') {
    throw new CarepipeError(
      'USAGE',
      'shared ingest (--workers, --queue) needs a Postgres server (DATABASE_URL): the embedded database belongs to one process',
    );
  }
  const { expandInputs } = await import('../../io/inputs.js');
  const { stat } = await import('node:fs/promises');
  const files = await expandInputs(inputs, cwd);
  if (files.some((f) => f.path === undefined)) {
    throw new CarepipeError('USAGE', 'stdin (-) cannot be shared between workers: give files or folders');
  }
  const units = await Promise.all(
    files.map(async (f) => {
      const info = await stat(f.path!);
      const payload: FilePayload = { source: f.source, size: info.size, mtimeMs: Math.trunc(info.mtimeMs) };
      return { key: f.path!, payload };
    }),
  );
  const knex = db.knex;
  if (options.fullRefresh) {
    await knex('work_items')
      .where({ queue: options.queue })
      .whereIn('status', ['done', 'failed'])
      .update({ status: 'pending', attempts: 0, claimed_by: null, lease_until: null, updated_at: knex.fn.now() });
  }
  // Files that changed since they were done go back to pending.
  for (const u of units) {
    await knex('work_items')
      .where({ queue: options.queue, unit_key: u.key })
      .whereIn('status', ['done', 'failed'])
      .whereRaw('payload <> ?::jsonb', [JSON.stringify(u.payload)])
      .update({ status: 'pending', attempts: 0, payload: JSON.stringify(u.payload), updated_at: knex.fn.now() });
  }
  await enqueue(knex, options.queue, units);
  return units.length;
}

export interface ClaimedFile {
  unit: WorkUnit<FilePayload>;
  /** The file to read, as the user named it. */
  source: string;
  /** Checkpoint handler: records the file done and completes the unit in the batch transaction. */
  onCheckpoint: CheckpointHandler;
  /** Completes the unit when the file produced no checkpoint (it was skipped as already loaded). */
  finish(): Promise<void>;
  /** Gives the unit back after an error. */
  fail(error: Error): Promise<void>;
  /** Stops renewing the lease (the caller's to call: the lease is renewed until then). */
  stop(): void;
}

/**
 * Claims files one after the other until none is left. While other workers still hold claims, it
 * waits (they may die, and their files come back when the lease runs out); it returns when every
 * unit of the queue is done or failed.
 */
export async function* claimFiles(
  knex: Knex,
  ledger: Pick<RunLedger, 'id'>,
  options: QueueOptions & { worker: string; recordFileDone: CheckpointHandler; signal?: AbortSignal; pollMs?: number },
): AsyncGenerator<ClaimedFile> {
  const leaseMs = options.leaseSeconds * 1000;
  const pollMs = options.pollMs ?? Math.min(2000, Math.max(100, leaseMs / 4));
  while (!options.signal?.aborted) {
    const unit = await claim<FilePayload>(knex, options.queue, options.worker, leaseMs);
    if (!unit) {
      const counts = await queueCounts(knex, options.queue);
      if (counts.pending === 0 && counts.claimed === 0) return;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      continue;
    }
    let lost = false;
    const timer = setInterval(() => {
      renew(knex, unit, leaseMs)
        .then((held) => {
          if (!held) lost = true;
        })
        .catch(() => undefined);
    }, leaseMs / 3);
    timer.unref();
    const completeIn = async (trx: Knex.Transaction) => {
      if (lost || !(await complete(trx, unit, ledger.id || null))) {
        throw new CarepipeError('LEASE_LOST', `another worker took over ${unit.payload.source} after this worker's lease ran out`);
      }
    };
    yield {
      unit,
      source: unit.payload.source,
      onCheckpoint: async (trx, checkpoint, runId) => {
        await options.recordFileDone(trx, checkpoint, runId);
        await completeIn(trx);
      },
      finish: async () => {
        // Already done by the checkpoint in the common case; this covers a skipped file.
        await knex.transaction((trx) => complete(trx, unit, ledger.id || null));
      },
      fail: (error: Error) => release(knex, unit, error.message),
      stop: () => clearInterval(timer),
    };
  }
}

/**
 * The engine's read stage over a queue: claims files one after the other and reads each with `readFile`.
 * A file's claim is held (its lease renewed) until the batch holding its checkpoint commits; `settle`,
 * once the run is over, stops every renewal and gives back the files whose checkpoint never committed
 * (an interrupted or failed run), so another worker can take them at once.
 */
export function readQueue(
  knex: Knex,
  ledger: Pick<RunLedger, 'id'>,
  options: QueueOptions & { worker: string; recordFileDone: CheckpointHandler; signal?: AbortSignal },
  readFile: (path: string) => AsyncIterable<FhirItem>,
): { items: AsyncIterable<FhirReadItem>; settle(error?: Error): Promise<void> } {
  const open = new Set<ClaimedFile>();
  async function* items(): AsyncGenerator<FhirReadItem> {
    for await (const file of claimFiles(knex, ledger, options)) {
      open.add(file);
      let checkpointed = false;
      const done = () => {
        file.stop();
        open.delete(file);
      };
      for await (const item of engineItems(readFile(file.unit.unit_key), file.onCheckpoint, done)) {
        if (item.kind === 'checkpoint') checkpointed = true;
        yield item;
      }
      // Skipped as already loaded: nothing of it is being written, so it is done now.
      if (!checkpointed) {
        await file.finish();
        done();
      }
    }
  }
  return {
    items: items(),
    async settle(error?: Error) {
      for (const file of open) {
        file.stop();
        await file.fail(error ?? new Error('the run stopped before this file was loaded')).catch(() => undefined);
      }
      open.clear();
    },
  };
}
