/**
 * Upserts patients and appointments inside the caller's transaction. A row identical to the stored
 * one is left alone and counted unchanged. The database decides what is refused: an appointment whose
 * patient is not there yet, and a cancelled appointment that an import tries to reinstate.
 */
import type { Knex } from 'knex';
import { statusChangeAllowed, type AppointmentStatus, type ReasonCode } from './rules.js';
import type { AppointmentRow, PatientRow } from './map.js';

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

export async function writePatients(trx: Knex.Transaction, rows: PatientRow[], ctx: WriteContext): Promise<WriteResult> {
  if (rows.length === 0) return { written: 0, unchanged: 0 };
  const unique = lastByKey(rows, (r) => r.nhs_number);
  const changed = await trx('patients')
    .insert(unique.map((r) => ({ ...r, source: ctx.source, run_id: ctx.runId, updated_at: trx.fn.now() })))
    .onConflict('nhs_number')
    .merge(['name', 'date_of_birth', 'postcode', 'source', 'run_id', 'updated_at'])
    .whereRaw(
      '(patients.name, patients.date_of_birth, patients.postcode) is distinct from (excluded.name, excluded.date_of_birth, excluded.postcode)',
    )
    .returning('nhs_number');
  return { written: changed.length, unchanged: rows.length - changed.length };
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
