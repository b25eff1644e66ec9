/**
 * FHIRPath compiler: each expression is parsed and turned ONCE into a tree of JavaScript closures
 * that do plain property access on the resource; evaluating a resource runs no interpreter and walks
 * no syntax tree. Collections are JS arrays. Without a FHIR model, choice elements (`value[x]`) are
 * resolved by name: `value.ofType(Quantity)` reads `valueQuantity`, and a bare `value` finds the one
 * `value<Type>` key present.
 *
 * Decimals keep their precision when the resource was parsed with lossless-json: a LosslessNumber
 * carries the original text (`1.0`), which lowBoundary()/highBoundary() and decimal columns use.
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';
import { FhirPathSyntaxError, parseFhirPath, type Node } from './parser.js';

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

export type Evaluator = (input: Collection, context: EvaluationContext) => Collection;

/** A compiled FHIRPath expression. */
export interface CompiledFhirPath {
  expression: string;
  /** The syntax tree, for the code generator of codegen.ts. */
  tree: Node;
  evaluate: Evaluator;
  /** The FHIR or System type of every item, when the expression alone tells it (`exists()` → boolean). */
  type?: string;
  /**
   * The same on a single input item, when the expression is a plain path: the one item it gives,
   * NO_ITEM for none, or MANY_ITEMS when there may be more than one (then call evaluate).
   * Saves the collections of the common case, a path that gives one value.
   */
  evaluateItem?: (item: unknown) => unknown;
}

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

export interface CompileOptions {
  /** %name → value, from ViewDefinition.constant. */
  constants?: ReadonlyMap<string, Collection>;
}

/** Compiles a FHIRPath expression; throws FhirPathCompileError with a one-line reason. */
export function compileFhirPath(expression: string, options: CompileOptions = {}): CompiledFhirPath {
  let tree: Node;
  try {
    tree = parseFhirPath(expression);
  } catch (err) {
    if (err instanceof FhirPathSyntaxError) throw new FhirPathCompileError(`${err.message} at offset ${err.position}`);
    throw err;
  }
  const compiled = new Compiler(options.constants ?? new Map()).compile(tree);
  return {
    expression,
    tree,
    evaluate: compiled.fn,
    ...(compiled.type ? { type: compiled.type } : {}),
    ...(compiled.item ? { evaluateItem: compiled.item } : {}),
  };
}

interface Compiled {
  fn: Evaluator;
  type?: string;
  /** See CompiledFhirPath.evaluateItem. */
  item?: (item: unknown) => unknown;
}

const identity: Evaluator = (input) => input;
const EMPTY: Collection = [];

// ---------------------------------------------------------------------------------------------
// Values

/** FHIR data types that name the `[x]` suffix of choice elements (`valueQuantity`, `onsetDateTime`). */
const CHOICE_SUFFIXES = new Set(
  (
    'Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer Integer64 Markdown Oid PositiveInt ' +
    'String Time UnsignedInt Uri Url Uuid Address Age Annotation Attachment CodeableConcept CodeableReference Coding ' +
    'ContactPoint Count Distance Duration HumanName Identifier Money Period Quantity Range Ratio RatioRange Reference ' +
    'SampledData Signature Timing ContactDetail Contributor DataRequirement Expression ParameterDefinition ' +
    'RelatedArtifact TriggerDefinition UsageContext Dosage Meta Availability ExtendedContactDetail'
  ).split(' '),
);

/**
 * The names of every R4 choice element (`value[x]`, `onset[x]`, `deceased[x]`…), from the R4
 * StructureDefinitions (src/fhir/view/choice-elements.test.ts checks it against the R4 model of the
 * `fhirpath` package). Only these names look for a `name` + type key when `name` itself is missing:
 * that search walks every key of the object, and most missing members (an Observation without
 * `interpretation`) are not choices at all.
 */
export const CHOICE_ELEMENTS: ReadonlySet<string> = new Set([
  'abatement', 'additive', 'age', 'allowed', 'amount', 'answer', 'asNeeded', 'author', 'born', 'bounds',
  'characteristic', 'chargeItem', 'code', 'collected', 'content', 'created', 'date', 'deceased',
  'defaultValue', 'definingSubstance', 'definition', 'detail', 'diagnosis', 'dose', 'doseNumber', 'due',
  'effective', 'entity', 'event', 'example', 'fastingStatus', 'fixed', 'identified', 'indication', 'item',
  'legallyBinding', 'location', 'manufacturer', 'maxValue', 'medication', 'minValue', 'minimumVolume',
  'module', 'multipleBirth', 'name', 'occurred', 'occurrence', 'offset', 'onset', 'participantEffective',
  'pattern', 'performed', 'probability', 'procedure', 'product', 'quantity', 'rate', 'reported', 'scheduled',
  'seriesDoses', 'serviced', 'source', 'start', 'statusReason', 'studyEffective', 'subject', 'substance',
  'target', 'time', 'timing', 'topic', 'used', 'value', 'when',
]);

const STRING_TYPES = new Set(['string', 'code', 'id', 'uri', 'url', 'canonical', 'oid', 'uuid', 'markdown', 'base64binary', 'xhtml']);
const INTEGER_TYPES = new Set(['integer', 'positiveint', 'unsignedint', 'integer64']);

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
function primitive(v: unknown): unknown {
  return isLosslessNumber(v) ? parseFloat((v as LosslessNumber).value) : v;
}

