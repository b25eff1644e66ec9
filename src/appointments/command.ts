/**
 * `ingest-appointments` on the engine: export files → rules → `patients` and `appointments`, one
 * transaction per batch. Patient files load first, then appointments that were waiting for their
 * patient are retried, then appointment files; last, after a complete read, appointments still active
 * after their end are marked missed. Also `appointments refresh-missed` and the run clock.
 */
import { existsSync, statSync } from 'node:fs';
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import type { RunLedger } from '../db/ledger.js';
import { inRunTransaction } from '../db/transaction.js';
import type { Lang } from '../i18n/catalogue.js';
import { appointmentMessage } from '../i18n/appointments.js';
import type { Reporter } from '../pipeline/reporter.js';
import { run, type Pipeline } from '../pipeline/run.js';
import { mapExportRecord, type ExportRow } from './map.js';
import { countWaiting, INGEST_COMMAND, readExports, type ExportRecord, type FileKind } from './read.js';
import { markMissed, writeBatch } from './write.js';
import { parseOffsetTimestamp } from './rules.js';

export interface IngestOptions {
  files: string[];
  /** The run's clock: what "missed" is measured against. */
  now: Date;
  lang: Lang;
  batchSize: number;
  dryRun: boolean;
  signal: AbortSignal;
}

/** What the command reports besides the ledger counts. */
export interface IngestSummary {
  files: { file: string; kind: FileKind }[];
  patients: { written: number; unchanged: number };
  appointments: { written: number; unchanged: number };
  /** Appointments marked missed by this run (as they were written, or at its end). */
  missed: number;
  /** Earlier unknown-patient rejects loaded (or settled) by this run. */
  resolved: number;
  /** Appointments still waiting for their patient after this run. */
  pending: number;
}

export interface IngestDeps {
  knex: Knex;
  ledger: RunLedger;
  /** Progress and one warn line per reject. */
  reporter?: Reporter;
}

/**
 * Load the files on the engine (src/pipeline/run.ts): `readExports` → `mapExportRecord` → `writeBatch`,
 * then, after a complete read, appointments still active after their end are marked missed. With
 * `dryRun` everything runs as usual (rules, unknown patients, reinstatements, counts) in the engine's
 * one rolled-back transaction, so the figures are the real ones.
 */
export async function ingestAppointments(options: IngestOptions, deps: IngestDeps): Promise<IngestSummary> {
  for (const file of options.files) {
    if (!existsSync(file) || !statSync(file).isFile()) {
      throw new CarepipeError('INPUT_NOT_FOUND', appointmentMessage(options.lang, 'INPUT_NOT_FOUND', { file }), { file });
    }
  }
  const { ledger } = deps;
  const { lang, now } = options;
  const summary: IngestSummary = {
    files: [],
    patients: { written: 0, unchanged: 0 },
    appointments: { written: 0, unchanged: 0 },
    missed: 0,
    resolved: 0,
    pending: 0,
  };
  const pipeline: Pipeline<ExportRecord, ExportRow, string> = {
    name: INGEST_COMMAND,
    batchSize: options.batchSize,
    read: (ctx) =>
      readExports({ files: options.files, lang, pageSize: options.batchSize, onFile: (file, kind) => summary.files.push({ file, kind }) }, ctx.q),
    map: (record) => mapExportRecord(record, now, lang),
    async write(trx, batch, ctx) {
      const { outcomes, figures } = await writeBatch(trx, batch, { runId: ctx.runId, lang });
      return {
        outcomes,
        committed: () => {
          summary.missed += figures.missed;
          summary.resolved += figures.resolved;
        },
      };
    },
    async finish(trx, _summary, ctx) {
      const marked = await markMissed(trx, now, ctx.runId);
      summary.missed += marked;
      // Counted here, in the run's transaction: a dry run's figure is the one a real run would leave.
      summary.pending = await countWaiting(trx);
      return marked;
    },
  };
  const result = await run(pipeline, { knex: deps.knex, ledger, signal: options.signal, dryRun: options.dryRun, reporter: deps.reporter });
  for (const kind of ['patients', 'appointments'] as const) {
    const counts = result.groups[kind];
    summary[kind] = { written: counts?.written ?? 0, unchanged: counts?.unchanged ?? 0 };
  }
  ledger.details.patients = summary.patients;
  ledger.details.appointments = summary.appointments;
  ledger.details.missed = summary.missed;
  ledger.details.resolved = summary.resolved;
  ledger.details.pending = summary.pending;
  return summary;
}

/** `appointments refresh-missed`: mark missed every appointment still active after its end as of `now`. */
export async function refreshMissed(knex: Knex, ledger: RunLedger, now: Date, dryRun: boolean): Promise<number> {
  if (dryRun) {
    const [row] = await knex('appointments')
      .where('status', 'active')
      .whereRaw(`starts_at + duration * interval '1 minute' < ?`, [now])
      .count<{ n: number }[]>({ n: '*' });
    return Number(row?.n ?? 0);
  }
  const missed = await inRunTransaction(knex, ledger, (trx) => markMissed(trx, now, ledger.id));
  ledger.add({ written: missed });
  ledger.details.missed = missed;
  return missed;
}

/**
 * The run clock: `--now` or CAREPIPE_NOW when given (tests and replays fix it), else the real time.
 * It must carry an offset like every other timestamp.
 */
export function parseRunClock(value: string | undefined, lang: Lang, fallback: () => Date): Date {
  if (value === undefined || value === '') return fallback();
  const parsed = parseOffsetTimestamp(value);
  if (!parsed.ok) throw new CarepipeError('USAGE', appointmentMessage(lang, 'NOW_INVALID'), { field: '--now' });
  return parsed.value;
}
