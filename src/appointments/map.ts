/**
 * Maps export records to rows of `patients` and `appointments`, applying every rule of
 * src/appointments/rules.ts. Pure: `(record, now) → row | issues`, no I/O.
 */
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