function describeValue(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isLosslessNumber(v)) return 'a number';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function deepEqual(a: unknown, b: unknown): boolean {
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

/**
 * Names every JavaScript object inherits (`constructor`, `__proto__`, `hasOwnProperty`, …). No FHIR
 * element, function or constant is named so; read as `obj[name]` they would give JavaScript's own
 * functions, so a member of such a name is absent and a function or constant unknown.
 */
export const INHERITED_NAMES: ReadonlySet<string> = new Set(Object.getOwnPropertyNames(Object.prototype));

/** `table[name]` when the table itself defines it, never what it inherits. */
function ownEntry<T>(table: Record<string, T>, name: string): T | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

/** Children named `name` of every item, flattened; a missing name may be a choice element. */
function member(input: Collection, name: string): Collection {
  if (INHERITED_NAMES.has(name)) return EMPTY;
  const out: unknown[] = [];
  for (const item of input) {
    if (item === null || typeof item !== 'object' || isLosslessNumber(item)) continue;
    let v = (item as Record<string, unknown>)[name];
    if (v === undefined) v = choiceValue(item as Record<string, unknown>, name);
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) {
      for (const e of v) if (e !== null && e !== undefined) out.push(e);
    } else out.push(v);
  }
  return out;
}

/**
 * R4 elements that look like a choice (`name` + a type) but are elements of their own: without this,
 * a DiagnosticReport's `conclusion` (a string) would read its `conclusionCode` (CodeableConcepts).
 */
const NOT_CHOICE = new Set(['conclusionCode', 'reasonCode', 'reasonReference', 'procedureCode', 'procedureReference']);

