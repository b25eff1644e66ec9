/**
 * Cells made by the database: for each output column, the SQL expression over `q` whose text is the
 * very cell the Node path writes (format.ts for the value, profile.ts for the research treatments,
 * writers/csv.ts's guardFormula against spreadsheet formulas). With them a source is written by
 * `COPY (SELECT …) TO STDOUT` and no row passes through Node. Core SQL only (sha256, regexp_*),
 * so the same expressions run on the Postgres server and on PGlite, which has no pgcrypto.
 * The equivalence with the Node functions is tested value by value on both back ends (cell-sql.test.ts).
 */
import { createHash } from 'node:crypto';
import { quoteIdent } from '../db/catalog.js';
import type { ValueKind } from './format.js';
import { MAX_SHIFT_DAYS, type BirthDateTreatment, type Profile } from './profile.js';
import type { SqlQuery } from './query.js';
import type { Treatment } from './treatments.js';

/** A column to write: its name in `q`, the kind of its values and (research) its treatment. */
export interface CellColumn {
  name: string;
  kind: ValueKind;
  treatment?: Treatment;
}

export interface CellPlan {
  profile: Profile;
  /** CAREPIPE_PSEUDONYM_KEY, checked already (research). */
  pseudonymKey?: string;
  birthDate?: BirthDateTreatment;
  formulaGuard: boolean;
  /** The row's patient key over `q`, for date shifting (research); none: shifted dates are NULL. */
  patientKey?: SqlQuery;
}

/** A Postgres string literal (standard_conforming_strings is on in every supported version). */
export function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** A regular expression as a literal in knex raw SQL: its `?` escaped, or knex would bind them. */
function regex(text: string): string {
  return literal(text).replace(/\?/g, '\\?');
}

// format.ts's isoTimestamptz: the first space becomes T, an offset of hours only gets its `:00`.
const TZ_HOURS_ONLY = String.raw`([+-]\d\d)( BC)?$`;
// format.ts's compactJson: a JSON string literal kept whole, whitespace outside one removed.
const JSON_WHITESPACE = String.raw`("(?:[^"\\]|\\.)*")|[ \t\n\r]+`;

/** The SQL text of a column's value as format.ts writes it (`expr` is a column of `q`, not NULL-safe-needed: NULL stays NULL). */
export function formattedSql(expr: string, kind: ValueKind): string {
  switch (kind) {
    case 'boolean':
      return `(case ${expr} when true then 'true' when false then 'false' end)`;
    case 'timestamptz':
      return `regexp_replace(regexp_replace(${expr}::text, ' ', 'T'), ${regex(TZ_HOURS_ONLY)}, '\\1:00\\2')`;
    case 'timestamp':
      return `regexp_replace(${expr}::text, ' ', 'T')`;
    case 'json':
      return `regexp_replace(${expr}::text, ${regex(JSON_WHITESPACE)}, '\\1', 'g')`;
    case 'array':
      return `to_json(${expr})::text`;
    default:
      return `${expr}::text`;
  }
}

// writers/csv.ts's FORMULA_START.
const FORMULA_START = `('=', '+', '-', '@', E'\\t', E'\\r')`;

/**
 * The formatted value with guardFormula applied. Each kind is guarded as cheaply as it can be: a
 * boolean or an array never starts with a formula character, a timestamp only as `-infinity`, JSON
 * only as a negative number.
 */
export function guardedSql(expr: string, kind: ValueKind): string {
  const formatted = formattedSql(expr, kind);
  switch (kind) {
    case 'number':
    case 'boolean':
    case 'array':
      return formatted;
    case 'timestamptz':
    case 'timestamp':
      return `(case when ${expr} = '-infinity' then '''-infinity' else ${formatted} end)`;
    case 'json':
      return `(case when left(ltrim(${expr}::text, E' \\t\\n\\r'), 1) = '-' then '''' || ${formatted} else ${formatted} end)`;
    default:
      return `(case when left(${expr}::text, 1) in ${FORMULA_START} then '''' || ${expr}::text else ${expr}::text end)`;
  }
}

/** HMAC-SHA256 (as bytea) of a bytea expression, with sha256() and the key's pads bound as hex. */
function hmacSql(key: string, message: string): SqlQuery {
  const block = 64;
  let keyBytes = Buffer.from(key, 'utf8');
  if (keyBytes.length > block) keyBytes = createHash('sha256').update(keyBytes).digest();
  const padded = Buffer.alloc(block);
  keyBytes.copy(padded);
  const inner = Buffer.from(padded.map((b) => b ^ 0x36));
  const outer = Buffer.from(padded.map((b) => b ^ 0x5c));
  return {
    sql: `sha256(decode(?, 'hex') || sha256(decode(?, 'hex') || ${message}))`,
    bindings: [outer.toString('hex'), inner.toString('hex')],
  };
}

/** profile.ts's pseudonymiser: HMAC-SHA256 of the text, as 64 hex digits. */
export function pseudonymCellSql(key: string, text: string): SqlQuery {
  const mac = hmacSql(key, `convert_to(${text}, 'UTF8')`);
  return { sql: `encode(${mac.sql}, 'hex')`, bindings: mac.bindings };
}

/** profile.ts's toYear. */
export function yearSql(text: string): string {
  return `substring(${text} from ${regex(String.raw`^(\d{4})(?:-|$)`)})`;
}

