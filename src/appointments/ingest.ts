/**
 * `ingest-appointments`: export files → rules → `patients` and `appointments`, one transaction per
 * batch. Patient files load first, then appointments that were waiting for their patient are retried,
 * then appointment files; last, appointments still active after their end are marked missed.
 */
import { existsSync, statSync } from 'node:fs';
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import type { RejectRecord, RunLedger } from '../db/ledger.js';
import { inRunTransaction } from '../db/transaction.js';
import type { Lang } from '../i18n/catalogue.js';
import { appointmentMessage } from '../i18n/appointments.js';
import { mapAppointment, mapPatient, type AppointmentRow, type Issue, type Mapped, type PatientRow } from '../mappers/appointments.js';
import { detectExportKind, readExportRecords, type ExportKind } from '../readers/appointment-export.js';
import { RejectReasons as ReasonCodes } from '../pipeline/reasons.js';
import { MAX_JSON_DEPTH } from '../io/json-limits.js';
import { markMissed, writeAppointments, writePatients, type WriteContext } from '../writers/appointments.js';
import { parseOffsetTimestamp, type ReasonCode } from './rules.js';

export const INGEST_COMMAND = 'ingest-appointments';

export interface IngestOptions {
  files: string[];
  /** The run's clock: what "missed" is measured against. */
  now: Date;
  lang: Lang;
  batchSize: number;
  dryRun: boolean;
  signal?: AbortSignal;
}

/** What the command reports besides the ledger counts. */
export interface IngestSummary {
  files: { file: string; kind: ExportKind | 'empty' | 'unknown' | 'invalid' }[];
  patients: { written: number; unchanged: number };
  appointments: { written: number; unchanged: number };
  /** Appointments marked missed at the end of the run. */
  missed: number;
  /** Earlier unknown-patient rejects loaded (or settled) by this run. */
  resolved: number;
  /** Appointments still waiting for their patient after this run. */
  pending: number;
}

export interface IngestDeps {
  knex: Knex;
  ledger: RunLedger;
  /** Told about each reject as it happens (one warn line per record). */
  onReject?: (reject: RejectRecord) => void;
}

interface SourceRecord {
  entry: number;
  value: unknown;
}

class DryRunRollback extends Error {}

/**
 * Load the files. With `dryRun` everything runs as usual (rules, unknown patients, reinstatements,
 * counts) inside one transaction that is rolled back at the end, so the figures are the real ones.
 */
export async function ingestAppointments(options: IngestOptions, deps: IngestDeps): Promise<IngestSummary> {
  for (const file of options.files) {
    if (!existsSync(file) || !statSync(file).isFile()) {
      throw new CarepipeError('INPUT_NOT_FOUND', appointmentMessage(options.lang, 'INPUT_NOT_FOUND', { file }), { file });
    }
  }
  if (!options.dryRun) return ingest(options, deps);
  let summary: IngestSummary | undefined;
  try {
    await deps.knex.transaction(async (trx) => {
      summary = await ingest(options, { ...deps, knex: trx });
      throw new DryRunRollback();
    });
  } catch (err) {
    if (!(err instanceof DryRunRollback)) throw err;
  }
  return summary!;
}

