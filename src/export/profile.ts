/**
 * Export profiles. `clinical` passes every column through; `research` applies each column's declared
 * treatment (src/export/treatments.ts) and refuses a column that has none rather than leak it.
 */
import { createHash, createHmac } from 'node:crypto';
import { CarepipeError } from '../errors.js';
import type { Treatment } from './treatments.js';

export type Profile = 'clinical' | 'research';
export const PROFILES: Profile[] = ['clinical', 'research'];
export const TREATMENTS: Treatment[] = ['keep', 'drop', 'pseudonym', 'year', 'postcode_outward', 'date_shift', 'birth_date'];

/** How the research profile writes birth dates (`--birth-date`). */
export type BirthDateTreatment = 'year' | 'shift';

/** A column of the source as it will be read, with its declared treatment if any. */
export interface SourceColumn {
  name: string;
  treatment?: Treatment;
}

/** What happens to one output column's text; `patientKey` is the row's patient (date shifting). */
export type CellTransform = (cell: string, patientKey: string | null) => string | null;

/**
 * A keyed pseudonym: HMAC-SHA256 of the value under the key, as 64 hex digits. The same value and key
 * always give the same pseudonym (joins across files still work); without the key it cannot be
 * reversed or recomputed, and another key gives unrelated pseudonyms.
 */
export function pseudonymiser(key: string): (value: string) => string {
  return (value) => createHmac('sha256', key).update(value, 'utf8').digest('hex');
}

/**
 * The keyed pseudonym of an SQL text expression, computed by the database: HMAC-SHA256 written out
 * with Postgres' own sha256() (inner and outer key pads bound as hex), equal to pseudonymiser(key)
 * of the same text. Export orders research rows by it, so the order says nothing of the real keys.
 */
export function pseudonymSql(key: string, expression: string): { sql: string; bindings: string[] } {
  const block = 64;
  let keyBytes = Buffer.from(key, 'utf8');
  if (keyBytes.length > block) keyBytes = createHash('sha256').update(keyBytes).digest();
  const padded = Buffer.alloc(block);
  keyBytes.copy(padded);
  const inner = Buffer.from(padded.map((b) => b ^ 0x36));
  const outer = Buffer.from(padded.map((b) => b ^ 0x5c));
  return {
    sql: `encode(sha256(decode(?, 'hex') || sha256(decode(?, 'hex') || convert_to((${expression})::text, 'UTF8'))), 'hex')`,
    bindings: [outer.toString('hex'), inner.toString('hex')],
  };
}

/** A date or timestamp generalised to its year; anything else becomes NULL rather than leak. */
export function toYear(value: string): string | null {
  const match = /^(\d{4})(?:-|$)/.exec(value);
  return match ? match[1]! : null;
}

const UK_POSTCODE = /^([A-Z]{1,2}[0-9][A-Z0-9]?) ?[0-9][A-Z]{2}$/;
const UK_OUTWARD = /^[A-Z]{1,2}[0-9][A-Z0-9]?$/;

/**
 * A UK postcode generalised to its outward code (`N6 2FA` → `N6`, `sw1a1aa` → `SW1A`). A value that
 * is not a UK postcode becomes NULL: an unknown shape cannot be generalised safely.
 */
export function toPostcodeOutward(value: string): string | null {
  const compact = value.trim().toUpperCase().replace(/\s+/g, ' ');
  const match = UK_POSTCODE.exec(compact);
  if (match) return match[1]!;
  return UK_OUTWARD.test(compact) ? compact : null;
}

/** Shorter keys are refused. */
export const MIN_KEY_LENGTH = 16;

/** Fewer different characters than this is a placeholder, not a secret (`aaaa…`, `abab…`, spaces). */
const MIN_KEY_DISTINCT = 5;

/**
 * Refuses a key that is too short or too simple to keep pseudonyms secret: NHS numbers and ids are
 * few enough to try them all under a guessable key. The message never quotes the key.
 */
export function checkPseudonymKey(key: string | undefined): string {
  if (!key) {
    throw new CarepipeError('PSEUDONYM_KEY_MISSING', 'the research profile needs CAREPIPE_PSEUDONYM_KEY: a secret key for the pseudonyms');
  }
  if (key.length < MIN_KEY_LENGTH) {
    throw new CarepipeError('PSEUDONYM_KEY_MISSING', `CAREPIPE_PSEUDONYM_KEY must be at least ${MIN_KEY_LENGTH} characters`);
  }
  if (new Set(key.replace(/\s/gu, '')).size < MIN_KEY_DISTINCT) {
    throw new CarepipeError(
      'PSEUDONYM_KEY_MISSING',
      `CAREPIPE_PSEUDONYM_KEY is repeated characters or whitespace, not a secret: use at least ${MIN_KEY_DISTINCT} different characters, e.g. the output of \`openssl rand -hex 32\``,
    );
  }
  return key;
}

/** Dates move by at most this many days, either way. */
export const MAX_SHIFT_DAYS = 182;