// JavaScript's \s and String.prototype.trim: these characters and no others.
const JS_SPACE = String.raw`[\t\n\u000b\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]`;
// The characters whose toUpperCase() is ASCII although they are not: ß → SS, ı → I, ſ → S, ligatures.
const UPPER_TO_ASCII: [string, string][] = [
  ['ß', 'SS'],
  ['ı', 'I'],
  ['ſ', 'S'],
  ['ﬀ', 'FF'],
  ['ﬁ', 'FI'],
  ['ﬂ', 'FL'],
  ['ﬃ', 'FFI'],
  ['ﬄ', 'FFL'],
  ['ﬅ', 'ST'],
  ['ﬆ', 'ST'],
];

/**
 * profile.ts's toPostcodeOutward. toUpperCase() is done as JavaScript does it for what can still
 * match a UK postcode (ASCII letters, and the few characters whose capital is ASCII); any other
 * character leaves no postcode, upper case or not, so the database's own locale plays no part.
 */
export function postcodeOutwardSql(text: string): string {
  let upper = `regexp_replace(${text}, ${regex(`^${JS_SPACE}+|${JS_SPACE}+$`)}, '', 'g')`;
  for (const [from, to] of UPPER_TO_ASCII) upper = `replace(${upper}, ${literal(from)}, ${literal(to)})`;
  upper = `translate(${upper}, 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')`;
  const compact = `regexp_replace(${upper}, ${regex(`${JS_SPACE}+`)}, ' ', 'g')`;
  return `(select coalesce(substring(c from ${regex(String.raw`^([A-Z]{1,2}[0-9][A-Z0-9]?) ?[0-9][A-Z]{2}$`)}), case when c ~ ${regex(
    String.raw`^[A-Z]{1,2}[0-9][A-Z0-9]?$`,
  )} then c end) from (select ${compact} as c) as p)`;
}

/** profile.ts's dateShiftDays: the first 4 bytes of HMAC(key, `date-shift\0` + patient) → ±1…182 days. */
function shiftDaysSql(key: string, patient: string): SqlQuery {
  const prefix = Buffer.from('date-shift\u0000', 'utf8').toString('hex');
  const mac = hmacSql(key, `'\\x${prefix}'::bytea || convert_to(${patient}, 'UTF8')`);
  const n = `((get_byte(h, 0)::bigint * 16777216 + get_byte(h, 1) * 65536 + get_byte(h, 2) * 256 + get_byte(h, 3)) % ${2 * MAX_SHIFT_DAYS})`;
  return {
    sql: `(select case when ${n} < ${MAX_SHIFT_DAYS} then ${n} - ${MAX_SHIFT_DAYS} else ${n} - ${MAX_SHIFT_DAYS - 1} end from (select ${mac.sql} as h) as m)`,
    bindings: mac.bindings,
  };
}

// profile.ts's FHIR_DATE.
const FHIR_DATE = String.raw`^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?=$|[T ])(.*)$`;

/**
 * profile.ts's shiftFhirDate over the row's patient: the date moved the way JavaScript's Date.UTC
 * moves it (months and days past their end roll over; year 0 is 1 BC), written back at its precision.
 */
export function dateShiftSql(key: string, text: string, patient: SqlQuery | undefined): SqlQuery {
  if (!patient) return { sql: 'null::text', bindings: [] };
  const days = shiftDaysSql(key, `(${patient.sql})::text`);
  // Astronomical year (0 = 1 BC, as JavaScript counts) and JavaScript's padStart(4, '0').
  const year = `(case when extract(year from d) < 0 then extract(year from d)::int + 1 else extract(year from d)::int end)::text`;
  const y = `(case when length(${year}) >= 4 then ${year} else lpad(${year}, 4, '0') end)`;
  const moved = `(date '2000-01-01' + make_interval(months => (m[1]::int - 2000) * 12 + coalesce(m[2], '01')::int - 1))::date + (coalesce(m[3], '01')::int - 1 + s::int)`;
  return {
    sql:
      `(select case when m[3] is not null then ${y} || to_char(d, '-MM-DD') || m[4] when m[2] is not null then ${y} || to_char(d, '-MM') else ${y} end` +
      ` from (select m, ${moved} as d from (select regexp_match(${text}, ${regex(FHIR_DATE)}) as m, ${days.sql} as s) as r where m is not null and s is not null) as t)`,
    bindings: [...days.bindings, ...patient.bindings],
  };
}

/**
 * The SQL of one output cell of `column` (a column of `q`), or undefined when the research profile
 * drops it. A treated value is not guarded: a pseudonym, a year, an outward code or a shifted date
 * never starts with a formula character.
 */
export function cellSql(column: CellColumn, plan: CellPlan): SqlQuery | undefined {
  const expr = `q.${quoteIdent(column.name)}`;
  const keep = (): SqlQuery => ({ sql: plan.formulaGuard ? guardedSql(expr, column.kind) : formattedSql(expr, column.kind), bindings: [] });
  if (plan.profile === 'clinical') return keep();
  const key = plan.pseudonymKey!;
  const text = formattedSql(expr, column.kind);
  switch (column.treatment) {
    case 'drop':
      return undefined;
    case 'pseudonym':
      return pseudonymCellSql(key, text);
    case 'year':
      return { sql: yearSql(text), bindings: [] };
    case 'postcode_outward':
      return { sql: postcodeOutwardSql(text), bindings: [] };
    case 'date_shift':
      return dateShiftSql(key, text, plan.patientKey);
    case 'birth_date':
      return plan.birthDate === 'shift' ? dateShiftSql(key, text, plan.patientKey) : { sql: yearSql(text), bindings: [] };
    default:
      return keep();
  }
}
