/**
 * FHIRPath navigation without a FHIR model: members of FHIR JSON, choice elements resolved by name
 * (`value.ofType(Quantity)` reads `valueQuantity`, and a bare `value` finds the one `value<Type>` key
 * present), chains of members and first() walked in one step, the runtime type tests of ofType / is /
 * as, and the keys of references (getReferenceKey()).
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';
import type { Node } from './parser.js';
import { EMPTY, FhirPathCompileError, isIntegerValue, MANY_ITEMS, NO_ITEM, numberValue, type Collection } from './values.js';

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

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/**
 * Names every JavaScript object inherits (`constructor`, `__proto__`, `hasOwnProperty`, …). No FHIR
 * element, function or constant is named so; read as `obj[name]` they would give JavaScript's own
 * functions, so a member of such a name is absent and a function or constant unknown.
 */
export const INHERITED_NAMES: ReadonlySet<string> = new Set(Object.getOwnPropertyNames(Object.prototype));

/** Children named `name` of every item, flattened; a missing name may be a choice element. */
export function member(input: Collection, name: string): Collection {
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

/** The value of a choice element `name` read as `name<Type>` (undefined when `name` is no choice or none is present). */
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

/** The PathMember of a member name, its checks worked out once at compile time. */
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
export function childOf(item: unknown, m: PathMember): unknown {
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
export interface PathSegment {
  names: PathMember[];
  first: boolean;
}

/** runPath on one item, for CompiledFhirPath.evaluateItem. */
export function itemOfPath(segments: readonly PathSegment[], item: unknown): unknown {
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
export function runPath(segments: readonly PathSegment[], input: Collection): Collection {
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
export function isOfType(v: unknown, type: string): boolean {
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

/** The name in a type argument: `Quantity`, `FHIR.Quantity`, `System.String`. */
export function typeName(arg: Node): string {
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
