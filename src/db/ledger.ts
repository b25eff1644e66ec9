/**
 * The run ledger: one row per command that touches data (who, when, what, how many rows, outcome),
 * and the rejects table that keeps every bad record with the reason. Secrets never reach either: the
 * arguments are redacted before they get here, and what is written is masked again (src/http/mask.ts).
 */
import os from 'node:os';
import type { Knex } from 'knex';
import { maskText } from '../http/mask.js';
import { processAlive } from '../io/private-temp.js';
import type { RejectReason } from '../pipeline/reasons.js';

/** `interrupted`: stopped by a signal after committing what it had read (exit 130); run again to finish. */
export type RunStatus = 'running' | 'succeeded' | 'partial' | 'failed' | 'interrupted' | 'abandoned';

export interface RunCounts {
  read: number;
  written: number;
  unchanged: number;
  rejected: number;
}

export interface RejectRecord {
  /** File path or URL the record came from. */
  source: string;
  line?: number;
  entry?: number;
  /** A key that identifies the record at its source (a resource id, a row number); no patient identifiers. */
  recordKey?: string;
  field?: string;
  /** From the one closed list (src/pipeline/reasons.ts). */
  reasonCode: RejectReason;
  message: string;
  /** The record verbatim (string) or as parsed (object). */
  raw?: unknown;
  retryable?: boolean;
}

export interface StartRunOptions {
  command: string;
  target?: string;
  /** Already redacted. */
  args: string[];
  user: string;
}

export interface RunRow {
  id: number;
  command: string;
  target: string | null;
  arguments: string[];
  os_user: string;
  host: string;
  pid: number;
  started_at: Date;
  finished_at: Date | null;
  status: RunStatus;
  exit_code: number | null;
  read_count: number;
  written_count: number;
  unchanged_count: number;
  rejected_count: number;
  details: Record<string, unknown>;
  error: string | null;
}

/** The running command's entry in the ledger; counts accumulate in memory and are saved at the end. */
export class RunLedger {
  readonly counts: RunCounts = { read: 0, written: 0, unchanged: 0, rejected: 0 };
  /** Command-specific figures (per resource type, retries, profile …), saved as jsonb. */
  readonly details: Record<string, unknown> = {};

  private constructor(
    private readonly knex: Knex | undefined,
    readonly id: number,
    readonly command: string,
  ) {}

  /** Open a ledger entry. With `dryRun`, nothing is written and the id is 0. */
  static async start(knex: Knex, options: StartRunOptions & { dryRun?: boolean }): Promise<RunLedger> {
    if (options.dryRun) return new RunLedger(undefined, 0, options.command);
    await markAbandoned(knex);
    const [row] = await knex('runs')
      .insert({
        command: options.command,
        // Callers redact flags; masking again here keeps a URL's secrets out whatever the caller did.
        arguments: JSON.stringify(options.args.map(maskText)),
        target: options.target === undefined ? null : maskText(options.target),
        os_user: options.user,
        host: os.hostname(),
        pid: process.pid,
      })
      .returning('id');
    return new RunLedger(knex, Number((row as { id: number }).id), options.command);
  }

  add(counts: Partial<RunCounts>): void {
    for (const [key, value] of Object.entries(counts) as [keyof RunCounts, number][]) this.counts[key] += value;
  }

  /** Increment a numeric figure in `details`, e.g. bump('retries') or bump(['types', 'Patient', 'written']). */
  bump(pathOrKey: string | string[], by = 1): void {
    const keys = Array.isArray(pathOrKey) ? pathOrKey : [pathOrKey];
    let node = this.details as Record<string, unknown>;
    for (const key of keys.slice(0, -1)) {
      node[key] ??= {};
      node = node[key] as Record<string, unknown>;
    }
    const last = keys[keys.length - 1]!;
    node[last] = (Number(node[last]) || 0) + by;
  }

  /**
   * Keep a bad record. Pass the batch transaction when the reject belongs to a batch, so that a batch
   * that rolls back takes its rejects with it and a re-run records them once.
   */
  async reject(record: RejectRecord, trx?: Knex | Knex.Transaction): Promise<void> {
    this.counts.rejected += 1;
    if (!this.knex) return;
    await (trx ?? this.knex)('rejects').insert(rejectRow(this.id, this.command, record));
  }

  async rejectMany(records: RejectRecord[], trx?: Knex | Knex.Transaction): Promise<void> {
    this.counts.rejected += records.length;
    if (!this.knex || records.length === 0) return;
    await (trx ?? this.knex).batchInsert('rejects', records.map((r) => rejectRow(this.id, this.command, r)), 500);
  }

  async finish(status: RunStatus, exitCode: number, error?: string): Promise<void> {
    if (!this.knex) return;
    await this.knex('runs')
      .where({ id: this.id })
      .update({
        finished_at: this.knex.fn.now(),
        status,
        exit_code: exitCode,
        read_count: this.counts.read,
        written_count: this.counts.written,
        unchanged_count: this.counts.unchanged,
        rejected_count: this.counts.rejected,
        details: maskText(JSON.stringify(this.details)),
        error: error === undefined ? null : maskText(error),
      });
  }
}

function rejectRow(runId: number, command: string, r: RejectRecord) {
  return {
    run_id: runId,
    command,
    source: r.source,
    line: r.line ?? null,
    entry: r.entry ?? null,
    record_key: r.recordKey ?? null,
    field: r.field ?? null,
    reason_code: r.reasonCode,
    message: r.message,
    raw: r.raw === undefined ? null : typeof r.raw === 'string' ? r.raw : JSON.stringify(r.raw),
    retryable: r.retryable ?? false,
  };
}

/** Runs on this host whose process is gone were killed: say so instead of leaving them 'running'. */
async function markAbandoned(knex: Knex): Promise<void> {
  const running = await knex('runs').select('id', 'pid').where({ status: 'running', host: os.hostname() });
  const dead = running.filter((r: { pid: number }) => r.pid !== process.pid && !processAlive(r.pid)).map((r: { id: number }) => r.id);
  if (dead.length > 0) {
    await knex('runs').whereIn('id', dead).update({ status: 'abandoned', error: 'the process ended without finishing the run' });
  }
}

export interface ListRunsOptions {
  limit?: number;
  command?: string;
}

export async function listRuns(knex: Knex, options: ListRunsOptions = {}): Promise<RunRow[]> {
  const query = knex<RunRow>('runs').select('*').orderBy('id', 'desc').limit(options.limit ?? 20);
  if (options.command) query.where('command', options.command);
  return query;
}
