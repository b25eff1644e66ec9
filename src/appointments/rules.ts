/**
 * The rules an appointment-system export must follow, each a small pure function that either returns
 * the canonical value or says why it cannot (a reason code from `ReasonCode` and the parameters its
 * message needs). The mapper applies them; the message catalogue (src/i18n/appointments.ts) words them.
 */

/** Why a record (or one of its fields) is refused. The code is the same in every language. */
export type ReasonCode =
  | 'MISSING_FIELD'
  | 'NHS_NUMBER_INVALID'
  | 'NHS_NUMBER_CHECK_DIGIT'
  | 'POSTCODE_INVALID'
  | 'TIMESTAMP_NAIVE'
  | 'TIMESTAMP_INVALID'
  | 'DATE_INVALID'
  | 'DURATION_INVALID'
  | 'STATUS_INVALID'
  | 'NAME_INVALID'
  | 'APPOINTMENT_ID_INVALID'
  | 'RECORD_NOT_OBJECT'
  | 'FILE_KIND_UNKNOWN'
  | 'FILE_INVALID'
  // the readers' codes (ReasonCodes in src/readers/fhir-files.ts), the same for every input
  | 'TOO_DEEP'
  | 'INVALID_UTF8'
  | 'PATIENT_UNKNOWN'
  | 'APPOINTMENT_CANCELLED_IS_FINAL';

export type Params = Record<string, string | number>;

export type RuleResult<T> = { ok: true; value: T } | { ok: false; code: ReasonCode; params?: Params };

const ok = <T>(value: T): RuleResult<T> => ({ ok: true, value });
const fail = (code: ReasonCode, params?: Params): RuleResult<never> => ({ ok: false, code, params });

/**
 * NHS number: 10 digits once spaces and dashes are removed; the first nine weighted 10 … 2, and the
 * check digit is 11 − (sum mod 11), where 11 stands for 0 and 10 means no valid number exists.
 */
export function parseNhsNumber(input: unknown): RuleResult<string> {
  if (typeof input !== 'string' && typeof input !== 'number') return fail('NHS_NUMBER_INVALID');
  // A number loses leading zeros: only a string can carry every NHS number faithfully.
  if (typeof input === 'number') return fail('NHS_NUMBER_INVALID');
  const digits = input.replace(/[\s-]/g, '');
  if (!/^\d{10}$/.test(digits)) return fail('NHS_NUMBER_INVALID');
  return nhsCheckDigitValid(digits) ? ok(digits) : fail('NHS_NUMBER_CHECK_DIGIT');
}

/** The modulus 11 check on 10 digits. */
export function nhsCheckDigitValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < 9; i += 1) sum += Number(digits[i]) * (10 - i);
  const check = 11 - (sum % 11);
  if (check === 10) return false;
  return (check === 11 ? 0 : check) === Number(digits[9]);
}

// Outward code: area (1–2 letters) + district (digit, two digits, or digit and letter); inward: digit + 2 letters.
const POSTCODE = /^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][A-Z]{2}$/;

/**
 * UK postcode to its canonical form: upper case, spaces removed, one space before the last three
 * characters, then the shape is checked (`n62fa` → `N6 2FA`).
 */
export function coercePostcode(input: unknown): RuleResult<string> {
  if (typeof input !== 'string') return fail('POSTCODE_INVALID');
  const compact = input.toUpperCase().replace(/\s+/g, '');
  if (compact.length < 5 || compact.length > 7) return fail('POSTCODE_INVALID');
  const canonical = `${compact.slice(0, -3)} ${compact.slice(-3)}`;
  return POSTCODE.test(canonical) ? ok(canonical) : fail('POSTCODE_INVALID');
}

