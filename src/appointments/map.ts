/**
 * Maps export records to rows of `patients` and `appointments`, applying every rule of
 * src/appointments/rules.ts. Pure: `(record, now) → row | issues`, no I/O. `mapExportRecord` gives the
 * same as the engine's MapResult, with the issues worded in the run's language.
 */
import type { Lang } from '../i18n/catalogue.js';
import { appointmentMessage } from '../i18n/appointments.js';
import type { MapResult, RejectInfo } from '../pipeline/run.js';
import type { ExportRecord } from './read.js';
import {
  coercePostcode,
  effectiveStatus,
  normaliseName,
  parseAppointmentId,
  parseDate,
  parseDuration,
  parseNhsNumber,
  parseOffsetTimestamp,
  parseStatus,
  type AppointmentStatus,
  type Params,
  type ReasonCode,
  type RuleResult,
} from './rules.js';

export interface PatientRow {
  nhs_number: string;
  name: string;
  /** YYYY-MM-DD */
  date_of_birth: string | null;
  postcode: string | null;
}

export interface AppointmentRow {
  id: string;
  patient: string;
  status: AppointmentStatus;
  starts_at: Date;
  /** minutes */
  duration: number;
  clinician: string | null;
  department: string | null;
  postcode: string | null;
}

/** One broken rule: the field (as the source names it), the reason code and its message parameters. */
export interface Issue {
  field?: string;
  code: ReasonCode;
  params?: Params;
}

export type Mapped<T> = { ok: true; row: T } | { ok: false; issues: Issue[] };

class FieldReader {
  readonly issues: Issue[] = [];
  constructor(private readonly record: Record<string, unknown>) {}

  /** A required field through its rule. */
  required<T>(field: string, rule: (value: unknown) => RuleResult<T>): T | undefined {
    const value = this.record[field];
    if (value === undefined || value === null) {
      this.issues.push({ field, code: 'MISSING_FIELD', params: { field } });
      return undefined;
    }
    return this.apply(field, rule(value));
  }

  /** An optional field: absent, null or empty is null; anything else must pass its rule. */
  optional<T>(field: string, rule: (value: unknown) => RuleResult<T>): T | null | undefined {
    const value = this.record[field];
    if (value === undefined || value === null || value === '') return null;
    return this.apply(field, rule(value));
  }

  private apply<T>(field: string, result: RuleResult<T>): T | undefined {
    if (result.ok) return result.value;
    this.issues.push({ field, code: result.code, params: { field, ...result.params } });
    return undefined;
  }
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** Free text kept exactly as the source wrote it (department `gastroentology` stays so). */
function text(value: unknown): RuleResult<string> {
  return typeof value === 'string' ? { ok: true, value: value.normalize('NFC') } : { ok: false, code: 'MISSING_FIELD' };
}

export function mapPatient(record: unknown, now: Date): Mapped<PatientRow> {
  const object = asObject(record);
  if (!object) return { ok: false, issues: [{ code: 'RECORD_NOT_OBJECT' }] };
  const r = new FieldReader(object);
  const nhs_number = r.required('nhs_number', parseNhsNumber);
  const name = r.required('name', normaliseName);
  const date_of_birth = r.optional('date_of_birth', (v) => parseDate(v, now));
  const postcode = r.optional('postcode', coercePostcode);
  if (r.issues.length > 0) return { ok: false, issues: r.issues };
  return { ok: true, row: { nhs_number: nhs_number!, name: name!, date_of_birth: date_of_birth!, postcode: postcode! } };
}

/**
 * An appointment row as of `now`: an `active` appointment whose end has passed is stored as `missed`,
 * so re-importing the same file later gives the same row.
 */
export function mapAppointment(record: unknown, now: Date): Mapped<AppointmentRow> {
  const object = asObject(record);
  if (!object) return { ok: false, issues: [{ code: 'RECORD_NOT_OBJECT' }] };
  const r = new FieldReader(object);
  const id = r.required('id', parseAppointmentId);
  const patient = r.required('patient', parseNhsNumber);
  const status = r.required('status', parseStatus);
  const starts_at = r.required('time', parseOffsetTimestamp);
  const duration = r.required('duration', parseDuration);
  const clinician = r.optional('clinician', text);
  const department = r.optional('department', text);
  const postcode = r.optional('postcode', coercePostcode);
  if (r.issues.length > 0) return { ok: false, issues: r.issues };
  return {
    ok: true,
    row: {
      id: id!,
      patient: patient!,
      status: effectiveStatus(status!, starts_at!, duration!, now),
      starts_at: starts_at!,
      duration: duration!,
      clinician: clinician!,
      department: department!,
      postcode: postcode!,
    },
  };
}

/** What the writer takes: a row, or a waiting appointment that no longer maps (its old reject is settled). */
export type ExportRow =
  | { kind: 'patient'; row: PatientRow }
  | {
      kind: 'appointment';
      row: AppointmentRow;
      /** The source said `active` and the run clock made it `missed`: counted when the row is written. */
      markedMissed: boolean;
      /** The status as the source wrote it, for the words of a refusal. */
      sourceStatus?: string;
      /** The `rejects` row it waited in. */
      waiting?: number;
    }
  | { kind: 'refused'; reject: RejectInfo; waiting: number };

/** The appointment's id as its record key, when it looks like one (never a patient identifier). */
export function appointmentKey(value: unknown): string | undefined {
  const id = asObject(value)?.id;
  return typeof id === 'string' && id.length <= 64 ? id : undefined;
}

function sourceStatusOf(value: unknown): string | undefined {
  const status = asObject(value)?.status;
  return typeof status === 'string' ? status : undefined;
}

/** Every issue in the run's language, each after its field; the first one's code and field name the reject. */
function issuesReject(record: ExportRecord, issues: Issue[], lang: Lang): RejectInfo {
  return {
    reason: issues[0]!.code,
    field: issues[0]!.field,
    message: issues.map((i) => `${i.field ? `${i.field}: ` : ''}${appointmentMessage(lang, i.code, i.params)}`).join('; '),
    key: record.kind === 'appointments' ? appointmentKey(record.value) : undefined,
    raw: record.value,
    group: record.kind,
  };
}

/**
 * One record for the engine, as of `now`. Appointments are keyed by their id; patients by nothing (the
 * NHS number is a patient identifier: it never names a record, and the writer keeps the last copy).
 */
export function mapExportRecord(record: ExportRecord, now: Date, lang: Lang): MapResult<ExportRow> {
  if (record.kind === 'patients') {
    const mapped = mapPatient(record.value, now);
    if (!mapped.ok) return { ok: false, ...issuesReject(record, mapped.issues, lang) };
    return { ok: true, value: { kind: 'patient', row: mapped.row }, group: 'patients', raw: record.value };
  }
  const mapped = mapAppointment(record.value, now);
  if (!mapped.ok) {
    const reject = issuesReject(record, mapped.issues, lang);
    // A waiting appointment that no longer maps is rejected anew by the writer, which settles its old reject.
    if (record.waiting !== undefined) return { ok: true, value: { kind: 'refused', reject, waiting: record.waiting }, key: reject.key, group: 'appointments', raw: record.value };
    return { ok: false, ...reject };
  }
  const sourceStatus = sourceStatusOf(record.value);
  return {
    ok: true,
    value: {
      kind: 'appointment',
      row: mapped.row,
      markedMissed: mapped.row.status === 'missed' && sourceStatus === 'active',
      sourceStatus,
      waiting: record.waiting,
    },
    key: mapped.row.id,
    group: 'appointments',
    raw: record.value,
  };
}
