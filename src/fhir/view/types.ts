/**
 * Column types: the SQL on FHIR v2 default mapping from FHIR types to SQL types, the `ansi/type` tag
 * that overrides it, and the conversion of FHIRPath results into the values a row holds.
 */
import { isLosslessNumber, type LosslessNumber } from 'lossless-json';
import { isIntegerValue } from './fhirpath/values.js';

export type SqlType = 'boolean' | 'integer' | 'bigint' | 'numeric' | 'bytea' | 'date' | 'timestamptz' | 'text' | 'jsonb';

/**
 * The SQL type of a column from its FHIR type. A type the view declares (`"type": "decimal"`) is a
 * hint an analyst relies on: decimal → NUMERIC (exact: `71.50` stays `71.50`), date → DATE, dateTime
 * and instant → TIMESTAMP WITH TIME ZONE, so averages, date arithmetic and ordering work in SQL.
 * A type only inferred from the expression keeps the spec's default mapping, where dates and decimals
 * are CHARACTER VARYING: a view without hints gets the text columns it always had.
 * Both: boolean → BOOLEAN; integer, positiveInt, unsignedInt → INT; integer64 → BIGINT; base64Binary
 * → BINARY; instant → TIMESTAMP WITH TIME ZONE; anything else → text in FHIR's string form.
 */
export function sqlTypeOf(fhirType: string | undefined, declared = false): SqlType {
  if (declared) {
    if (fhirType === 'decimal') return 'numeric';
    if (fhirType === 'date') return 'date';
    if (fhirType === 'dateTime') return 'timestamptz';
  }
  switch (fhirType) {
    case 'boolean':
      return 'boolean';
    case 'integer':
    case 'positiveInt':
    case 'unsignedInt':
      return 'integer';
    case 'integer64':
      return 'bigint';
    case 'base64Binary':
      return 'bytea';
    case 'instant':
      return 'timestamptz';
    default:
      return 'text';
  }
}

/** `ansi/type` tag values → SqlType; the length or precision in parentheses is ignored. */
const ANSI_TYPES: Record<string, SqlType> = {
  BOOLEAN: 'boolean',
  INTEGER: 'integer',
  INT: 'integer',
  SMALLINT: 'integer',
  BIGINT: 'bigint',
  NUMERIC: 'numeric',
  DECIMAL: 'numeric',
  DATE: 'date',
  BINARY: 'bytea',
  VARBINARY: 'bytea',
  'BINARY VARYING': 'bytea',
  BYTEA: 'bytea',
  'TIMESTAMP WITH TIME ZONE': 'timestamptz',
  TIMESTAMPTZ: 'timestamptz',
  'CHARACTER VARYING': 'text',
  VARCHAR: 'text',
  CHARACTER: 'text',
  CHAR: 'text',
  TEXT: 'text',
  JSON: 'jsonb',
  JSONB: 'jsonb',
};

/** SqlType of an `ansi/type` tag value, or undefined when carepipe cannot store that type. */
export function sqlTypeOfAnsi(ansi: string): SqlType | undefined {
  const name = ansi.replace(/\(.*\)\s*$/, '').trim().replace(/\s+/g, ' ').toUpperCase();
  return Object.hasOwn(ANSI_TYPES, name) ? ANSI_TYPES[name] : undefined;
}

/** The ANSI type names `ansi/type` accepts, for error messages. */
export const SUPPORTED_ANSI_TYPES = Object.keys(ANSI_TYPES);

/** A value that does not fit its column; the evaluator adds the column name. */
export class ColumnTypeError extends Error {}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function describe(v: unknown): string {
  if (isLosslessNumber(v)) return 'a number';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object' && v !== null) {
    const rt = (v as { resourceType?: unknown }).resourceType;
    return typeof rt === 'string' ? `a ${rt} resource` : 'an object';
  }
  return `a ${typeof v}`;
}

/** Plain JSON for jsonb: lossless numbers become numbers (the text is kept only for text columns). */
export function toPlainJson(v: unknown): unknown {
  if (isLosslessNumber(v)) return parseFloat((v as LosslessNumber).value);
  if (Array.isArray(v)) return v.map(toPlainJson);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toPlainJson(x);
    return out;
  }
  return v;
}

/**
 * Converts one FHIRPath result item to the value stored in a column of `sqlType`:
 * boolean → boolean, integer → number (32-bit), bigint → number (or the exact digits when beyond
 * 2^53), bytea → Buffer from base64, timestamptz → the instant's text, text → the FHIR string form
 * (decimals keep their original digits), jsonb → plain JSON. Throws ColumnTypeError when it does not fit.
 * `untyped`: the column declares no type, so a text column also takes booleans.
 */
