/**
 * The engine every ingest command runs on: a reader yields records with where they came from, a pure
 * mapper turns each into a row or a reject, a writer takes a batch inside the engine's transaction.
 * The engine owns what the stages must not each do their own way:
 *
 * - **Batching with back-pressure.** A batch ends at `batchSize` items, at `batchWeight` (the mappers'
 *   weights, e.g. characters of JSON), at a checkpoint, or when a key already in it comes again (two
 *   copies of a record never meet in one statement: the first copy is committed first). One batch is
 *   being written while the next waits mapped behind it and a third is being read; no more are held,
 *   so memory does not grow with the input.
 * - **One transaction per batch** ({@link inRunTransaction}, so history names the run): the rows, the
 *   batch's rejects and the checkpoints that close it commit together or not at all. A value Postgres
 *   refuses (SQLSTATE class 22) is found by halving the batch and rejected alone (`DATABASE_REFUSED`).
 * - **The dry run**: always one transaction around the whole run, rolled back at the end, so the
 *   counts are the real ones and nothing is kept. Stages see it as `ctx.q`.
 * - **Interruption**: when the signal fires the engine stops reading, commits what it has read and
 *   throws `INTERRUPTED` (exit 130). Every committed batch is kept; the same command run again finishes.
 * - **Rejects** (one closed list of codes, src/pipeline/reasons.ts), **the ledger counts** (updated as
 *   each batch commits, so an interrupted run's ledger says what was kept) and **progress**.
 */
import type { Knex } from 'knex';
import type { RejectRecord, RunLedger } from '../db/ledger.js';
import { inRunTransaction } from '../db/transaction.js';
import { CarepipeError, formatLocation } from '../errors.js';
import type { RejectReason } from './reasons.js';
import type { Fields, Reporter } from './reporter.js';

/** Where a record is in its source: enough to find it, never its contents. */
export interface Location {
  /** File path or URL. */
  source: string;
  line?: number;
  entry?: number;
}

/** Why a record is refused, and what of it to keep in `rejects`. */
export interface RejectInfo {
  reason: RejectReason;
  /** Says what is wrong without quoting patient data. */
  message: string;
  field?: string;
  /** The record's key at its source (a resource id, a clinician key): no patient identifiers. */
  key?: string;
  /** The record verbatim (string) or as parsed; kept in `rejects.raw` for a later fix or retry. */
  raw?: unknown;
  /** A later run may load it (an appointment waiting for its patient). */
  retryable?: boolean;
  /** The count bucket (e.g. a resource type) the reject is counted in. */
  group?: string;
}

/** What a reader yields. */
export type ReadItem<R, C = never> =
  | { kind: 'record'; record: R; at: Location }
  /** The reader could not make a record of this part of the input (bad JSON, invalid UTF-8, …). */
  | { kind: 'invalid'; at: Location; reject: RejectInfo }
  /** A point the reader can resume from: it closes the batch and is written in that batch's transaction. */
  | { kind: 'checkpoint'; state: C };

/** A mapper's answer: a value to write, or a reject. */
export type MapResult<T> =
  | {
      ok: true;
      value: T;
      /** The record's identity: a second record with the same key starts a new batch. */
      key?: string;
      /** The count bucket (e.g. a resource type). */
      group?: string;
      /** Counts against `batchWeight` (e.g. characters of JSON). */
      weight?: number;
      /** What to keep in `rejects.raw` should the writer or the database refuse the value. */
      raw?: unknown;
    }
  | ({ ok: false } & RejectInfo);

export interface BatchItem<T> {
  value: T;
  at: Location;
  key?: string;
  group?: string;
  raw?: unknown;
}

export interface Batch<T, C> {
  items: BatchItem<T>[];
  checkpoints: C[];
}

/**
 * What became of one item of a batch, in the order of `batch.items`. `skipped`: nothing, and it is
 * not this run's to count (a record retried from an earlier run's rejects that still waits): no figure,
 * not even `read`.
 */
export type Outcome = 'written' | 'unchanged' | 'deleted' | 'skipped' | { reject: RejectInfo };

export interface WriteResult {
  outcomes: Outcome[];
  /** Called once the batch has committed (figures a writer keeps beyond the outcomes). */
  committed?: () => void;
}

