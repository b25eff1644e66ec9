/**
 * Research treatments keyed by FHIR element, not by table: `ImagingStudy.started` is the same date of
 * care whether it lands in `imagingstudy`, `imaging_studies` or `image_labels`, so it is treated the
 * same everywhere. A view column's element is read from its FHIRPath (the first element the path
 * names, inside its `forEach`); tables that are not views name their columns' elements in their
 * declaration (`SourceDeclaration.elements`).
 */
import type { Treatment } from './treatments.js';

/**
 * Elements that reach a person directly (Safe Harbor's names, contacts, street addresses, record
 * numbers, photographs). Under the research profile a column on one of these can never be `keep`.
 * `id` is the resource's own key: `getResourceKey()` reads it too.
 */
export const DIRECT_IDENTIFIER_ELEMENTS = ['name', 'telecom', 'address.line', 'identifier', 'birthDate', 'id', 'photo', 'contact'] as const;

/** Every element a date or time of care or of a patient's life, by resource; `*` is any resource. */
const DATE_ELEMENTS: Record<string, string[]> = {
  '*': ['meta.lastUpdated'],
  AllergyIntolerance: ['recordedDate', 'onset', 'lastOccurrence', 'abatement'],
  Appointment: ['start', 'end', 'created'],
  Condition: ['onset', 'abatement', 'recordedDate'],
  DiagnosticReport: ['effective', 'issued'],
  Encounter: ['period'],
  ImagingStudy: ['started'],
  Immunization: ['occurrence', 'recorded', 'expirationDate'],
  MedicationRequest: ['authoredOn'],
  Observation: ['effective', 'issued'],
  Patient: ['deceased'],
  Procedure: ['performed'],
};

/** The date types of a choice element (`onsetDateTime`, `effectivePeriod.start`); `deceasedBoolean` is not one. */
const DATE_CHOICE = /^(?:Date|DateTime|Instant|Period)(?:\.|$)/;

/**
 * The treatment the research profile requires of an element, or undefined when the element's own
 * tag decides (codes, statuses, counts). Dates of care are shifted per patient; a birth date follows
 * `--birth-date`; a direct identifier is at least pseudonymised.
 */
export function elementTreatment(resource: string, element: string): Treatment | undefined {
  if (element === 'birthDate') return 'birth_date';
  const dates = [...(DATE_ELEMENTS['*'] ?? []), ...(DATE_ELEMENTS[resource] ?? [])];
  if (dates.some((e) => element === e || element.startsWith(`${e}.`) || DATE_CHOICE.test(element.slice(e.length)) && element.startsWith(e))) return 'date_shift';
  return undefined;
}

/** Resources that are a person: their name, telecom, street and birth date are the person's. */
const PEOPLE = new Set(['Patient', 'Practitioner', 'RelatedPerson', 'Person']);
/** Identifying in any resource: keys and identifiers link back to the record, contacts and photos are people. */
const IDENTIFYING_ANYWHERE = new Set(['id', 'identifier', 'contact', 'photo']);

/**
 * Whether an element of `resource` is (or lies inside) one of the direct identifiers. An
 * Organization's name or telephone is not a person's; its id, identifiers and contact persons are.
 */
export function isDirectIdentifier(resource: string, element: string): boolean {
  // What kind of value it is (identifier.system, telecom.use) or a title (`Dr`) names nobody.
  if (/\.(?:system|use|type|rank)(?:\.|$)/.test(element) || /^name\.(?:prefix|suffix)$/.test(element)) return false;
  return DIRECT_IDENTIFIER_ELEMENTS.some(
    (e) => (element === e || element.startsWith(`${e}.`)) && (PEOPLE.has(resource) || IDENTIFYING_ANYWHERE.has(e)),
  );
}

const FUNCTIONS_OF_THEIR_INPUT = new Set(['first', 'last', 'single', 'distinct', 'join', 'where', 'ofType', 'exists', 'count', 'getReferenceKey', 'not', 'empty', 'select']);

/**
 * The element a FHIRPath reaches, as dotted names without functions: `subject.getReferenceKey(Patient)`
 * → `subject`, `deceased.ofType(dateTime)` → `deceasedDateTime`, `getResourceKey()` → `id`,
 * `address.first().line.first()` → `address.line`, `%resource.started` → `started`,
 * `iif(numberOfSeries.exists(), …)` and `(modality.code | series.modality.code)` → their first branch.
 * `forEach` (when the column sits in one) is prefixed. Returns '' when the path names no element.
 */
export function elementOfPath(path: string, forEach?: string): string {
  const own = pathElements(path.trim());
  if (own.startsWith('%resource')) return own.replace(/^%resource\.?/, '');
  if (!forEach) return own;
  const outer = elementOfPath(forEach);
  return own ? `${outer}.${own}` : outer;
}

function pathElements(text: string): string {
  const names: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    // The first branch of a union or argument list stands for the whole path.
    if (c === '|' || c === ',' || c === ')') break;
    if (c === '(') {
      const close = closingParen(text, i + 1);
      names.push(...split(pathElements(text.slice(i + 1, close))));
      i = close + 1;
      continue;
    }
    const name = /^%?[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))?.[0];
    if (!name) {
      i += 1;
      continue;
    }
    i += name.length;
    if (text[i] !== '(') {
      names.push(name);
      continue;
    }
    const close = closingParen(text, i + 1);
    const args = text.slice(i + 1, close);
    i = close + 1;
    if (name === 'getResourceKey') names.push('id');
    // A choice of type: `deceased.ofType(boolean)` is the element deceasedBoolean.
    else if (name === 'ofType' && names.length > 0) names.push(`${names.pop()!}${upperFirst(args.trim().replace(/^FHIR\./, ''))}`);
    // iif(cond, …) and the like: the element is in the first argument.
    else if (!FUNCTIONS_OF_THEIR_INPUT.has(name) && names.length === 0) names.push(...split(pathElements(args)));
  }
  return names.join('.');
}

function upperFirst(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function split(element: string): string[] {
  return element ? element.split('.') : [];
}

function closingParen(text: string, from: number): number {
  let depth = 1;
  for (let i = from; i < text.length; i += 1) {
    if (text[i] === '(') depth += 1;
    else if (text[i] === ')' && --depth === 0) return i;
  }
  return text.length - 1;
}