async function ingest(options: IngestOptions, deps: IngestDeps): Promise<IngestSummary> {
  const { knex, ledger } = deps;
  const { lang, now } = options;
  // A dry run's ledger has no row (id 0): rows it writes, then rolls back, name no run.
  const runId = ledger.id || null;
  const summary: IngestSummary = {
    files: [],
    patients: { written: 0, unchanged: 0 },
    appointments: { written: 0, unchanged: 0 },
    missed: 0,
    resolved: 0,
    pending: 0,
  };

  const reject = async (records: RejectRecord[], trx?: Knex.Transaction) => {
    if (records.length === 0) return;
    await ledger.rejectMany(records, trx);
    for (const r of records) deps.onReject?.(r);
  };
  const describe = (issues: Issue[]) =>
    issues.map((i) => `${i.field ? `${i.field}: ` : ''}${appointmentMessage(lang, i.code, i.params)}`).join('; ');
  const issueReject = (source: string, entry: number | undefined, value: unknown, kind: ExportKind, issues: Issue[]): RejectRecord => ({
    source,
    entry,
    recordKey: kind === 'appointments' ? appointmentKey(value) : undefined,
    field: issues[0]?.field,
    reasonCode: issues[0]!.code,
    message: describe(issues),
    raw: value,
  });
  const refusalReject = (source: string, entry: number | undefined, value: unknown, code: ReasonCode, params: Record<string, string> | undefined, retryable: boolean): RejectRecord => ({
    source,
    entry,
    recordKey: appointmentKey(value),
    field: code === 'PATIENT_UNKNOWN' ? 'patient' : 'status',
    reasonCode: code,
    // Word the refused status as the source gave it (`active`), not as derived (`missed`).
    message: appointmentMessage(lang, code, { ...params, ...sourceStatus(value) }),
    raw: value,
    retryable,
  });

  // Sort the files by what they hold: patients first, so appointments find their patient.
  const byKind: Record<ExportKind, string[]> = { patients: [], appointments: [] };
  for (const file of options.files) {
    const detected = await detectExportKind(file);
    summary.files.push({ file, kind: detected.kind });
    if (detected.kind === 'patients' || detected.kind === 'appointments') byKind[detected.kind].push(file);
    else if (detected.kind === 'invalid' && detected.reasonCode === ReasonCodes.INVALID_UTF8) {
      await reject([{ source: file, line: detected.line, reasonCode: ReasonCodes.INVALID_UTF8, message: appointmentMessage(lang, 'INVALID_UTF8', { line: detected.line ?? 1 }) }]);
    } else if (detected.kind === 'invalid') {
      await reject([{ source: file, reasonCode: 'FILE_INVALID', message: appointmentMessage(lang, 'FILE_INVALID', { detail: detected.detail }) }]);
    } else if (detected.kind === 'unknown') {
      await reject([{ source: file, entry: 0, reasonCode: 'FILE_KIND_UNKNOWN', message: appointmentMessage(lang, 'FILE_KIND_UNKNOWN') }]);
    }
  }

  const writeContext = (source: string): WriteContext => ({ source, runId });

  const flush = async (file: string, kind: ExportKind, batch: SourceRecord[]) => {
    const rejects: RejectRecord[] = [];
    const rows: { entry: number; value: unknown; row: PatientRow | AppointmentRow }[] = [];
    for (const { entry, value } of batch) {
      const mapped: Mapped<PatientRow | AppointmentRow> = kind === 'patients' ? mapPatient(value, now) : mapAppointment(value, now);
      if (mapped.ok) rows.push({ entry, value, row: mapped.row });
      else rejects.push(issueReject(file, entry, value, kind, mapped.issues));
    }
    const result = await inRunTransaction(knex, ledger, async (trx) => {
      if (kind === 'patients') {
        const written = await writePatients(trx, rows.map((r) => r.row as PatientRow), writeContext(file));
        await reject(rejects, trx);
        return written;
      }
      const written = await writeAppointments(trx, rows.map((r) => r.row as AppointmentRow), writeContext(file));
      summary.missed += markedMissed(rows, written.writtenIds);
      for (const refusal of written.refused) {
        const source = rows[refusal.index]!;
        rejects.push(refusalReject(file, source.entry, source.value, refusal.code, refusal.params, refusal.retryable));
      }
      // In file order, whichever stage refused them.
      rejects.sort((a, b) => (a.entry ?? 0) - (b.entry ?? 0));
      await reject(rejects, trx);
      return written;
    });
    summary[kind].written += result.written;
    summary[kind].unchanged += result.unchanged;
    ledger.add({ written: result.written, unchanged: result.unchanged });
  };

  const loadFile = async (file: string, kind: ExportKind) => {
    let batch: SourceRecord[] = [];
    for await (const item of readExportRecords(file, options.signal)) {
      if (item.kind === 'invalid' && item.reasonCode === ReasonCodes.TOO_DEEP) {
        ledger.add({ read: 1 });
        await reject([{ source: file, entry: item.entry, reasonCode: ReasonCodes.TOO_DEEP, message: appointmentMessage(lang, 'TOO_DEEP', { limit: MAX_JSON_DEPTH }) }]);
        continue;
      }
      if (item.kind === 'invalid' && item.reasonCode === ReasonCodes.INVALID_UTF8) {
        const line = item.line ?? 1;
        await reject([{ source: file, line, reasonCode: ReasonCodes.INVALID_UTF8, message: appointmentMessage(lang, 'INVALID_UTF8', { line }) }]);
        break;
      }
      if (item.kind === 'invalid') {
        await reject([{ source: file, entry: item.entry, reasonCode: 'FILE_INVALID', message: appointmentMessage(lang, 'FILE_INVALID', { detail: item.detail }) }]);
        break;
      }
      ledger.add({ read: 1 });
      batch.push({ entry: item.entry, value: item.value });
      if (batch.length >= options.batchSize) {
        await flush(file, kind, batch);
        batch = [];
      }
    }
    if (batch.length > 0) await flush(file, kind, batch);
  };

  for (const file of byKind.patients) {
    if (options.signal?.aborted) break;
    await loadFile(file, 'patients');
  }
  const retried = await retryWaitingAppointments(options, deps, refusalReject, issueReject, reject);
  summary.resolved = retried.settled;
  summary.appointments.written += retried.written;
  summary.appointments.unchanged += retried.unchanged;
  summary.missed += retried.missed;
  for (const file of byKind.appointments) {
    if (options.signal?.aborted) break;
    await loadFile(file, 'appointments');
  }
  const markedAtEnd = await inRunTransaction(knex, ledger, (trx) => markMissed(trx, now, runId));
  summary.missed += markedAtEnd;
  ledger.add({ written: markedAtEnd });
  summary.pending = await countWaiting(knex);
  ledger.details.patients = summary.patients;
  ledger.details.appointments = summary.appointments;
  ledger.details.missed = summary.missed;
  ledger.details.resolved = summary.resolved;
  ledger.details.pending = summary.pending;
  return summary;
}

