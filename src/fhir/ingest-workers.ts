/**
 * `ingest-fhir --workers N`: N carepipe processes on this machine share the input through a work
 * queue in the database (read/queue.ts), each parsing, mapping and writing its own files, so all
 * cores work. This parent only starts them, shows the queue's progress, and adds up their summaries;
 * each worker records its own run in the ledger too. Other hosts can join the same queue with
 * `carepipe ingest-fhir --queue NAME …`.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Database } from '../db/connection.js';
import type { RunLedger } from '../db/ledger.js';
import { queueCounts } from '../db/work-queue.js';
import { CarepipeError, ExitCode } from '../errors.js';
import type { Reporter } from '../pipeline/reporter.js';
import type { Counts as TypeCounts } from '../pipeline/run.js';

export interface WorkerPlan {
  workers: number;
  queue: string;
  /** This command line after `carepipe` (starting with `ingest-fhir`), to give each worker. */
  args: string[];
}

/** A queue name that stays the same for the same inputs, so a rerun finds what is done. */
export function defaultQueueName(inputs: readonly string[], cwd: string): string {
  const resolved = inputs.map((i) => path.resolve(cwd, i)).sort();
  return `ingest-fhir:${createHash('sha256').update(resolved.join('\n')).digest('hex').slice(0, 16)}`;
}

/** The worker's command line: the parent's, without --workers, with the queue and JSON output. */
export function workerArgs(args: readonly string[], queue: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--workers') {
      i++;
      continue;
    }
    if (a.startsWith('--workers=') || a === '--json' || a === '--quiet') continue;
    if (a === '--queue') {
      i++;
      continue;
    }
    if (a.startsWith('--queue=')) continue;
    out.push(a);
  }
  return [...out, '--queue', queue, '--json'];
}

interface WorkerSummary {
  run_id: number | null;
  exit_code: number;
  counts: { read: number; written: number; unchanged: number; rejected: number };
  types?: Record<string, TypeCounts>;
  files?: { loaded: number; skipped: number };
  partial_dates?: number;
}

export async function runWorkers(
  plan: WorkerPlan,
  deps: { db: Database; ledger: RunLedger; reporter: Reporter; signal: AbortSignal; env: NodeJS.ProcessEnv; cwd: string },
): Promise<{ human: string; summary: Record<string, unknown>; exitCode: number }> {
  const { db, ledger, reporter } = deps;
  if (db.kind === 'pglite') {
    throw new CarepipeError('USAGE', '--workers needs a Postgres server (DATABASE_URL): the embedded database belongs to one process');
  }
  const bin = process.argv[1]!;
  await reporter.start(`ingest-fhir: ${plan.workers} workers on queue ${plan.queue}`);
  const children = Array.from({ length: plan.workers }, (_, index) => {
    const child = spawn(process.execPath, [bin, ...workerArgs(plan.args, plan.queue)], {
      env: deps.env,
      cwd: deps.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderrTail = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderrTail = (stderrTail + d).slice(-4000);
    });
    const done = new Promise<{ index: number; code: number; stdout: string; stderr: string }>((resolve) => {
      child.on('close', (code, signal) => resolve({ index, code: code ?? (signal ? 128 : ExitCode.INTERNAL), stdout, stderr: stderrTail }));
    });
    return { child, done };
  });
  const stopChildren = () => children.forEach(({ child }) => child.kill('SIGTERM'));
  deps.signal.addEventListener('abort', stopChildren, { once: true });
  const ticker = setInterval(() => {
    queueCounts(db.knex, plan.queue)
      .then((c) => {
        const total = c.pending + c.claimed + c.done + c.failed;
        reporter.progress(`ingest-fhir: ${c.done}/${total} files done, ${c.claimed} in progress`, { files_done: c.done, files: total, in_progress: c.claimed });
      })
      .catch(() => undefined);
  }, 1000);
  let results;
  try {
    results = await Promise.all(children.map((c) => c.done));
  } finally {
    clearInterval(ticker);
    deps.signal.removeEventListener('abort', stopChildren);
  }

  const types: Record<string, TypeCounts> = {};
  const files = { loaded: 0, skipped: 0 };
  let partialDates = 0;
  const workerRuns: (number | null)[] = [];
  let exitCode: number = ExitCode.OK;
  for (const r of results) {
    const summary = parseSummary(r.stdout);
    if (summary) {
      workerRuns.push(summary.run_id);
      ledger.add({ read: summary.counts.read, written: summary.counts.written, unchanged: summary.counts.unchanged });
      ledger.counts.rejected += summary.counts.rejected;
      for (const [type, c] of Object.entries(summary.types ?? {})) {
        const t = (types[type] ??= { read: 0, written: 0, unchanged: 0, rejected: 0, deleted: 0 });
        for (const k of Object.keys(t) as (keyof TypeCounts)[]) t[k] += c[k] ?? 0;
      }
      files.loaded += summary.files?.loaded ?? 0;
      files.skipped += summary.files?.skipped ?? 0;
      partialDates += summary.partial_dates ?? 0;
    }
    if (r.code !== ExitCode.OK && r.code !== ExitCode.REJECTS) {
      reporter.warn('worker failed', { worker: r.index + 1, exit_code: r.code, message: errorLine(r.stderr) });
      exitCode = Math.max(exitCode, r.code);
    }
  }
  const counts = await queueCounts(db.knex, plan.queue);
  ledger.details.queue = plan.queue;
  ledger.details.worker_runs = workerRuns;
  ledger.details.types = types;
  ledger.details.files = files;
  ledger.details.partial_dates = partialDates;
  if (counts.failed > 0) {
    reporter.warn('files failed', { message: `${counts.failed} files failed after repeated attempts: see work_items.last_error` });
    exitCode = Math.max(exitCode, ExitCode.UNREACHABLE);
  }
  const human =
    `${plan.workers} workers, queue ${plan.queue}: ${counts.done} files done, ${counts.failed} failed\n` +
    `resources: ${ledger.counts.read} read, ${ledger.counts.written} written, ${ledger.counts.unchanged} unchanged, ${ledger.counts.rejected} rejected\n` +
    (partialDates > 0 ? `partial dates: ${partialDates}, stored as the first instant of their period\n` : '');
  return {
    human,
    summary: { workers: plan.workers },
    exitCode: exitCode === ExitCode.OK && ledger.counts.rejected > 0 ? ExitCode.REJECTS : exitCode,
  };
}

function parseSummary(stdout: string): WorkerSummary | undefined {
  const lines = stdout.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      const parsed = JSON.parse(line) as WorkerSummary;
      if (parsed && typeof parsed === 'object' && 'counts' in parsed) return parsed;
    } catch {
      // not the summary line
    }
  }
  return undefined;
}

/** The worker's error as it printed it: its last JSON error line, else the first line of a stack. */
function errorLine(text: string): string {
  const lines = text.trim().split('\n');
  for (const line of [...lines].reverse()) {
    try {
      const parsed = JSON.parse(line) as { level?: string; message?: string };
      if (parsed.level === 'error' && parsed.message) return parsed.message;
    } catch {
      // not a JSON line
    }
  }
  return lines.find((l) => /error/i.test(l)) ?? lines[lines.length - 1] ?? '';
}