export function choiceValue(item: Record<string, unknown>, name: string): unknown {
  if (!CHOICE_ELEMENTS.has(name)) return undefined;
  const first = name.charCodeAt(0);
  for (const key in item) {
    // The first character is a cheap test before startsWith and the set lookup.
    if (key.charCodeAt(0) === first && key.length > name.length && key.startsWith(name) && CHOICE_SUFFIXES.has(key.slice(name.length)) && !NOT_CHOICE.has(key)) return item[key];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Member paths: `code.coding.first().system` walked in one step, without a collection per member

/**
 * One member of a path, with what member() would check. A LosslessNumber is a JS object whose own
 * keys (`value`, `isLosslessNumber`) and methods must not read as FHIR children; for every other
 * name, reading it from a LosslessNumber gives nothing, so the (costly) check can be left out.
 */
export interface PathMember {
  name: string;
  checkLossless: boolean;
  /** A choice element name (`value`): when missing, look for `value` + a type. */
  choice: boolean;
  /** A name every object inherits (INHERITED_NAMES): the member is always absent. */
  inherited: boolean;
}

export function pathMember(name: string): PathMember {
  return {
    name,
    checkLossless: name === 'value' || name === 'isLosslessNumber' || name in LosslessNumber.prototype,
    choice: CHOICE_ELEMENTS.has(name),
    inherited: INHERITED_NAMES.has(name),
  };
}

/**
 * Splits the chain of members and first() calls at the end of `node` (`category.first().coding.code`):
 * `steps` are the member names, null for first(), outermost first; `inner` is what precedes the chain
 * (undefined when the chain starts at the input).
 */
export function pathSteps(node: Node): { steps: (string | null)[]; inner: Node | undefined } {
  const steps: (string | null)[] = [];
  let inner: Node | undefined = node;
  while (inner) {
    if (inner.kind === 'member') {
      steps.push(inner.name);
      inner = inner.base;
    } else if (inner.kind === 'call' && inner.name === 'first' && inner.args.length === 0) {
      steps.push(null);
      inner = inner.base;
    } else break;
  }
  return { steps: steps.reverse(), inner };
}

/** The child named `m` of one item, as member() reads it (undefined when there is none). */
function childOf(item: unknown, m: PathMember): unknown {
  if (item === null || typeof item !== 'object' || m.inherited || (m.checkLossless && isLosslessNumber(item))) return undefined;
  let v = (item as Record<string, unknown>)[m.name];
  if (v === undefined && m.choice) v = choiceValue(item as Record<string, unknown>, m.name);
  return v === null ? undefined : v;
}

/** Appends what `names[i..]` gives from one item to out, in member()'s order. */
function collectPath(item: unknown, names: readonly PathMember[], i: number, out: unknown[]): void {
  const v = childOf(item, names[i]!);
  if (v === undefined) return;
  const last = i === names.length - 1;
  if (Array.isArray(v)) {
    for (const e of v) {
      if (e === null || e === undefined) continue;
      if (last) out.push(e);
      else collectPath(e, names, i + 1, out);
    }
  } else if (last) out.push(v);
  else collectPath(v, names, i + 1, out);
}

/** What `names` gives from one item; a path of single values allocates only the result. */
function pathFrom(item: unknown, names: readonly PathMember[]): Collection {
  let current = item;
  for (let i = 0; i < names.length; i++) {
    const v = childOf(current, names[i]!);
    if (v === undefined) return EMPTY;
    if (Array.isArray(v)) {
      const out: unknown[] = [];
      const last = i === names.length - 1;
      for (const e of v) {
        if (e === null || e === undefined) continue;
        if (last) out.push(e);
        else collectPath(e, names, i + 1, out);
      }
      return out.length ? out : EMPTY;
    }
    current = v;
  }
  return [current];
}

/** The first item `names` gives from one item (`path.first()`), or undefined; stops at the first. */
function firstOfPath(item: unknown, names: readonly PathMember[], start: number): unknown {
  let current = item;
  for (let i = start; i < names.length; i++) {
    const v = childOf(current, names[i]!);
    if (v === undefined) return undefined;
    if (Array.isArray(v)) {
      const last = i === names.length - 1;
      for (const e of v) {
        if (e === null || e === undefined) continue;
        const found = last ? e : firstOfPath(e, names, i + 1);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    current = v;
  }
  return current;
}

/** A run of members, then first() or not. */
interface PathSegment {
  names: PathMember[];
  first: boolean;
}

/** runPath on one item, for CompiledFhirPath.evaluateItem. */
function itemOfPath(segments: readonly PathSegment[], item: unknown): unknown {
  let current = item;
  for (const segment of segments) {
    const names = segment.names;
    if (segment.first) {
      current = firstOfPath(current, names, 0);
      if (current === undefined) return NO_ITEM;
      continue;
    }
    for (let i = 0; i < names.length; i++) {
      const v = childOf(current, names[i]!);
      if (v === undefined) return NO_ITEM;
      if (Array.isArray(v)) {
        const only = v.length === 1 ? v[0] : undefined;
        if (only === undefined || only === null) return MANY_ITEMS; // let runPath sort out the rest
        current = only;
      } else current = v;
    }
  }
  return current;
}

/** Evaluates segments on a collection: one state variable for a single item, a collection otherwise. */
function runPath(segments: readonly PathSegment[], input: Collection): Collection {
  let many: Collection | undefined = input;
  let one: unknown;
  for (const segment of segments) {
    const names = segment.names;
    if (segment.first) {
      if (many && names.length === 0) {
        // A plain first(): a collection of one is its own first.
        if (many.length <= 1) {
          if (many.length === 0) return EMPTY;
          continue;
        }
        one = many[0];
        many = undefined;
        continue;
      }
      let found: unknown;
      if (many) {
        for (const item of many) {
          found = firstOfPath(item, names, 0);
          if (found !== undefined) break;
        }
      } else found = firstOfPath(one, names, 0);
      if (found === undefined) return EMPTY;
      one = found;
      many = undefined;
    } else {
      if (many) {
        if (many.length === 1) many = pathFrom(many[0], names);
        else {
          const out: unknown[] = [];
          for (const item of many) collectPath(item, names, 0, out);
          many = out;
        }
      } else many = pathFrom(one, names);
      if (many.length === 0) return EMPTY;
    }
  }
  return many ?? [one];
}

/** Runtime type test for ofType / is / as, by JSON shape since no model is loaded. */
function isOfType(v: unknown, type: string): boolean {
  const t = type.replace(/^(System|FHIR)\./, '');
  const lower = t.toLowerCase();
  if (lower === 'boolean') return typeof v === 'boolean';
  if (INTEGER_TYPES.has(lower)) return isIntegerValue(v);
  if (lower === 'decimal') return numberValue(v) !== undefined;
  if (STRING_TYPES.has(lower)) return typeof v === 'string';
  if (lower === 'date') return typeof v === 'string' && /^\d{4}(-\d\d(-\d\d)?)?$/.test(v);
  if (lower === 'datetime' || lower === 'instant') return typeof v === 'string' && /^\d{4}(-\d\d(-\d\d(T.*)?)?)?$/.test(v);
  if (lower === 'time') return typeof v === 'string' && /^\d\d(:\d\d(:\d\d(\.\d+)?)?)?$/.test(v);
  if (v === null || typeof v !== 'object' || Array.isArray(v) || isLosslessNumber(v)) return false;
  const resourceType = (v as { resourceType?: unknown }).resourceType;
  if (typeof resourceType === 'string') return t === resourceType || t === 'Resource' || t === 'DomainResource';
  // A complex data type: the shape cannot tell a Quantity from a Coding without a model.
  return /^[A-Z]/.test(t);
}

/** FHIRPath singleton evaluation to a boolean: empty → undefined, one boolean → it, one other item → true. */
function toBoolean(c: Collection, what: string): boolean | undefined {
  if (c.length === 0) return undefined;
  if (c.length > 1) throw new FhirPathEvaluationError(`${what} expects a single boolean, got ${c.length} items`);
  const v = c[0];
  return typeof v === 'boolean' ? v : true;
}

function single(c: Collection, what: string): unknown {
  if (c.length > 1) throw new FhirPathEvaluationError(`${what} expects a single item, got ${c.length}`);
  return c[0];
}

const TRUE: Collection = [true];
const FALSE: Collection = [false];
const bool = (b: boolean | undefined): Collection => (b === undefined ? EMPTY : b ? TRUE : FALSE);

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

function boundary(v: unknown, type: string | undefined, high: boolean, precision?: number): unknown {
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
// References

/** Whether s from `start` on is a FHIR id (`[A-Za-z0-9\-.]{1,64}`), tested by character codes. */
function isReferenceId(s: string, start: number): boolean {
  if (s.length <= start || s.length - start > 64) return false;
  for (let i = start; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // 0-9, A-Z, a-z, '-', '.'
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46)) return false;
  }
  return true;
}
const REFERENCE_TYPE = /^[A-Z][A-Za-z]+$/;

/** The id part of a `Type/id` reference (absolute, versioned or relative), if its type matches. */
function referenceKey(ref: unknown, type?: string, typeIsName = type === undefined || REFERENCE_TYPE.test(type)): string | undefined {
  if (ref === null || typeof ref !== 'object') return undefined;
  const reference = (ref as { reference?: unknown }).reference;
  if (typeof reference !== 'string') return undefined;
  const uuid = reference.startsWith('urn:uuid:') ? /^urn:uuid:(.+)$/.exec(reference) : null;
  if (uuid) {
    const declared = (ref as { type?: unknown }).type;
    if (type && typeof declared === 'string' && declared !== type) return undefined;
    return uuid[1];
  }
  // `Type/id` of the type asked for: one pass over the id, whose characters exclude another '/'.
  if (type && typeIsName && reference.charCodeAt(type.length) === 47 && reference.startsWith(type) && isReferenceId(reference, type.length + 1)) {
    return reference.slice(type.length + 1);
  }
  // Any other `Type/id`: one slash, checked without the general expression below.
  const slash = reference.indexOf('/');
  if (slash > 0 && reference.indexOf('/', slash + 1) < 0) {
    if (!isReferenceId(reference, slash + 1)) return undefined;
    const id = reference.slice(slash + 1);
    if (type) return reference.length === type.length + 1 + id.length && reference.startsWith(type) && typeIsName ? id : undefined;
    return REFERENCE_TYPE.test(reference.slice(0, slash)) ? id : undefined;
  }
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(reference);
  if (!m) return undefined;
  if (type && m[1] !== type) return undefined;
  return m[2];
}

/** getReferenceKey()'s key of one Reference (undefined for none), its type argument read once. */
export function referenceKeyReader(args: readonly Node[]): (ref: unknown) => string | undefined {
  const type = args[0] ? typeName(args[0]).replace(/^FHIR\./, '') : undefined;
  const typeIsName = type === undefined || REFERENCE_TYPE.test(type);
  return (ref) => referenceKey(ref, type, typeIsName);
}

// ---------------------------------------------------------------------------------------------
// Operators

function equality(l: Collection, r: Collection): Collection {
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

function equivalence(l: Collection, r: Collection): boolean {
  if (l.length !== r.length) return false;
  return l.every((a) => r.some((b) => equivalent(a, b)));
}

function compare(op: string, l: Collection, r: Collection): Collection {
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

function arithmetic(op: string, l: Collection, r: Collection): Collection {
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

function union(l: Collection, r: Collection): Collection {
  const out: unknown[] = [];
  for (const v of [...l, ...r]) if (!out.some((o) => deepEqual(o, v))) out.push(v);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The compiler

type FunctionCompiler = (c: Compiler, base: Compiled, args: Node[], call: Extract<Node, { kind: 'call' }>) => Compiled;
interface FunctionSpec {
  min: number;
  max: number;
  compile: FunctionCompiler;
}

/** Compiles an argument that is evaluated once per item with that item as $this (where, select, ...). */
function lambda(c: Compiler, arg: Node): (item: unknown, index: number, ctx: EvaluationContext) => Collection {
  const fn = c.compile(arg).fn;
  return (item, index, ctx) => {
    const saved = ctx.index;
    ctx.index = index;
    try {
      return fn([item], ctx);
    } finally {
      ctx.index = saved;
    }
  };
}

/** The name in a type argument: `Quantity`, `FHIR.Quantity`, `System.String`. */
function typeName(arg: Node): string {
  if (arg.kind === 'member' && !arg.base) return arg.name;
  if (arg.kind === 'member' && arg.base?.kind === 'member' && !arg.base.base) return `${arg.base.name}.${arg.name}`;
  throw new FhirPathCompileError('expected a type name');
}

/** The type argument of ofType() without its namespace: `FHIR.Quantity` → `Quantity`. */
export function bareTypeName(arg: Node): string {
  return typeName(arg).replace(/^(System|FHIR)\./, '');
}

/** The JSON key of a choice element of one type: `value` and `Quantity` → `valueQuantity`. */
export function choiceKey(name: string, bareType: string): string {
  return name + capitalize(bareType);
}

/** A function whose result depends only on its input collection. */
function collectionFn(fn: (input: Collection) => Collection, type?: string | ((base: Compiled) => string | undefined)): FunctionSpec {
  return {
    min: 0,
    max: 0,
    compile: (_c, base) => {
      const b = base.fn;
      const t = typeof type === 'function' ? type(base) : type;
      return { fn: (input, ctx) => fn(b(input, ctx)), ...(t ? { type: t } : {}) };
    },
  };
}

/** A function on a single string input, with arguments evaluated against the outer input. */
function stringFn(min: number, max: number, fn: (s: string, args: unknown[]) => unknown, type?: string): FunctionSpec {
  return {
    min,
    max,
    compile: (c, base, args) => {
      const b = base.fn;
      const argFns = args.map((a) => c.compile(a).fn);
      return {
        fn: (input, ctx) => {
          const s = single(b(input, ctx), 'string function');
          if (s === undefined) return EMPTY;
          if (typeof s !== 'string') throw new FhirPathEvaluationError(`expected a string, got ${describeValue(s)}`);
          const values: unknown[] = [];
          for (const a of argFns) {
            const v = single(a(input, ctx), 'argument');
            if (v === undefined) return EMPTY;
            values.push(primitive(v));
          }
          const result = fn(s, values);
          return result === undefined ? EMPTY : [result];
        },
        ...(type ? { type } : {}),
      };
    },
  };
}

function mathFn(fn: (n: number) => number): FunctionSpec {
  return collectionFn((input) => {
    const v = numberValue(single(input, 'math function'));
    return v === undefined ? EMPTY : [fn(v)];
  });
}

function boundaryFn(high: boolean): FunctionSpec {
  return {
    min: 0,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const precision = args[0] ? c.compile(args[0]).fn : undefined;
      return {
        fn: (input, ctx) => {
          const out: unknown[] = [];
          const p = precision ? numberValue(precision(input, ctx)[0]) : undefined;
          for (const v of b(input, ctx)) {
            const r = boundary(v, base.type, high, p);
            if (r !== undefined) out.push(r);
          }
          return out;
        },
        ...(base.type ? { type: base.type } : {}),
      };
    },
  };
}

const FUNCTIONS: Record<string, FunctionSpec> = {
  empty: collectionFn((input) => bool(input.length === 0), 'boolean'),
  exists: {
    min: 0,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      if (!args[0]) return { fn: (input, ctx) => bool(b(input, ctx).length > 0), type: 'boolean' };
      const criteria = lambda(c, args[0]);
      return {
        fn: (input, ctx) => bool(b(input, ctx).some((item, i) => toBoolean(criteria(item, i, ctx), 'exists()') === true)),
        type: 'boolean',
      };
    },
  },
  not: collectionFn((input) => {
    const v = toBoolean(input, 'not()');
    return v === undefined ? EMPTY : bool(!v);
  }, 'boolean'),
  first: collectionFn((input) => (input.length ? [input[0]] : EMPTY), (b) => b.type),
  last: collectionFn((input) => (input.length ? [input[input.length - 1]] : EMPTY), (b) => b.type),
  tail: collectionFn((input) => input.slice(1), (b) => b.type),
  single: collectionFn((input) => {
    if (input.length > 1) throw new FhirPathEvaluationError(`single() got ${input.length} items`);
    return input;
  }, (b) => b.type),
  count: collectionFn((input) => [input.length], 'integer'),
  distinct: collectionFn((input) => union(input, EMPTY), (b) => b.type),
  isDistinct: collectionFn((input) => bool(union(input, EMPTY).length === input.length), 'boolean'),
  hasValue: collectionFn((input) => bool(input.length === 1 && (typeof input[0] !== 'object' || isLosslessNumber(input[0]))), 'boolean'),
  allTrue: collectionFn((input) => bool(input.every((v) => v === true)), 'boolean'),
  anyTrue: collectionFn((input) => bool(input.some((v) => v === true)), 'boolean'),
  allFalse: collectionFn((input) => bool(input.every((v) => v === false)), 'boolean'),
  anyFalse: collectionFn((input) => bool(input.some((v) => v === false)), 'boolean'),
  skip: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const n = c.compile(args[0]!).fn;
      return { fn: (input, ctx) => b(input, ctx).slice(Math.max(0, numberValue(n(input, ctx)[0]) ?? 0)) };
    },
  },
  take: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const n = c.compile(args[0]!).fn;
      return { fn: (input, ctx) => b(input, ctx).slice(0, Math.max(0, numberValue(n(input, ctx)[0]) ?? 0)) };
    },
  },
  where: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const criteria = lambda(c, args[0]!);
      return {
        fn: (input, ctx) => b(input, ctx).filter((item, i) => toBoolean(criteria(item, i, ctx), 'where()') === true),
        ...(base.type ? { type: base.type } : {}),
      };
    },
  },
  select: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const projection = lambda(c, args[0]!);
      return { fn: (input, ctx) => b(input, ctx).flatMap((item, i) => projection(item, i, ctx)) };
    },
  },
  repeat: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const projection = lambda(c, args[0]!);
      return {
        fn: (input, ctx) => {
          const out: unknown[] = [];
          let queue = b(input, ctx).flatMap((item, i) => projection(item, i, ctx));
          while (queue.length) {
            const next: unknown[] = [];
            for (const item of queue) {
              if (out.some((o) => deepEqual(o, item))) continue;
              out.push(item);
              next.push(...projection(item, 0, ctx));
            }
            queue = next;
          }
          return out;
        },
      };
    },
  },
  all: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const criteria = lambda(c, args[0]!);
      return {
        fn: (input, ctx) => bool(b(input, ctx).every((item, i) => toBoolean(criteria(item, i, ctx), 'all()') === true)),
        type: 'boolean',
      };
    },
  },
  iif: {
    min: 2,
    max: 3,
    compile: (c, base, args) => {
      const b = base.fn;
      const [cond, yes, no] = args.map((a) => c.compile(a).fn);
      return {
        fn: (input, ctx) => {
          const focus = b(input, ctx);
          if (toBoolean(cond!(focus, ctx), 'iif()') === true) return yes!(focus, ctx);
          return no ? no(focus, ctx) : EMPTY;
        },
      };
    },
  },
  ofType: {
    min: 1,
    max: 1,
    compile: (c, base, args, call) => {
      const bare = bareTypeName(args[0]!);
      // `value.ofType(Quantity)` → `valueQuantity`: compile the choice element access directly.
      const receiver = call.base;
      if (receiver?.kind === 'member') {
        const parent = receiver.base ? c.compile(receiver.base).fn : identity;
        const name = receiver.name;
        const inherited = INHERITED_NAMES.has(name);
        const choice = choiceKey(name, bare);
        const choiceMember = pathMember(choice);
        // On one item: its choice element, unless a list or a `name` element too make a collection.
        const item = receiver.base
          ? undefined
          : (x: unknown): unknown => {
              const chosen = childOf(x, choiceMember);
              if (Array.isArray(chosen)) return MANY_ITEMS;
              if (x !== null && typeof x === 'object') {
                const direct = inherited ? undefined : (x as Record<string, unknown>)[name];
                if (direct !== undefined && direct !== null) return MANY_ITEMS;
              }
              return chosen === undefined ? NO_ITEM : chosen;
            };
        return {
          ...(item ? { item } : {}),
          fn: (input, ctx) => {
            const items = parent(input, ctx);
            if (items.length === 1) {
              // The same as below for one item, without the copies.
              const item = items[0];
              let out: unknown[] | undefined;
              const chosen = childOf(item, choiceMember);
              if (Array.isArray(chosen)) {
                out = [];
                for (const e of chosen) if (e !== null && e !== undefined) out.push(e);
              } else if (chosen !== undefined) out = [chosen];
              if (item !== null && typeof item === 'object') {
                const direct = inherited ? undefined : (item as Record<string, unknown>)[name];
                if (direct !== undefined && direct !== null) {
                  for (const v of Array.isArray(direct) ? direct : [direct]) if (isOfType(v, bare)) (out ??= []).push(v);
                }
              }
              return out && out.length ? out : EMPTY;
            }
            const out = member(items, choice);
            for (const item of items) {
              if (item === null || typeof item !== 'object') continue;
              const direct = inherited ? undefined : (item as Record<string, unknown>)[name];
              if (direct === undefined || direct === null) continue;
              for (const v of Array.isArray(direct) ? direct : [direct]) if (isOfType(v, bare)) out.push(v);
            }
            return out;
          },
          type: bare,
        };
      }
      const b = base.fn;
      return { fn: (input, ctx) => b(input, ctx).filter((v) => isOfType(v, bare)), type: bare };
    },
  },
  is: {
    min: 1,
    max: 1,
    compile: (_c, base, args) => {
      const type = typeName(args[0]!);
      const b = base.fn;
      return {
        fn: (input, ctx) => {
          const v = single(b(input, ctx), 'is()');
          return v === undefined ? EMPTY : bool(isOfType(v, type));
        },
        type: 'boolean',
      };
    },
  },
  as: {
    min: 1,
    max: 1,
    compile: (_c, base, args) => {
      const type = typeName(args[0]!);
      const b = base.fn;
      return { fn: (input, ctx) => b(input, ctx).filter((v) => isOfType(v, type)), type: type.replace(/^(System|FHIR)\./, '') };
    },
  },
  join: {
    min: 0,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const separator = args[0] ? c.compile(args[0]).fn : undefined;
      return {
        fn: (input, ctx) => {
          const sep = separator ? single(separator(input, ctx), 'join()') : '';
          return [b(input, ctx).map((v) => String(primitive(v))).join(typeof sep === 'string' ? sep : '')];
        },
        type: 'string',
      };
    },
  },
  extension: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const url = c.compile(args[0]!).fn;
      return {
        fn: (input, ctx) => {
          const u = single(url(input, ctx), 'extension()');
          return member(b(input, ctx), 'extension').filter((e) => (e as { url?: unknown }).url === u);
        },
        type: 'Extension',
      };
    },
  },
  getResourceKey: collectionFn((input) => {
    if (input.length === 1) {
      const r = input[0];
      const id = r !== null && typeof r === 'object' ? (r as { id?: unknown }).id : undefined;
      return typeof id === 'string' ? [id] : EMPTY;
    }
    const out: unknown[] = [];
    for (const r of input) {
      const id = r !== null && typeof r === 'object' ? (r as { id?: unknown }).id : undefined;
      if (typeof id === 'string') out.push(id);
    }
    return out;
  }, 'string'),
  getReferenceKey: {
    min: 0,
    max: 1,
    compile: (_c, base, args) => {
      const keyOf = referenceKeyReader(args);
      const b = base.fn;
      const bItem = base.item;
      return {
        ...(bItem
          ? {
              item: (item: unknown) => {
                const ref = bItem(item);
                if (ref === NO_ITEM || ref === MANY_ITEMS) return ref;
                const key = keyOf(ref);
                return key === undefined ? NO_ITEM : key;
              },
            }
          : {}),
        fn: (input, ctx) => {
          const refs = b(input, ctx);
          if (refs.length === 1) {
            const key = keyOf(refs[0]);
            return key === undefined ? EMPTY : [key];
          }
          const out: unknown[] = [];
          for (const ref of refs) {
            const key = keyOf(ref);
            if (key !== undefined) out.push(key);
          }
          return out;
        },
        type: 'string',
      };
    },
  },
  lowBoundary: boundaryFn(false),
  highBoundary: boundaryFn(true),
  combine: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const other = c.compile(args[0]!).fn;
      return { fn: (input, ctx) => [...b(input, ctx), ...other(input, ctx)] };
    },
  },
  union: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const other = c.compile(args[0]!).fn;
      return { fn: (input, ctx) => union(b(input, ctx), other(input, ctx)) };
    },
  },
  trace: {
    min: 1,
    max: 2,
    compile: (_c, base) => base,
  },
  toString: collectionFn((input) => {
    const v = primitive(single(input, 'toString()'));
    return v === undefined || typeof v === 'object' ? EMPTY : [isLosslessNumber(input[0]) ? (input[0] as LosslessNumber).value : String(v)];
  }, 'string'),
  toInteger: collectionFn((input) => {
    const v = primitive(single(input, 'toInteger()'));
    if (typeof v === 'number' && Number.isInteger(v)) return [v];
    if (typeof v === 'string' && /^[+-]?\d+$/.test(v)) return [Number(v)];
    if (typeof v === 'boolean') return [v ? 1 : 0];
    return EMPTY;
  }, 'integer'),
  toDecimal: collectionFn((input) => {
    const v = primitive(single(input, 'toDecimal()'));
    if (typeof v === 'number') return [v];
    if (typeof v === 'string' && /^[+-]?\d+(\.\d+)?$/.test(v)) return [new LosslessNumber(v.replace(/^\+/, ''))];
    if (typeof v === 'boolean') return [v ? 1 : 0];
    return EMPTY;
  }, 'decimal'),
  length: stringFn(0, 0, (s) => s.length, 'integer'),
  upper: stringFn(0, 0, (s) => s.toUpperCase(), 'string'),
  lower: stringFn(0, 0, (s) => s.toLowerCase(), 'string'),
  trim: stringFn(0, 0, (s) => s.trim(), 'string'),
  startsWith: stringFn(1, 1, (s, [p]) => s.startsWith(String(p)), 'boolean'),
  endsWith: stringFn(1, 1, (s, [p]) => s.endsWith(String(p)), 'boolean'),
  contains: stringFn(1, 1, (s, [p]) => s.includes(String(p)), 'boolean'),
  indexOf: stringFn(1, 1, (s, [p]) => s.indexOf(String(p)), 'integer'),
  matches: stringFn(1, 1, (s, [p]) => new RegExp(String(p), 'su').test(s), 'boolean'),
  replace: stringFn(2, 2, (s, [p, r]) => s.split(String(p)).join(String(r)), 'string'),
  replaceMatches: stringFn(2, 2, (s, [p, r]) => s.replace(new RegExp(String(p), 'gsu'), String(r)), 'string'),
  substring: stringFn(1, 2, (s, [start, length]) => {
    const from = Number(start);
    if (from < 0 || from >= s.length) return undefined;
    return length === undefined ? s.slice(from) : s.slice(from, from + Number(length));
  }, 'string'),
  split: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const sep = c.compile(args[0]!).fn;
      return {
        fn: (input, ctx) => {
          const s = single(b(input, ctx), 'split()');
          const p = single(sep(input, ctx), 'split()');
          return typeof s === 'string' && typeof p === 'string' ? s.split(p) : EMPTY;
        },
        type: 'string',
      };
    },
  },
  abs: mathFn(Math.abs),
  ceiling: mathFn(Math.ceil),
  floor: mathFn(Math.floor),
  truncate: mathFn(Math.trunc),
  sqrt: mathFn(Math.sqrt),
  round: {
    min: 0,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const digits = args[0] ? c.compile(args[0]).fn : undefined;
      return {
        fn: (input, ctx) => {
          const v = numberValue(single(b(input, ctx), 'round()'));
          if (v === undefined) return EMPTY;
          const d = digits ? (numberValue(digits(input, ctx)[0]) ?? 0) : 0;
          return [new LosslessNumber(v.toFixed(d))];
        },
        type: 'decimal',
      };
    },
  },
};

