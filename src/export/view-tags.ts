/**
 * Research treatments of ViewDefinition columns, from a column tag
 * `{"name": "research", "value": "<treatment>"}`. The flat tables that ingest builds from
 * `views/*.json` and the `--view FILE` exports both take their declarations from these tags.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CarepipeError } from '../errors.js';
import { RECORD_ID_COLUMN, RECORD_TYPE_COLUMN, ROW_INDEX_COLUMN } from '../fhir/write/flat-table.js';
import { elementOfPath, elementTreatment, isDirectIdentifier } from './elements.js';
import { TREATMENTS } from './profile.js';
import type { SourceDeclaration, Treatment } from './treatments.js';

export const RESEARCH_TAG = 'research';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A view column as the research profile sees it. */
export interface ResearchColumn {
  /** The treatment applied: the element's where it requires one (see elements.ts), else the tag's. */
  treatment?: Treatment;
  /** The treatment the file's tag gives. */
  tagged?: Treatment;
  /** The FHIR elements the column reads, one per `unionAll` branch (`ImagingStudy.started`). */
  elements: string[];
}

/**
 * Every column name of the view with its research treatment (undefined when the column has no tag).
 * A column that appears in several `unionAll` branches must carry the same tag in each.
 */
export function researchTreatments(definition: unknown, source: string): Map<string, Treatment | undefined> {
  return new Map([...researchColumns(definition, source)].map(([name, c]) => [name, c.treatment]));
}

/**
 * The treatment of an element tagged `tagged`: an element the profile knows (a date of care, a birth
 * date) is treated the same in every view whatever the tag says, unless the tag drops it.
 */
function effectiveTreatment(resource: string, element: string, tagged: Treatment | undefined): Treatment | undefined {
  const required = elementTreatment(resource, element);
  if (!required || !tagged || tagged === 'drop') return tagged;
  return required;
}

/** Every column of the view with its tag, its FHIR elements and the treatment the profile applies. */
export function researchColumns(definition: unknown, source: string): Map<string, ResearchColumn> {
  const out = new Map<string, ResearchColumn>();
  const resource = isObject(definition) && typeof definition.resource === 'string' ? definition.resource : '';
  const visit = (select: unknown, location: string, forEach: string | undefined): void => {
    if (!isObject(select)) return;
    const own = typeof select.forEach === 'string' ? select.forEach : typeof select.forEachOrNull === 'string' ? select.forEachOrNull : undefined;
    const context = own === undefined ? forEach : forEach ? `${forEach}.${own}` : own;
    const columns = Array.isArray(select.column) ? select.column : [];
    columns.forEach((column: unknown, i: number) => {
      if (!isObject(column) || typeof column.name !== 'string') return;
      const tags = Array.isArray(column.tag) ? column.tag.filter((t): t is Json => isObject(t) && t.name === RESEARCH_TAG) : [];
      let treatment: Treatment | undefined;
      if (tags.length > 0) {
        const value = tags[0]!.value;
        if (tags.length > 1 || typeof value !== 'string' || !TREATMENTS.includes(value as Treatment)) {
          throw new CarepipeError(
            'VIEW_INVALID',
            `${location}.column[${i}] (${column.name}): the research tag must appear once with one of ${TREATMENTS.join(', ')}`,
            { file: source, field: column.name },
          );
        }
        treatment = value as Treatment;
      }
      const before = out.get(column.name);
      if (before && before.tagged !== treatment) {
        throw new CarepipeError('VIEW_INVALID', `column ${column.name} has different research tags in different branches`, {
          file: source,
          field: column.name,
        });
      }
      const element = typeof column.path === 'string' ? elementOfPath(column.path, context) : '';
      const effective = effectiveTreatment(resource, element, treatment);
      const stricter = before?.treatment && effective && STRICTNESS[before.treatment] > STRICTNESS[effective] ? before.treatment : effective;
      out.set(column.name, { treatment: stricter, tagged: treatment, elements: [...(before?.elements ?? []), `${resource}.${element}`] });
    });
    for (const key of ['select', 'unionAll'] as const) {
      const nested = select[key];
      if (Array.isArray(nested)) nested.forEach((s, i) => visit(s, `${location}.${key}[${i}]`, context));
    }
  };
  visit({ select: isObject(definition) ? definition.select : undefined }, 'ViewDefinition', undefined);
  return out;
}