export function toColumnValue(v: unknown, sqlType: SqlType, untyped = false): unknown {
  switch (sqlType) {
    case 'boolean':
      if (typeof v === 'boolean') return v;
      break;
    case 'integer':
    case 'bigint': {
      if (typeof v === 'string' && sqlType === 'bigint' && /^-?\d+$/.test(v)) v = Number.isSafeInteger(Number(v)) ? Number(v) : v;
      if (typeof v === 'string') break;
      if (!isIntegerValue(v)) break;
      const text = isLosslessNumber(v) ? (v as LosslessNumber).value : String(v);
      const n = Number(text);
      if (sqlType === 'integer' && (n < INT32_MIN || n > INT32_MAX)) throw new ColumnTypeError(`${text} is out of range for an integer column`);
      return Number.isSafeInteger(n) ? n : text;
    }
    case 'bytea':
      if (typeof v === 'string') {
        if (!/^[A-Za-z0-9+/\s]*={0,2}$/.test(v)) throw new ColumnTypeError('expected base64 text');
        return Buffer.from(v, 'base64');
      }
      break;
    case 'numeric':
      // The digits as written (a LosslessNumber when read losslessly): `71.50` stays `71.50`.
      if (isLosslessNumber(v) || (typeof v === 'number' && Number.isFinite(v))) return v;
      break;
    case 'date':
      if (typeof v === 'string') {
        if (!parseFhirDate(v) || v.includes('T')) throw new ColumnTypeError(`${shape(v)} is not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)`);
        return v;
      }
      break;
    case 'timestamptz':
      if (typeof v === 'string') {
        if (!parseFhirDate(v)) throw new ColumnTypeError(`${shape(v)} is not a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)`);
        return v;
      }
      break;
    case 'text':
      if (typeof v === 'string') return v;
      if (typeof v === 'number') return String(v);
      if (isLosslessNumber(v)) return (v as LosslessNumber).value;
      // A column without a declared type takes any primitive in its string form.
      if (untyped && typeof v === 'boolean') return String(v);
      break;
    case 'jsonb':
      return toPlainJson(v);
  }
  throw new ColumnTypeError(`expected ${sqlType === 'text' ? 'a string' : `a ${sqlType}`} value, got ${describe(v)}`);
}

/**
 * A value as a message may show it: its shape, never its text (a date can be a birth date, and
 * messages reach stderr and `rejects.message`; the record itself is kept in `rejects.raw`).
 * `2020-13-45` reads as `the value 9999-99-99`, `May 2020` as `the value Aaa 9999`.
 */
function shape(v: string): string {
  if (v.length > 40) return `a value of ${v.length} characters`;
  return `the value ${v.replace(/[0-9]/g, '9').replace(/[A-Z]/g, 'A').replace(/[a-z]/g, 'a')}`;
}

const FHIR_DATE_TIME = /^(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?(Z|[+-]\d\d:\d\d))?)?)?$/;

/** The parts of a FHIR date or dateTime, or undefined when it is not one or names no real day. */
function parseFhirDate(v: string): { year: number; month?: number; day?: number; time: boolean } | undefined {
  const m = FHIR_DATE_TIME.exec(v);
  if (!m) return undefined;
  const year = Number(m[1]);
  const month = m[2] === undefined ? undefined : Number(m[2]);
  const day = m[3] === undefined ? undefined : Number(m[3]);
  if (year === 0) return undefined;
  if (month !== undefined && (month < 1 || month > 12)) return undefined;
  // Day 0 of the next month is the last day of this one.
  if (day !== undefined && (day < 1 || day > new Date(Date.UTC(year, month!, 0)).getUTCDate())) return undefined;
  if (m[4] !== undefined) {
    if (Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6] ?? 0) > 59) return undefined;
    const zone = m[7]!;
    if (zone !== 'Z' && (Number(zone.slice(1, 3)) > 14 || Number(zone.slice(4, 6)) > 59)) return undefined;
  }
  return { year, month, day, time: m[4] !== undefined };
}

/**
 * The value a `date` or `timestamptz` column stores for a FHIR date or dateTime the evaluator passed:
 * a partial one (`2020`, `2020-05`, or a dateTime without its time) as the first instant of the
 * period it names — in UTC when it carries no zone — and `partial` true so the run can count it.
 */
export function firstInstantOf(v: string, sqlType: 'date' | 'timestamptz'): { value: string; partial: boolean } {
  const parts = parseFhirDate(v);
  if (!parts) return { value: v, partial: false };
  if (parts.time) return { value: v, partial: false };
  const day = `${v.slice(0, 4)}-${v.slice(5, 7) || '01'}-${v.slice(8, 10) || '01'}`;
  if (sqlType === 'date') return { value: day, partial: parts.day === undefined };
  return { value: `${day}T00:00:00Z`, partial: true };
}