/** FHIRPath environment variables every expression may use, besides the view's constants. */
const CODE_SYSTEMS: Record<string, string> = {
  ucum: 'http://unitsofmeasure.org',
  sct: 'http://snomed.info/sct',
  loinc: 'http://loinc.org',
};

class Compiler {
  constructor(private readonly constants: ReadonlyMap<string, Collection>) {}

  compile(node: Node): Compiled {
    switch (node.kind) {
      case 'literal': {
        const value = node.type === 'decimal' ? new LosslessNumber(node.value as string) : node.value;
        const result = [value];
        return { fn: () => result, item: () => value, type: node.type };
      }
      case 'empty':
        return { fn: () => EMPTY };
      case 'this':
        return { fn: identity };
      case 'index':
        return { fn: (_input, ctx) => (ctx.index === undefined ? EMPTY : [ctx.index]), type: 'integer' };
      case 'total':
        throw new FhirPathCompileError('$total is not supported');
      case 'variable':
        return this.variable(node.name);
      case 'member':
        return this.member(node);
      case 'indexer': {
        const base = this.compile(node.base);
        const index = this.compile(node.index).fn;
        const b = base.fn;
        return {
          fn: (input, ctx) => {
            const i = numberValue(single(index(input, ctx), 'indexer'));
            if (i === undefined) return EMPTY;
            const items = b(input, ctx);
            return i >= 0 && i < items.length ? [items[i]] : EMPTY;
          },
          ...(base.type ? { type: base.type } : {}),
        };
      }
      case 'call':
        return this.call(node);
      case 'unary': {
        const operand = this.compile(node.operand);
        if (node.op === '+') return operand;
        const o = operand.fn;
        return {
          fn: (input, ctx) => {
            const v = single(o(input, ctx), "unary '-'");
            if (v === undefined) return EMPTY;
            if (isLosslessNumber(v)) {
              const text = (v as LosslessNumber).value;
              return [new LosslessNumber(text.startsWith('-') ? text.slice(1) : `-${text}`)];
            }
            if (typeof v !== 'number') throw new FhirPathEvaluationError(`unary '-' needs a number, got ${describeValue(v)}`);
            return [-v];
          },
          ...(operand.type ? { type: operand.type } : {}),
        };
      }
      case 'typeop': {
        // `x is T` is `x.is(T)`; a qualified name like FHIR.Quantity is kept whole.
        const type: Node = { kind: 'member', name: node.type };
        return this.call({ kind: 'call', base: node.operand, name: node.op, args: [type], position: 0 });
      }
      case 'binary':
        return this.binary(node.op, this.compile(node.left), this.compile(node.right));
    }
  }