/**
 * Appointments this run marked missed as it wrote them: the source said `active`, the mapper derived
 * `missed` from the run clock, and the row was written (an unchanged copy was marked by an earlier run).
 */
function markedMissed(rows: { value: unknown; row: PatientRow | AppointmentRow }[], writtenIds: Set<string>): number {
  // The last copy of an id in the batch is the one written.
  const last = new Map<string, boolean>();
  for (const { value, row } of rows) {
    const appointment = row as AppointmentRow;
    last.set(appointment.id, appointment.status === 'missed' && sourceStatus(value).status === 'active');
  }
  return [...last].filter(([id, marked]) => marked && writtenIds.has(id)).length;
}

function sourceStatus(value: unknown): { status?: string } {
  const status = value && typeof value === 'object' ? (value as Record<string, unknown>).status : undefined;
  return typeof status === 'string' ? { status } : {};
}

function appointmentKey(value: unknown): string | undefined {
  const id = value && typeof value === 'object' ? (value as Record<string, unknown>).id : undefined;
  return typeof id === 'string' && id.length <= 64 ? id : undefined;
}

function waiting(knex: Knex) {
  return knex('rejects')
    .where({ command: INGEST_COMMAND, reason_code: 'PATIENT_UNKNOWN', retryable: true })
    .whereNull('resolved_run_id');
}

async function countWaiting(knex: Knex): Promise<number> {
  const [row] = await waiting(knex).count<{ n: number }[]>({ n: '*' });
  return Number(row?.n ?? 0);
}