/** What the stages see of the run. */
export interface StageContext {
  /** The dry run's transaction, else the database: what readers and `prepare` query. */
  q: Knex | Knex.Transaction;
  /** The ledger's run, or null in a dry run (rows it writes, then rolls back, name no run). */
  runId: number | null;
  dryRun: boolean;
  signal: AbortSignal;
}

export interface Counts {
  read: number;
  written: number;
  unchanged: number;
  deleted: number;
  rejected: number;
}

export interface RunSummary extends Counts {
  /** Counts per group (e.g. resource type), when the mapper names groups. */
  groups: Record<string, Counts>;
  batches: number;
  checkpoints: number;
  /** Rows written by `finish`. */
  finished: number;
  elapsedMs: number;
}

export interface Pipeline<R, T, C = never> {
  /** For progress lines, e.g. `ingest-appointments`. */
  name: string;
  read(ctx: StageContext): AsyncIterable<ReadItem<R, C>>;
  /** Pure: the same record gives the same answer. */
  map(record: R, at: Location): MapResult<T>;
  /** Writes a batch inside the engine's transaction and says what became of each item. */
  write(trx: Knex.Transaction, batch: Batch<T, C>, ctx: StageContext): Promise<WriteResult>;
  /** Before reading, in the dry run's transaction when there is one (create tables, load state). */
  prepare?(ctx: StageContext): Promise<void>;
  /** Once, after every batch of a complete read, in a transaction of its own; returns rows written. */
  finish?(trx: Knex.Transaction, summary: RunSummary, ctx: StageContext): Promise<number>;
  /** Statements run first in each batch transaction (e.g. `set local …`). */
  begin?(trx: Knex.Transaction): Promise<void>;
  /** Items per batch, at most. */
  batchSize: number;
  /** Sum of the mappers' weights after which a batch ends, whatever its count. */
  batchWeight?: number;
  /** Progress text and fields, when the default (`name: N read, …`) is not the right words. */
  describe?(summary: RunSummary): { text: string; fields: Fields };
}

export interface RunOptions {
  knex: Knex;
  ledger: RunLedger;
  signal: AbortSignal;
  dryRun: boolean;
  reporter?: Reporter;
  /** Rejects told on stderr one by one before the rest are left to the rejects table. */
  rejectLines?: number;
  /** Key of `ledger.details` for the per-group counts (e.g. `types`); none when unset. */
  groupsDetail?: string;
}

const DEFAULT_REJECT_LINES = 20;
/** Longest stretch of reading and mapping before the event loop gets a turn (the write waits for it). */
const YIELD_EVERY_MS = 2;

interface Pending<T, C> {
  items: BatchItem<T>[];
  keys: Set<string>;
  weight: number;
  rejects: { at: Location; reject: RejectInfo }[];
  checkpoints: C[];
}

const emptyCounts = (): Counts => ({ read: 0, written: 0, unchanged: 0, deleted: 0, rejected: 0 });

/**
 * Runs the pipeline to the end and returns its counts; throws `INTERRUPTED` (after committing what was
 * read) when the signal fires, and the reader's or writer's error when one fails (committed batches stay).
 */
export async function run<R, T, C = never>(pipeline: Pipeline<R, T, C>, options: RunOptions): Promise<RunSummary> {
  const { knex, ledger, signal } = options;
  const dryRunTrx = options.dryRun ? await knex.transaction() : undefined;
  const ctx: StageContext = { q: dryRunTrx ?? knex, runId: dryRunTrx ? null : ledger.id || null, dryRun: options.dryRun, signal };
  try {
    return await runIn(pipeline, options, ctx);
  } finally {
    await dryRunTrx?.rollback().catch(() => undefined);
  }
}

