/**
 * The FHIRPath value model: collections are JS arrays of FHIR JSON values, and decimals keep their
 * precision when the resource was parsed with lossless-json (a LosslessNumber carries the original
 * text, `1.0`, which lowBoundary()/highBoundary() and decimal columns use). Here are what every other
 * part of the FHIRPath code shares: the evaluation context, the errors, singleton and boolean
 * conversions, equality and the operators on values, and the boundaries of a decimal, date or time.
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';

/** A FHIRPath collection: the items in order, never null or undefined. */
export type Collection = unknown[];

/** What one evaluation can see besides its input: the resource and the row being built. */
export interface EvaluationContext {
  /** %resource and %rootResource, and what getResourceKey() is called on at the start of a path. */
  resource: unknown;
  /** %rowIndex: 0-based index of the current forEach / forEachOrNull / repeat item (0 at the resource). */
  rowIndex: number;
  /** $index inside where / select / exists / all / repeat; set by the compiled lambdas. */
  index?: number;
}

/** A compiled expression: its result on an input collection. */
export type Evaluator = (input: Collection, context: EvaluationContext) => Collection;

/** evaluateItem's answer for an empty result. */
export const NO_ITEM: unique symbol = Symbol('no item');
/** evaluateItem's answer when the result needs a collection: evaluate() gives it. */
export const MANY_ITEMS: unique symbol = Symbol('many items');

/** A problem that makes an expression unusable: bad syntax, unknown function, unknown constant. */
export class FhirPathCompileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FhirPathCompileError';
  }
}

/** A problem evaluating an expression on one resource (for example two values where one is required). */
export class FhirPathEvaluationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FhirPathEvaluationError';
  }
}

/** The evaluator of `$this`: its input as is. */
export const identity: Evaluator = (input) => input;
/** The empty collection, shared: never mutated. */
export const EMPTY: Collection = [];

/** Number value of a JS number or LosslessNumber, else undefined. */
export function numberValue(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (isLosslessNumber(v)) return parseFloat((v as LosslessNumber).value);
  return undefined;
}

/** Whether v is a whole number (JS number or LosslessNumber without a fraction). */
export function isIntegerValue(v: unknown): boolean {
  if (typeof v === 'number') return Number.isInteger(v);
  return isLosslessNumber(v) && /^-?\d+$/.test((v as LosslessNumber).value);
}

/** Lossless numbers become numbers; everything else is compared as is. */
export function primitive(v: unknown): unknown {
  return isLosslessNumber(v) ? parseFloat((v as LosslessNumber).value) : v;
}

/** A value's kind for error messages (`a string`, `an object`); never the value itself. */
export function describeValue(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isLosslessNumber(v)) return 'a number';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

