/**
 * Upserts patients and appointments inside the caller's transaction (the engine's, one per batch). A
 * row identical to the stored one is left alone and counted unchanged. The database decides what is
 * refused: an appointment whose patient is not there yet, and a cancelled appointment that an import
 * tries to reinstate. An appointment that waited in `rejects` for its patient and is now settled
 * (loaded, refused for another reason, or already loaded from a newer export) has its reject resolved.
 */
import type { Knex } from 'knex';
import type { Lang } from '../i18n/catalogue.js';
import { appointmentMessage } from '../i18n/appointments.js';
import type { Batch, BatchItem, Outcome } from '../pipeline/run.js';
import { statusChangeAllowed, type AppointmentStatus, type ReasonCode } from './rules.js';
import type { AppointmentRow, ExportRow, PatientRow } from './map.js';

export interface WriteContext {
  /** File the rows came from. */
  source: string;
  runId: number | null;
}

export interface WriteResult {
  written: number;
  unchanged: number;
}

/** A row the writer would not store, and why. `retryable` refusals may succeed on a later run. */
export interface Refusal<T> {
  row: T;
  index: number;
  code: ReasonCode;
  params?: Record<string, string>;
  retryable: boolean;
}

/** Within one batch the last copy of a key wins, as it would had the rows come one by one. */
function lastByKey<T>(rows: T[], key: (row: T) => string): T[] {
  const byKey = new Map<string, T>();
  for (const row of rows) {
    const k = key(row);
    byKey.delete(k);
    byKey.set(k, row);
  }
  return [...byKey.values()];
}

export async function writePatients(trx: Knex.Transaction, rows: PatientRow[], ctx: WriteContext): Promise<WriteResult & { changed: Set<string> }> {
  if (rows.length === 0) return { written: 0, unchanged: 0, changed: new Set() };
  const unique = lastByKey(rows, (r) => r.nhs_number);
  const changed = await trx('patients')
    .insert(unique.map((r) => ({ ...r, source: ctx.source, run_id: ctx.runId, updated_at: trx.fn.now() })))
    .onConflict('nhs_number')
    .merge(['name', 'date_of_birth', 'postcode', 'source', 'run_id', 'updated_at'])
    .whereRaw(
      '(patients.name, patients.date_of_birth, patients.postcode) is distinct from (excluded.name, excluded.date_of_birth, excluded.postcode)',
    )
    .returning('nhs_number');
  return {
    written: changed.length,
    unchanged: rows.length - changed.length,
    changed: new Set((changed as { nhs_number: string }[]).map((r) => r.nhs_number)),
  };
}

/**
 * Upserts appointments; returns the refused ones apart, and the ids of the rows it wrote (the caller
 * counts those it marked missed). Rows are taken in order, so within a batch a
 * cancellation followed by a reinstatement is refused just as it would be across two runs.
 */
export async function writeAppointments(
  trx: Knex.Transaction,
  rows: AppointmentRow[],
  ctx: WriteContext,
): Promise<WriteResult & { refused: Refusal<AppointmentRow>[]; writtenIds: Set<string> }> {
  const refused: Refusal<AppointmentRow>[] = [];
  if (rows.length === 0) return { written: 0, unchanged: 0, refused, writtenIds: new Set() };
  const ids = [...new Set(rows.map((r) => r.id))];
  const patients = [...new Set(rows.map((r) => r.patient))];
  // Lock the stored rows so a concurrent writer cannot reinstate between our check and our write.
  const stored = new Map<string, AppointmentStatus>(
    ((await trx('appointments').select('id', 'status').whereIn('id', ids).forUpdate()) as { id: string; status: AppointmentStatus }[]).map(
      (r) => [r.id, r.status],
    ),
  );
  const known = new Set(
    ((await trx('patients').select('nhs_number').whereIn('nhs_number', patients)) as { nhs_number: string }[]).map((r) => r.nhs_number),
  );
  const accepted: AppointmentRow[] = [];
  rows.forEach((row, index) => {
    if (!known.has(row.patient)) {
      refused.push({ row, index, code: 'PATIENT_UNKNOWN', retryable: true });
      return;
    }
    const current = stored.get(row.id);
    if (current !== undefined && !statusChangeAllowed(current, row.status)) {
      refused.push({ row, index, code: 'APPOINTMENT_CANCELLED_IS_FINAL', params: { status: row.status }, retryable: false });
      return;
    }
    stored.set(row.id, row.status);
    accepted.push(row);
  });
  if (accepted.length === 0) return { written: 0, unchanged: 0, refused, writtenIds: new Set() };
  const unique = lastByKey(accepted, (r) => r.id);
  const changed = await trx('appointments')
    .insert(unique.map((r) => ({ ...r, source: ctx.source, run_id: ctx.runId, updated_at: trx.fn.now() })))
    .onConflict('id')
    .merge(['patient', 'status', 'starts_at', 'duration', 'clinician', 'department', 'postcode', 'source', 'run_id', 'updated_at'])
    .whereRaw(
      `(appointments.patient, appointments.status, appointments.starts_at, appointments.duration, appointments.clinician, appointments.department, appointments.postcode)
       is distinct from (excluded.patient, excluded.status, excluded.starts_at, excluded.duration, excluded.clinician, excluded.department, excluded.postcode)`,
    )
    .returning('id');
  return {
    written: changed.length,
    unchanged: accepted.length - changed.length,
    refused,
    writtenIds: new Set((changed as { id: string }[]).map((r) => r.id)),
  };
}