async function runIn<R, T, C>(pipeline: Pipeline<R, T, C>, options: RunOptions, ctx: StageContext): Promise<RunSummary> {
  const { ledger, signal, reporter } = options;
  const started = Date.now();
  const summary: RunSummary = { ...emptyCounts(), groups: {}, batches: 0, checkpoints: 0, finished: 0, elapsedMs: 0 };
  const groupOf = (name: string | undefined) => (name === undefined ? undefined : (summary.groups[name] ??= emptyCounts()));
  if (options.groupsDetail) ledger.details[options.groupsDetail] = summary.groups;
  const rejectLines = options.rejectLines ?? DEFAULT_REJECT_LINES;
  let told = 0;

  const transact = <V>(work: (trx: Knex.Transaction) => Promise<V>): Promise<V> =>
    inRunTransaction(ctx.q as Knex, ledger, async (trx) => {
      await pipeline.begin?.(trx);
      return work(trx);
    });

  const tell = (r: RejectRecord) => {
    if (!reporter) return;
    if (told < rejectLines) {
      const where = formatLocation({ file: r.source, line: r.line, entry: r.entry, record: r.recordKey, field: r.field });
      reporter.warn('rejected', { message: `${where}: ${r.reasonCode}: ${r.message}`, reason: r.reasonCode });
    } else if (told === rejectLines) {
      reporter.warn('rejected', { message: 'more rejects: see the rejects table (carepipe runs, or select … from rejects)' });
    }
    told += 1;
  };

  /** Commits a batch; a value the database refuses is found by halving and rejected alone. */
  async function commit(batch: Pending<T, C>): Promise<void> {
    const rejectedBefore = ledger.counts.rejected;
    let result: { write: WriteResult; rejects: { at: Location; reject: RejectInfo }[] };
    try {
      result = await transact(async (trx) => {
        const write = batch.items.length > 0 || batch.checkpoints.length > 0
          ? await pipeline.write(trx, { items: batch.items, checkpoints: batch.checkpoints }, ctx)
          : { outcomes: [] };
        const rejects = [...batch.rejects];
        write.outcomes.forEach((o, i) => {
          if (typeof o !== 'object') return;
          const item = batch.items[i]!;
          rejects.push({ at: item.at, reject: { group: item.group, key: item.key, raw: item.raw, ...o.reject } });
        });
        // In source order, whichever stage refused them.
        rejects.sort((a, b) => (a.at.entry ?? a.at.line ?? 0) - (b.at.entry ?? b.at.line ?? 0));
        await ledger.rejectMany(rejects.map(toRejectRecord), trx);
        return { write, rejects };
      });
    } catch (err) {
      // rejectMany counted the rejects of the batch that rolled back; they count again on retry.
      ledger.counts.rejected = rejectedBefore;
      if (!isDataException(err) || batch.items.length === 0) throw err;
      if (batch.items.length === 1) {
        const [item] = batch.items;
        const reject: RejectInfo = {
          reason: 'DATABASE_REFUSED',
          message: `the database refused a value (SQLSTATE ${(err as { code: string }).code})`,
          key: item!.key,
          group: item!.group,
          raw: item!.raw,
        };
        return commit({ ...batch, items: [], keys: new Set(), rejects: [...batch.rejects, { at: item!.at, reject }] });
      }
      const half = Math.ceil(batch.items.length / 2);
      await commit({ items: batch.items.slice(0, half), keys: new Set(), weight: 0, rejects: [], checkpoints: [] });
      await commit({ items: batch.items.slice(half), keys: new Set(), weight: 0, rejects: batch.rejects, checkpoints: batch.checkpoints });
      return;
    }
    // Counted once committed: an interrupted run's figures are what it kept.
    const counted = emptyCounts();
    const bump = (group: string | undefined, k: keyof Counts) => {
      counted[k] += 1;
      const g = groupOf(group);
      if (g) g[k] += 1;
    };
    for (const r of batch.rejects) bump(r.reject.group, 'read');
    result.write.outcomes.forEach((o, i) => {
      if (o === 'skipped') return;
      const group = batch.items[i]!.group;
      bump(group, 'read');
      if (typeof o === 'string') bump(group, o);
    });
    for (const r of result.rejects) {
      const g = groupOf(r.reject.group);
      if (g) g.rejected += 1;
      counted.rejected += 1;
      tell(toRejectRecord(r));
    }
    for (const k of Object.keys(counted) as (keyof Counts)[]) summary[k] += counted[k];
    // A delete is a write for the ledger's totals.
    ledger.add({ read: counted.read, written: counted.written + counted.deleted, unchanged: counted.unchanged });
    summary.batches += 1;
    summary.checkpoints += batch.checkpoints.length;
    result.write.committed?.();
    summary.elapsedMs = Date.now() - started;
    if (reporter) {
      const { text, fields } = pipeline.describe?.(summary) ?? describe(pipeline.name, summary);
      reporter.progress(text, fields);
    }
  }

  let pending = newPending<T, C>();
  let inflight: Promise<void> = Promise.resolve();
  let beforeInflight: Promise<void> = Promise.resolve();
  /** Hands the batch to the writer and waits for the one two before it (see the header). */
  async function flush(): Promise<void> {
    if (pending.items.length === 0 && pending.rejects.length === 0 && pending.checkpoints.length === 0) return;
    const full = pending;
    pending = newPending();
    const previous = inflight;
    const twoBefore = beforeInflight;
    beforeInflight = previous;
    inflight = previous.then(() => commit(full));
    // Awaited at the next flush or at the end; this only keeps Node from calling it unhandled meanwhile.
    inflight.catch(() => undefined);
    await twoBefore;
  }

  await pipeline.prepare?.(ctx);
  const batchSize = Math.max(1, pipeline.batchSize);
  const batchWeight = pipeline.batchWeight ?? Number.POSITIVE_INFINITY;
  let interrupted = signal.aborted;
  try {
    let turn = performance.now();
    for await (const item of interrupted ? [] : pipeline.read(ctx)) {
      if (performance.now() - turn > YIELD_EVERY_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        turn = performance.now();
      }
      if (item.kind === 'record') {
        const mapped = pipeline.map(item.record, item.at);
        if (mapped.ok) {
          if (mapped.key !== undefined && pending.keys.has(mapped.key)) await flush();
          pending.items.push({ value: mapped.value, at: item.at, key: mapped.key, group: mapped.group, raw: mapped.raw });
          if (mapped.key !== undefined) pending.keys.add(mapped.key);
          pending.weight += mapped.weight ?? 0;
        } else {
          const { ok: _ok, ...reject } = mapped;
          pending.rejects.push({ at: item.at, reject });
        }
      } else if (item.kind === 'invalid') {
        pending.rejects.push({ at: item.at, reject: item.reject });
      } else {
        pending.checkpoints.push(item.state);
        await flush();
      }
      if (pending.items.length + pending.rejects.length >= batchSize || pending.weight >= batchWeight) await flush();
      if (signal.aborted) {
        interrupted = true;
        break;
      }
    }
  } catch (err) {
    if (!signal.aborted) {
      // The reader failed (a source gave up): the batch being committed is whole, let it finish.
      await inflight.catch(() => undefined);
      throw err;
    }
    interrupted = true;
  }
  // What was read is committed, interrupted or not.
  await flush();
  await inflight;
  summary.elapsedMs = Date.now() - started;
  if (interrupted) {
    throw new CarepipeError(
      'INTERRUPTED',
      `interrupted after ${summary.read} records; every committed batch is kept, run the same command again to finish`,
    );
  }
  if (pipeline.finish) {
    summary.finished = await transact((trx) => pipeline.finish!(trx, summary, ctx));
    summary.written += summary.finished;
    ledger.add({ written: summary.finished });
  }
  summary.elapsedMs = Date.now() - started;
  return summary;
}

function newPending<T, C>(): Pending<T, C> {
  return { items: [], keys: new Set(), weight: 0, rejects: [], checkpoints: [] };
}

function toRejectRecord({ at, reject }: { at: Location; reject: RejectInfo }): RejectRecord {
  return {
    source: at.source,
    line: at.line,
    entry: at.entry,
    recordKey: reject.key,
    field: reject.field,
    reasonCode: reject.reason,
    message: reject.message,
    raw: reject.raw,
    retryable: reject.retryable,
  };
}

function describe(name: string, s: RunSummary): { text: string; fields: Fields } {
  const rate = s.elapsedMs > 0 ? Math.round((s.read * 1000) / s.elapsedMs) : 0;
  return {
    text: `${name}: ${s.read} read, ${s.written + s.deleted} written, ${s.unchanged} unchanged${s.rejected ? `, ${s.rejected} rejected` : ''}, ${rate}/s`,
    fields: { read: s.read, written: s.written + s.deleted, unchanged: s.unchanged, rejected: s.rejected, per_second: rate },
  };
}

/** SQLSTATE class 22 (data exception): a value Postgres cannot take, e.g. a NUL character in text. */
export function isDataException(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('22');
}