  private variable(name: string): Compiled {
    if (name === 'rowIndex') return { fn: (_input, ctx) => [ctx.rowIndex], type: 'integer' };
    if (name === 'resource' || name === 'rootResource') return { fn: (_input, ctx) => [ctx.resource] };
    if (name === 'context') return { fn: (_input, ctx) => [ctx.resource] };
    const constant = this.constants.get(name);
    if (constant) return { fn: () => constant };
    const system = ownEntry(CODE_SYSTEMS, name);
    if (system) return { fn: () => [system], type: 'string' };
    throw new FhirPathCompileError(`unknown constant '%${name}'`);
  }

  private member(node: Extract<Node, { kind: 'member' }>): Compiled {
    return this.path(node);
  }

  /**
   * A chain of members and first() calls (`category.first().coding.first().code`) compiled to one
   * walk over the resource, on top of whatever precedes the chain.
   */
  private path(node: Node): Compiled {
    const { steps, inner } = pathSteps(node);
    const base = inner ? this.compile(inner) : undefined;
    const segmentsOf = (from: number): PathSegment[] => {
      const segments: PathSegment[] = [];
      let names: PathMember[] = [];
      for (let i = from; i < steps.length; i++) {
        const step = steps[i];
        if (step === null) {
          segments.push({ names, first: true });
          names = [];
        } else names.push(pathMember(step));
      }
      if (names.length) segments.push({ names, first: false });
      return segments;
    };
    const segments = segmentsOf(0);
    // first() keeps its input's type; a member's type is not known without a model.
    const type = steps.every((s) => s === null) ? base?.type : undefined;
    const typed = type ? { type } : {};
    if (base) {
      const b = base.fn;
      // A path on what gives one item is the path from that item.
      const baseItem = base.item;
      const item = baseItem
        ? (x: unknown): unknown => {
            const from = baseItem(x);
            return from === NO_ITEM || from === MANY_ITEMS ? from : itemOfPath(segments, from);
          }
        : undefined;
      return { fn: (input, ctx) => runPath(segments, b(input, ctx)), ...(item ? { item } : {}), ...typed };
    }
    const head = steps[0];
    if (typeof head === 'string' && /^[A-Z]/.test(head)) {
      // `Patient.name`: a leading type name selects the resource itself when it is of that type.
      const afterHead = segmentsOf(1);
      return {
        fn: (input) => {
          const first = input[0] as { resourceType?: unknown } | undefined;
          if (input.length === 1 && first !== null && typeof first === 'object' && first.resourceType === head) return runPath(afterHead, input);
          return runPath(segments, input);
        },
      };
    }
    return { fn: (input) => runPath(segments, input), item: (item) => itemOfPath(segments, item), ...typed };
  }