/**
 * Under the research profile a view may not keep a column that reaches a direct identifier (names,
 * contacts, street address, identifiers, birth date, the resource id, photos, contacts): exit 2,
 * naming the column, whatever the file's own tag says.
 */
export function refuseKeptIdentifiers(columns: Map<string, ResearchColumn>, source: string): void {
  for (const [name, column] of columns) {
    const identifier = column.elements.find((e) => isDirectIdentifier(e.slice(0, e.indexOf('.')), e.slice(e.indexOf('.') + 1)));
    if (identifier && column.tagged === 'keep') {
      throw new CarepipeError(
        'VIEW_INVALID',
        `${path.basename(source)}: column ${name} reads ${identifier}, a direct identifier: the research profile cannot keep it; tag it drop or pseudonym`,
        { file: source, field: name },
      );
    }
  }
}

/**
 * Whose dates a view's rows hold: the column of the Patient reference (`subject.getReferenceKey(Patient)`),
 * the Patient's own key in a Patient view, else the resource's own key (an Organization's dates move
 * by the Organization's offset). Undefined when the view has none of these columns.
 */
export function patientKeyOf(definition: unknown): { column: string } | undefined {
  const columns: { name: string; path: string }[] = [];
  const visit = (select: unknown): void => {
    if (!isObject(select)) return;
    for (const c of Array.isArray(select.column) ? select.column : []) {
      // A column inside a forEach reads something nested, never the resource's own patient.
      if (isObject(c) && typeof c.name === 'string' && typeof c.path === 'string' && select.forEach === undefined && select.forEachOrNull === undefined) {
        columns.push({ name: c.name, path: c.path });
      }
    }
    for (const key of ['select', 'unionAll'] as const) if (Array.isArray(select[key])) (select[key] as unknown[]).forEach(visit);
  };
  visit({ select: isObject(definition) ? definition.select : undefined });
  const resource = isObject(definition) ? definition.resource : undefined;
  const own = columns.find((c) => /^getResourceKey\(\)$/.test(c.path.trim()));
  const patient = columns.find((c) => /getReferenceKey\(\s*Patient\s*\)/.test(c.path));
  const chosen = resource === 'Patient' ? own : (patient ?? own);
  return chosen ? { column: chosen.name } : undefined;
}

/** When two views that fill one table disagree on a column, the stricter treatment wins. */
const STRICTNESS: Record<Treatment, number> = { keep: 0, date_shift: 1, birth_date: 1, year: 1, postcode_outward: 1, pseudonym: 2, drop: 3 };

/**
 * Declarations of the flat tables built from the ViewDefinitions in `dir` (table name = view name;
 * views sharing a name fill one table). Untagged columns are left out of `columns`: the research
 * profile refuses them when it meets them. The bookkeeping columns ingest adds to every flat table are
 * declared too: the resource type and the row's index (kept) and the resource id (pseudonymised).
 */
export function viewSources(dir: string): SourceDeclaration[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch {
    return [];
  }
  const tables = new Map<string, SourceDeclaration & { columns: Record<string, Treatment> }>();
  for (const file of files) {
    const full = path.join(dir, file);
    const definition = JSON.parse(readFileSync(full, 'utf8')) as Json;
    const name = typeof definition.name === 'string' ? definition.name : path.basename(file, '.json');
    const description =
      (typeof definition.description === 'string' && definition.description) ||
      (typeof definition.title === 'string' && definition.title) ||
      `${String(definition.resource ?? 'FHIR')} resources flattened by views/${file}`;
    const table = tables.get(name) ?? { name, relation: name, description, columns: {} };
    if (tables.has(name) && !table.description.includes(String(definition.resource))) {
      table.description = `${table.description}; ${String(definition.resource ?? '')} resources by views/${file}`;
    }
    table.patientKey ??= patientKeyOf(definition);
    for (const [column, treatment] of researchTreatments(definition, full)) {
      if (column === 'last_updated') table.lastUpdatedColumn = column;
      if (!treatment) continue;
      const before = table.columns[column];
      table.columns[column] = before && STRICTNESS[before] > STRICTNESS[treatment] ? before : treatment;
    }
    tables.set(name, table);
  }
  for (const table of tables.values()) {
    table.columns[RECORD_TYPE_COLUMN] ??= 'keep';
    table.columns[RECORD_ID_COLUMN] ??= 'pseudonym';
    // the row's position among its resource's rows: part of the key, says nothing of the patient
    table.columns[ROW_INDEX_COLUMN] ??= 'keep';
  }
  return [...tables.values()];
}