// ISO 8601 date-time; the offset (Z or ±hh:mm / ±hhmm / ±hh) is what separates it from a naive time.
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/** A timestamp that carries its offset, as a Date. A naive one is refused: we would have to guess the zone. */
export function parseOffsetTimestamp(input: unknown): RuleResult<Date> {
  if (typeof input !== 'string') return fail('TIMESTAMP_INVALID');
  const m = DATE_TIME.exec(input.trim());
  if (!m) return fail('TIMESTAMP_INVALID');
  const [, y, mo, d, h, mi, s, frac, offset] = m;
  if (!offset) return fail('TIMESTAMP_NAIVE');
  if (!validDate(Number(y), Number(mo), Number(d)) || Number(h) > 23 || Number(mi) > 59 || Number(s ?? 0) > 59) {
    return fail('TIMESTAMP_INVALID');
  }
  let offsetMinutes = 0;
  if (offset.toUpperCase() !== 'Z') {
    const sign = offset.startsWith('-') ? -1 : 1;
    const body = offset.slice(1).replace(':', '');
    const oh = Number(body.slice(0, 2));
    const om = Number(body.slice(2) || '0');
    if (oh > 23 || om > 59) return fail('TIMESTAMP_INVALID');
    offsetMinutes = sign * (oh * 60 + om);
  }
  const ms = Math.floor(Number(`0.${frac ?? '0'}`) * 1000);
  const utc = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s ?? 0), ms) - offsetMinutes * 60_000;
  return ok(new Date(utc));
}

function validDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  return d <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/** A calendar date `YYYY-MM-DD` (a date of birth): kept as text, checked to exist and not be in the future. */
export function parseDate(input: unknown, now?: Date): RuleResult<string> {
  if (typeof input !== 'string') return fail('DATE_INVALID');
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(input);
  if (!m || !validDate(Number(m[1]), Number(m[2]), Number(m[3]))) return fail('DATE_INVALID');
  if (now && input > now.toISOString().slice(0, 10)) return fail('DATE_INVALID');
  return ok(input);
}

/**
 * A duration such as `15m`, `1h`, `1h30m`, `2h 15m` or `90` (minutes), as whole minutes. Zero, negative
 * or unit-less garbage is refused; so is anything over a day, which no appointment lasts.
 */
export function parseDuration(input: unknown): RuleResult<number> {
  if (typeof input === 'number') {
    return Number.isInteger(input) && input > 0 && input <= 1440 ? ok(input) : fail('DURATION_INVALID');
  }
  if (typeof input !== 'string') return fail('DURATION_INVALID');
  const text = input.trim().toLowerCase();
  let minutes: number;
  if (/^\d+$/.test(text)) {
    minutes = Number(text);
  } else {
    const m = /^(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?$/.exec(text);
    if (!m || (m[1] === undefined && m[2] === undefined)) return fail('DURATION_INVALID');
    minutes = Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
  }
  return minutes > 0 && minutes <= 1440 ? ok(minutes) : fail('DURATION_INVALID');
}

export const STATUSES = ['attended', 'active', 'cancelled', 'missed'] as const;
export type AppointmentStatus = (typeof STATUSES)[number];

/** One of attended | active | cancelled | missed, exactly (the source writes them in lower case). */
export function parseStatus(input: unknown): RuleResult<AppointmentStatus> {
  return typeof input === 'string' && (STATUSES as readonly string[]).includes(input)
    ? ok(input as AppointmentStatus)
    : fail('STATUS_INVALID', { allowed: STATUSES.join(', ') });
}

/**
 * A patient's name exactly as given, in Unicode NFC so that the same name typed two ways compares
 * equal; any script, no trimming, truncation or case folding. Only an absent or blank name is refused.
 */
export function normaliseName(input: unknown): RuleResult<string> {
  if (typeof input !== 'string' || input.trim() === '') return fail('NAME_INVALID');
  return ok(input.normalize('NFC'));
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An appointment id: a uuid, stored in lower case (Postgres prints uuids that way). */
export function parseAppointmentId(input: unknown): RuleResult<string> {
  return typeof input === 'string' && UUID.test(input) ? ok(input.toLowerCase()) : fail('APPOINTMENT_ID_INVALID');
}

/** End of an appointment: its start plus its duration. */
export function appointmentEnd(startsAt: Date, durationMinutes: number): Date {
  return new Date(startsAt.getTime() + durationMinutes * 60_000);
}

/**
 * The status to store as of `now`: an appointment still `active` after its end was missed. Every other
 * status is kept as the source says it.
 */
export function effectiveStatus(status: AppointmentStatus, startsAt: Date, durationMinutes: number, now: Date): AppointmentStatus {
  return status === 'active' && now.getTime() > appointmentEnd(startsAt, durationMinutes).getTime() ? 'missed' : status;
}

/** Cancelled is final: true when a stored status may be replaced by an incoming one. */
export function statusChangeAllowed(stored: AppointmentStatus, incoming: AppointmentStatus): boolean {
  return stored !== 'cancelled' || incoming === 'cancelled';
}