  private call(node: Extract<Node, { kind: 'call' }>): Compiled {
    const spec = ownEntry(FUNCTIONS, node.name);
    if (!spec) throw new FhirPathCompileError(`unknown function '${node.name}'`);
    if (node.args.length < spec.min || node.args.length > spec.max) {
      const expected = spec.min === spec.max ? `${spec.min}` : `${spec.min} to ${spec.max}`;
      throw new FhirPathCompileError(`${node.name}() takes ${expected} argument${spec.max === 1 ? '' : 's'}, got ${node.args.length}`);
    }
    if (node.name === 'first' && node.args.length === 0) return this.path(node);
    if (node.name === 'getResourceKey' && node.args.length === 0 && !node.base) {
      const compiled = spec.compile(this, { fn: identity }, node.args, node);
      return {
        ...compiled,
        item: (item) => {
          const id = item !== null && typeof item === 'object' ? (item as { id?: unknown }).id : undefined;
          return typeof id === 'string' ? id : NO_ITEM;
        },
      };
    }
    const base = node.base ? this.compile(node.base) : { fn: identity };
    return spec.compile(this, base, node.args, node);
  }

  private binary(op: string, left: Compiled, right: Compiled): Compiled {
    const l = left.fn;
    const r = right.fn;
    switch (op) {
      case '=':
        return { fn: (input, ctx) => equality(l(input, ctx), r(input, ctx)), type: 'boolean' };
      case '!=':
        return {
          fn: (input, ctx) => {
            const eq = equality(l(input, ctx), r(input, ctx));
            return eq.length ? bool(eq[0] !== true) : EMPTY;
          },
          type: 'boolean',
        };
      case '~':
        return { fn: (input, ctx) => bool(equivalence(l(input, ctx), r(input, ctx))), type: 'boolean' };
      case '!~':
        return { fn: (input, ctx) => bool(!equivalence(l(input, ctx), r(input, ctx))), type: 'boolean' };
      case '<':
      case '>':
      case '<=':
      case '>=':
        return { fn: (input, ctx) => compare(op, l(input, ctx), r(input, ctx)), type: 'boolean' };
      case '+':
      case '-':
      case '*':
      case '/':
      case 'div':
      case 'mod':
      case '&': {
        const integer = left.type === 'integer' && right.type === 'integer' && op !== '/';
        const type = op === '&' ? 'string' : integer ? 'integer' : left.type === 'string' ? 'string' : 'decimal';
        return { fn: (input, ctx) => arithmetic(op, l(input, ctx), r(input, ctx)), type };
      }
      case '|':
        return { fn: (input, ctx) => union(l(input, ctx), r(input, ctx)) };
      case 'in':
        return { fn: (input, ctx) => membership(l(input, ctx), r(input, ctx)), type: 'boolean' };
      case 'contains':
        return { fn: (input, ctx) => membership(r(input, ctx), l(input, ctx)), type: 'boolean' };
      case 'and':
        return {
          fn: (input, ctx) => {
            const a = toBoolean(l(input, ctx), "'and'");
            if (a === false) return FALSE;
            const b = toBoolean(r(input, ctx), "'and'");
            if (b === false) return FALSE;
            return a === true && b === true ? TRUE : EMPTY;
          },
          type: 'boolean',
        };
      case 'or':
        return {
          fn: (input, ctx) => {
            const a = toBoolean(l(input, ctx), "'or'");
            if (a === true) return TRUE;
            const b = toBoolean(r(input, ctx), "'or'");
            if (b === true) return TRUE;
            return a === false && b === false ? FALSE : EMPTY;
          },
          type: 'boolean',
        };
      case 'xor':
        return {
          fn: (input, ctx) => {
            const a = toBoolean(l(input, ctx), "'xor'");
            const b = toBoolean(r(input, ctx), "'xor'");
            return a === undefined || b === undefined ? EMPTY : bool(a !== b);
          },
          type: 'boolean',
        };
      case 'implies':
        return {
          fn: (input, ctx) => {
            const a = toBoolean(l(input, ctx), "'implies'");
            if (a === false) return TRUE;
            const b = toBoolean(r(input, ctx), "'implies'");
            if (a === true) return bool(b);
            return b === true ? TRUE : EMPTY;
          },
          type: 'boolean',
        };
      default:
        throw new FhirPathCompileError(`unsupported operator '${op}'`);
    }
  }
}

function membership(item: Collection, collection: Collection): Collection {
  if (item.length === 0) return EMPTY;
  const v = single(item, "'in'");
  return bool(collection.some((c) => deepEqual(c, v)));
}
