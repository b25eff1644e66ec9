/**
 * Column types: the SQL on FHIR v2 default mapping from FHIR types to SQL types, the `ansi/type` tag
 * that overrides it, and the conversion of FHIRPath results into the values a row holds.
 */
import { isLosslessNumber, type LosslessNumber } from 'lossless-json';
import { isIntegerValue } from './fhirpath.js';

export type SqlType = 'boolean' | 'integer' | 'bigint' | 'bytea' | 'timestamptz' | 'text' | 'jsonb';

/**
 * The spec's default mapping: boolean → BOOLEAN; integer, positiveInt, unsignedInt → INT; integer64 →
 * BIGINT; base64Binary → BINARY; instant → TIMESTAMP WITH TIME ZONE; everything else, dates and
 * decimals included, → CHARACTER VARYING in FHIR's own string form.
 */
export function sqlTypeOf(fhirType: string | undefined): SqlType {
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
    case 'timestamptz':
      if (typeof v === 'string') {
        if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(v)) throw new ColumnTypeError('expected an instant with a time zone');
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