/**
 * Appointments kept in rejects because their patient was unknown: those whose patient has arrived
 * are written now and their reject is marked resolved by this run. An appointment that has meanwhile
 * been loaded from a newer export is settled without writing the older copy.
 */
async function retryWaitingAppointments(
  options: IngestOptions,
  deps: IngestDeps,
  refusalReject: (source: string, entry: number | undefined, value: unknown, code: ReasonCode, params: Record<string, string> | undefined, retryable: boolean) => RejectRecord,
  issueReject: (source: string, entry: number | undefined, value: unknown, kind: ExportKind, issues: Issue[]) => RejectRecord,
  reject: (records: RejectRecord[], trx?: Knex.Transaction) => Promise<void>,
): Promise<{ settled: number; written: number; unchanged: number; missed: number }> {
  const { knex, ledger } = deps;
  let after = 0;
  let resolved = 0;
  let written = 0;
  let unchanged = 0;
  let missed = 0;
  for (;;) {
    const waitingRejects = (await waiting(knex)
      .where('id', '>', after)
      .orderBy('id')
      .limit(options.batchSize)
      .select('id', 'source', 'entry', 'raw')) as { id: number; source: string; entry: number | null; raw: string | null }[];
    if (waitingRejects.length === 0) break;
    after = waitingRejects[waitingRejects.length - 1]!.id;
    resolved += await inRunTransaction(knex, ledger, async (trx) => {
      const settled: number[] = [];
      const newRejects: RejectRecord[] = [];
      const candidates: { rejectId: number; source: string; entry: number | undefined; value: unknown; row: AppointmentRow }[] = [];
      for (const w of waitingRejects) {
        let value: unknown;
        try {
          value = JSON.parse(w.raw ?? 'null');
        } catch {
          value = null;
        }
        const mapped = mapAppointment(value, options.now);
        if (!mapped.ok) {
          newRejects.push(issueReject(w.source, w.entry ?? undefined, value, 'appointments', mapped.issues));
          settled.push(w.id);
          continue;
        }
        candidates.push({ rejectId: w.id, source: w.source, entry: w.entry ?? undefined, value, row: mapped.row });
      }
      const loaded = new Set(
        ((await trx('appointments').select('id').whereIn('id', candidates.map((c) => c.row.id))) as { id: string }[]).map((r) => r.id),
      );
      const fresh = candidates.filter((c) => {
        if (!loaded.has(c.row.id)) return true;
        settled.push(c.rejectId);
        return false;
      });
      // Each waiting record keeps its own source file in the rows it writes.
      for (const [source, group] of groupBy(fresh, (c) => c.source)) {
        const result = await writeAppointments(trx, group.map((c) => c.row), { source, runId: ledger.id || null });
        const refusedAt = new Set<number>();
        for (const refusal of result.refused) {
          refusedAt.add(refusal.index);
          if (refusal.code === 'PATIENT_UNKNOWN') continue;
          const c = group[refusal.index]!;
          newRejects.push(refusalReject(c.source, c.entry, c.value, refusal.code, refusal.params, refusal.retryable));
          settled.push(c.rejectId);
        }
        group.forEach((c, index) => {
          if (!refusedAt.has(index)) settled.push(c.rejectId);
        });
        ledger.add({ written: result.written, unchanged: result.unchanged });
        missed += markedMissed(group, result.writtenIds);
        written += result.written;
        unchanged += result.unchanged;
      }
      await reject(newRejects, trx);
      if (settled.length > 0) {
        // A dry run has no run to name and is rolled back: it only takes the rejects out of the waiting list.
        const mark = ledger.id ? { resolved_run_id: ledger.id } : { retryable: false };
        await trx('rejects').whereIn('id', settled).update(mark);
      }
      return settled.length;
    });
  }
  return { settled: resolved, written, unchanged, missed };
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    groups.set(k, [...(groups.get(k) ?? []), item]);
  }
  return groups;
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