/**
 * The patient's date offset in days: from HMAC-SHA256 of the key and the patient's key, in
 * -182…-1 or 1…182 (never 0, so no exact date survives). The same patient and key give the same
 * offset in every table and run; another key gives another.
 */
export function dateShiftDays(key: string, patientKey: string): number {
  const digest = createHmac('sha256', key).update(`date-shift\u0000${patientKey}`, 'utf8').digest();
  const n = digest.readUInt32BE(0) % (2 * MAX_SHIFT_DAYS);
  return n < MAX_SHIFT_DAYS ? n - MAX_SHIFT_DAYS : n - MAX_SHIFT_DAYS + 1;
}

const FHIR_DATE = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?=$|[T ])(.*)$/s;

/**
 * A FHIR date, dateTime or instant (or a Postgres date/timestamp text) moved by `days`, at its own
 * precision: `2020` and `2020-05` stand for their first day, which is moved and written back as a
 * year or a month; a time of day and its offset are kept, so intervals are exact. Anything else
 * becomes NULL rather than leak.
 */
export function shiftFhirDate(value: string, days: number): string | null {
  const match = FHIR_DATE.exec(value);
  if (!match) return null;
  const [, year, month, day, rest] = match;
  const moved = new Date(Date.UTC(Number(year), Number(month ?? 1) - 1, Number(day ?? 1) + days));
  if (Number(year) < 100) moved.setUTCFullYear(Number(year), Number(month ?? 1) - 1, Number(day ?? 1) + days);
  const y = String(moved.getUTCFullYear()).padStart(4, '0');
  const m = String(moved.getUTCMonth() + 1).padStart(2, '0');
  const d = String(moved.getUTCDate()).padStart(2, '0');
  if (day !== undefined) return `${y}-${m}-${d}${rest}`;
  return month !== undefined ? `${y}-${m}` : y;
}

/** `date_shift`: each patient's dates by that patient's offset; NULL for a row with no patient. */
export function dateShifter(key: string): CellTransform {
  const offsets = new Map<string, number>();
  return (cell, patientKey) => {
    if (patientKey === null) return null;
    let days = offsets.get(patientKey);
    if (days === undefined) {
      days = dateShiftDays(key, patientKey);
      // One entry per patient of the export: bounded by the patients, dropped at the end of the run.
      offsets.set(patientKey, days);
    }
    return shiftFhirDate(cell, days);
  };
}

export interface ProfileOptions {
  profile: Profile;
  /** CAREPIPE_PSEUDONYM_KEY; required by the research profile. */
  pseudonymKey?: string;
  /** What the columns belong to, for messages: a source name or a view file. */
  source: string;
  /** `--birth-date`: how `birth_date` columns are written (default: year). */
  birthDate?: BirthDateTreatment;
}

/** The plan for one output column: its name and the transform of its non-null cells (if any). */
export interface ProfiledColumn {
  name: string;
  /** Index of the column in the rows read. */
  index: number;
  transform?: CellTransform;
}

/**
 * Applies a profile to a source's columns: which are written and how. In the research profile a
 * column without a declared treatment stops the export (PROFILE_UNDECLARED_COLUMN, exit 2), dropped
 * columns are left out, and the profile needs a pseudonym key that is a real secret
 * (PSEUDONYM_KEY_MISSING, exit 2). Shifted dates need the row's patient key (see cellMaker).
 */
export function applyProfile(columns: SourceColumn[], options: ProfileOptions): ProfiledColumn[] {
  if (options.profile === 'clinical') return columns.map((c, index) => ({ name: c.name, index }));
  const key = checkPseudonymKey(options.pseudonymKey);
  const undeclared = columns.filter((c) => c.treatment === undefined).map((c) => c.name);
  if (undeclared.length > 0) {
    throw new CarepipeError(
      'PROFILE_UNDECLARED_COLUMN',
      `${options.source}: column${undeclared.length > 1 ? 's' : ''} ${undeclared.join(', ')} ha${undeclared.length > 1 ? 've' : 's'} no declared research treatment; ` +
        `declare one (${TREATMENTS.join(', ')}) or leave the column out with --columns`,
      { field: undeclared[0] },
    );
  }
  const pseudonym = pseudonymiser(key);
  const shift = dateShifter(key);
  const out: ProfiledColumn[] = [];
  columns.forEach((c, index) => {
    switch (c.treatment) {
      case 'drop':
        return;
      case 'keep':
        out.push({ name: c.name, index });
        return;
      case 'pseudonym':
        out.push({ name: c.name, index, transform: pseudonym });
        return;
      case 'year':
        out.push({ name: c.name, index, transform: toYear });
        return;
      case 'postcode_outward':
        out.push({ name: c.name, index, transform: toPostcodeOutward });
        return;
      case 'date_shift':
        out.push({ name: c.name, index, transform: shift });
        return;
      case 'birth_date':
        out.push({ name: c.name, index, transform: options.birthDate === 'shift' ? shift : toYear });
        return;
    }
  });
  return out;
}
