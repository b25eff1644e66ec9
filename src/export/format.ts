/**
 * How values are written in CSV, whatever the source: Postgres' own text form, normalised.
 * - booleans: `true` / `false`;  NULL: an empty field (an empty string is `""`);
 * - timestamptz: ISO 8601 with the offset, `2026-11-23T10:00:00+00:00` (in --timezone, default UTC),
 *   fractions of a second only when present; timestamp: `2026-11-23T10:00:00`; date: `2026-11-23`;
 *   interval: ISO 8601 duration (`PT1H30M`);
 * - numbers: Postgres' exact text (`12.50` stays `12.50`);
 * - json, jsonb and arrays: compact JSON; bytea: `\x` and hex digits.
 */
import { parse as parseLossless, stringify as stringifyLossless } from 'lossless-json';

/** How a column's text is turned into a cell. */
export type ValueKind = 'boolean' | 'number' | 'timestamptz' | 'timestamp' | 'json' | 'array' | 'text';

const OID = { bool: 16, json: 114, jsonb: 3802, timestamp: 1114, timestamptz: 1184 } as const;

/** The kind of a Postgres type, from its oid and pg_type.typcategory. */
export function kindOfType(oid: number, category: string): ValueKind {
  if (oid === OID.bool) return 'boolean';
  if (oid === OID.timestamptz) return 'timestamptz';
  if (oid === OID.timestamp) return 'timestamp';
  if (oid === OID.json || oid === OID.jsonb) return 'json';
  if (category === 'A') return 'array';
  if (category === 'N') return 'number';
  return 'text';
}

/** `2026-11-23 10:00:00.5+05:30` (Postgres, DateStyle ISO) → `2026-11-23T10:00:00.5+05:30`. */
export function isoTimestamptz(text: string): string {
  const match = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d)(?::?(\d\d))?(?::?(\d\d))?( BC)?$/.exec(text);
  if (!match) return text; // infinity, -infinity
  const [, date, time, hours, minutes = '00', seconds, bc] = match;
  return `${date}T${time}${hours}:${minutes}${seconds ? `:${seconds}` : ''}${bc ?? ''}`;
}

/** Compact JSON of a json/jsonb text, numbers kept digit for digit. */
export function compactJson(text: string): string {
  return stringifyLossless(parseLossless(text)) ?? text;
}

/** The cell for a non-null Postgres text value of `kind` (see the module comment). */
export function formatPgText(text: string, kind: ValueKind): string {
  switch (kind) {
    case 'boolean':
      return text === 't' ? 'true' : text === 'f' ? 'false' : text;
    case 'timestamptz':
      return isoTimestamptz(text);
    case 'timestamp':
      return text.replace(' ', 'T');
    case 'json':
      return compactJson(text);
    default:
      // numbers and text as Postgres writes them; arrays are already compact JSON (see query.ts).
      return text;
  }
}