/**
 * Every appointment still `active` after its end (start + duration) as of `now` becomes `missed`.
 * Returns how many changed. `updated_at` is the database's time of the change (what `--since` exports
 * go by), not the run clock, which may be set back for a replay.
 */
export async function markMissed(trx: Knex.Transaction, now: Date, runId: number | null): Promise<number> {
  const changed = await trx('appointments')
    .where('status', 'active')
    .whereRaw(`starts_at + duration * interval '1 minute' < ?`, [now])
    .update({ status: 'missed', run_id: runId, updated_at: trx.fn.now() })
    .returning('id');
  return changed.length;
}

export interface BatchContext {
  runId: number | null;
  lang: Lang;
}

/** What a batch did beyond its outcomes: appointments it stored as missed, waiting rejects it settled. */
export interface BatchFigures {
  missed: number;
  resolved: number;
}

/** Indexes of `items` that hold the last copy of their key (the copy a batch writes). */
function lastCopies<T>(items: { index: number; value: T }[], key: (value: T) => string): Set<number> {
  const last = new Map<string, number>();
  for (const { index, value } of items) last.set(key(value), index);
  return new Set(last.values());
}

/** Items grouped by their source file, in order (each row keeps the file it came from). */
function bySource<T>(items: { index: number; item: BatchItem<ExportRow>; value: T }[]): Map<string, typeof items> {
  const groups = new Map<string, typeof items>();
  for (const entry of items) {
    const group = groups.get(entry.item.at.source) ?? [];
    group.push(entry);
    groups.set(entry.item.at.source, group);
  }
  return groups;
}

/**
 * A batch for the engine: what became of each item, in order, and the batch's figures. A waiting
 * appointment whose patient is still unknown stays waiting (its reject untouched), and one already
 * loaded from a newer export is settled: both are `skipped`, counted in no figure of this run.
 */
export async function writeBatch(
  trx: Knex.Transaction,
  batch: Batch<ExportRow, unknown>,
  ctx: BatchContext,
): Promise<{ outcomes: Outcome[]; figures: BatchFigures }> {
  const outcomes: Outcome[] = batch.items.map(() => 'skipped');
  const figures: BatchFigures = { missed: 0, resolved: 0 };
  const settled: number[] = [];
  const patients: { index: number; item: BatchItem<ExportRow>; value: PatientRow }[] = [];
  const appointments: { index: number; item: BatchItem<ExportRow>; value: Extract<ExportRow, { kind: 'appointment' }> }[] = [];
  batch.items.forEach((item, index) => {
    const value = item.value;
    if (value.kind === 'patient') patients.push({ index, item, value: value.row });
    else if (value.kind === 'appointment') appointments.push({ index, item, value });
    else {
      outcomes[index] = { reject: value.reject };
      settled.push(value.waiting);
    }
  });

  for (const [source, group] of bySource(patients)) {
    const { changed } = await writePatients(trx, group.map((p) => p.value), { source, runId: ctx.runId });
    const last = lastCopies(group, (row) => row.nhs_number);
    for (const { index, value } of group) outcomes[index] = changed.has(value.nhs_number) && last.has(index) ? 'written' : 'unchanged';
  }

  // A waiting appointment loaded meanwhile from a newer export is settled without writing the older copy.
  const waitingIds = appointments.filter((a) => a.value.waiting !== undefined).map((a) => a.value.row.id);
  const loaded = new Set(
    waitingIds.length ? ((await trx('appointments').select('id').whereIn('id', waitingIds)) as { id: string }[]).map((r) => r.id) : [],
  );
  const fresh = appointments.filter((a) => {
    if (a.value.waiting === undefined || !loaded.has(a.value.row.id)) return true;
    settled.push(a.value.waiting); // counted in no figure, as it was not written
    return false;
  });
  for (const [source, group] of bySource(fresh)) {
    const result = await writeAppointments(trx, group.map((a) => a.value.row), { source, runId: ctx.runId });
    const refused = new Map(result.refused.map((r) => [r.index, r]));
    const accepted = group.filter((_, i) => !refused.has(i));
    const last = lastCopies(accepted.map((a) => ({ index: a.index, value: a.value.row })), (row) => row.id);
    group.forEach(({ index, value }, i) => {
      const refusal = refused.get(i);
      if (refusal?.code === 'PATIENT_UNKNOWN' && value.waiting !== undefined) return; // still waiting
      if (value.waiting !== undefined) settled.push(value.waiting);
      if (refusal) {
        outcomes[index] = {
          reject: {
            reason: refusal.code,
            field: refusal.code === 'PATIENT_UNKNOWN' ? 'patient' : 'status',
            // Word the refused status as the source gave it (`active`), not as derived (`missed`).
            message: appointmentMessage(ctx.lang, refusal.code, { ...refusal.params, ...(value.sourceStatus ? { status: value.sourceStatus } : {}) }),
            retryable: refusal.retryable,
          },
        };
        return;
      }
      const written = result.writtenIds.has(value.row.id) && last.has(index);
      outcomes[index] = written ? 'written' : 'unchanged';
      if (written && value.markedMissed) figures.missed += 1;
    });
  }

  if (settled.length > 0) {
    // A dry run has no run to name and is rolled back: it only takes the rejects out of the waiting list.
    const mark = ctx.runId ? { resolved_run_id: ctx.runId } : { retryable: false };
    await trx('rejects').whereIn('id', settled).update(mark);
    figures.resolved = settled.length;
  }
  return { outcomes, figures };
}