/** FHIRPath `=` on two items: numbers by value (lossless or not), objects member by member. */
export function deepEqual(a: unknown, b: unknown): boolean {
  a = primitive(a);
  b = primitive(b);
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** FHIRPath singleton evaluation to a boolean: empty → undefined, one boolean → it, one other item → true. */
export function toBoolean(c: Collection, what: string): boolean | undefined {
  if (c.length === 0) return undefined;
  if (c.length > 1) throw new FhirPathEvaluationError(`${what} expects a single boolean, got ${c.length} items`);
  const v = c[0];
  return typeof v === 'boolean' ? v : true;
}

/** The one item of c, or undefined when empty; more than one is an evaluation error naming `what`. */
export function single(c: Collection, what: string): unknown {
  if (c.length > 1) throw new FhirPathEvaluationError(`${what} expects a single item, got ${c.length}`);
  return c[0];
}

/** The boolean results, shared: `bool(undefined)` is the empty collection. */
export const TRUE: Collection = [true];
export const FALSE: Collection = [false];
export const bool = (b: boolean | undefined): Collection => (b === undefined ? EMPTY : b ? TRUE : FALSE);

// ---------------------------------------------------------------------------------------------
// Boundaries (FHIRPath lowBoundary / highBoundary)

function decimalBoundary(v: unknown, high: boolean, precision?: number): unknown {
  const text = isLosslessNumber(v) ? (v as LosslessNumber).value : typeof v === 'number' ? String(v) : undefined;
  if (text === undefined || /e/i.test(text)) return undefined;
  const digits = text.includes('.') ? text.length - text.indexOf('.') - 1 : 0;
  const half = 5 * 10 ** -(digits + 1);
  const value = parseFloat(text) + (high ? half : -half);
  const outDigits = precision ?? digits + 1;
  if (outDigits > 28) return undefined;
  return new LosslessNumber(value.toFixed(outDigits));
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

function dateBoundary(v: string, high: boolean): string | undefined {
  const m = /^(\d{4})(?:-(\d\d)(?:-(\d\d))?)?$/.exec(v);
  if (!m) return undefined;
  const year = Number(m[1]);
  const month = m[2] ? Number(m[2]) : high ? 12 : 1;
  const day = m[3] ? Number(m[3]) : high ? daysInMonth(year, month) : 1;
  return `${m[1]}-${pad(month)}-${pad(day)}`;
}

function timeBoundary(v: string, high: boolean): string | undefined {
  const m = /^(\d\d)(?::(\d\d)(?::(\d\d)(?:\.(\d+))?)?)?$/.exec(v);
  if (!m) return undefined;
  const fill = (part: string | undefined, max: string): string => part ?? (high ? max : '00');
  const ms = m[4] ? m[4].slice(0, 3).padEnd(3, high ? '9' : '0') : high ? '999' : '000';
  return `${m[1]}:${fill(m[2], '59')}:${fill(m[3], '59')}.${ms}`;
}

function dateTimeBoundary(v: string, high: boolean): string | undefined {
  const m = /^(\d{4}(?:-\d\d(?:-\d\d)?)?)(?:T([0-9:.]*)(Z|[+-]\d\d:\d\d)?)?$/.exec(v);
  if (!m) return undefined;
  const date = dateBoundary(m[1]!, high);
  const time = timeBoundary(m[2] || (high ? '23' : '00'), high);
  if (!date || !time) return undefined;
  return `${date}T${time}${m[3] ?? (high ? '-12:00' : '+14:00')}`;
}

/** lowBoundary() / highBoundary() of one decimal, date, dateTime or time (undefined when it has none). */
export function boundary(v: unknown, type: string | undefined, high: boolean, precision?: number): unknown {
  if (typeof v !== 'string') return decimalBoundary(v, high, precision);
  const t = type?.toLowerCase();
  if (t === 'date') return dateBoundary(v, high);
  if (t === 'datetime' || t === 'instant') return dateTimeBoundary(v, high);
  if (t === 'time') return timeBoundary(v, high);
  if (v.includes('T')) return dateTimeBoundary(v, high);
  if (/^\d\d:/.test(v)) return timeBoundary(v, high);
  return dateBoundary(v, high);
}

// ---------------------------------------------------------------------------------------------
// Operators

/** `=`: empty when either side is; else true when both have equal items in the same order. */
export function equality(l: Collection, r: Collection): Collection {
  if (l.length === 0 || r.length === 0) return EMPTY;
  if (l.length !== r.length) return FALSE;
  for (let i = 0; i < l.length; i++) if (!deepEqual(l[i], r[i])) return FALSE;
  return TRUE;
}

function normalizeString(s: string): string {
  return s.toLowerCase().replace(/\s+/g, ' ').trim();
}

function equivalent(a: unknown, b: unknown): boolean {
  if (typeof a === 'string' && typeof b === 'string') return normalizeString(a) === normalizeString(b);
  return deepEqual(a, b);
}

/** `~`: the same items in any order, strings compared without case or extra white space. */
export function equivalence(l: Collection, r: Collection): boolean {
  if (l.length !== r.length) return false;
  return l.every((a) => r.some((b) => equivalent(a, b)));
}

/** `<`, `>`, `<=`, `>=` on two numbers or two strings; empty when either side is. */
export function compare(op: string, l: Collection, r: Collection): Collection {
  if (l.length === 0 || r.length === 0) return EMPTY;
  const a = primitive(single(l, `'${op}'`));
  const b = primitive(single(r, `'${op}'`));
  if (!((typeof a === 'number' && typeof b === 'number') || (typeof a === 'string' && typeof b === 'string'))) {
    throw new FhirPathEvaluationError(`'${op}' cannot compare ${describeValue(a)} with ${describeValue(b)}`);
  }
  switch (op) {
    case '<':
      return bool(a < b);
    case '>':
      return bool(a > b);
    case '<=':
      return bool(a <= b);
    default:
      return bool(a >= b);
  }
}

/** `+ - * / div mod` on numbers, `+` on strings, and `&` (empty as ''); division by zero is empty. */
export function arithmetic(op: string, l: Collection, r: Collection): Collection {
  if (op === '&') {
    const a = single(l, "'&'") ?? '';
    const b = single(r, "'&'") ?? '';
    return [String(primitive(a)) + String(primitive(b))];
  }
  if (l.length === 0 || r.length === 0) return EMPTY;
  const a = primitive(single(l, `'${op}'`));
  const b = primitive(single(r, `'${op}'`));
  if (op === '+' && typeof a === 'string' && typeof b === 'string') return [a + b];
  if (typeof a !== 'number' || typeof b !== 'number') {
    throw new FhirPathEvaluationError(`'${op}' needs numbers, got ${describeValue(a)} and ${describeValue(b)}`);
  }
  switch (op) {
    case '+':
      return [a + b];
    case '-':
      return [a - b];
    case '*':
      return [a * b];
    case '/':
      return b === 0 ? EMPTY : [a / b];
    case 'div':
      return b === 0 ? EMPTY : [Math.trunc(a / b)];
    default:
      return b === 0 ? EMPTY : [a % b];
  }
}

/** `|`: the items of both, without duplicates. */
export function union(l: Collection, r: Collection): Collection {
  const out: unknown[] = [];
  for (const v of [...l, ...r]) if (!out.some((o) => deepEqual(o, v))) out.push(v);
  return out;
}

/** `in`: whether the single item is in the collection (empty when there is no item). */
export function membership(item: Collection, collection: Collection): Collection {
  if (item.length === 0) return EMPTY;
  const v = single(item, "'in'");
  return bool(collection.some((c) => deepEqual(c, v)));
}
