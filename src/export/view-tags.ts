/**
 * Research treatments of ViewDefinition columns, from a column tag
 * `{"name": "research", "value": "<treatment>"}`. The flat tables that ingest builds from
 * `views/*.json` and the `--view FILE` exports both take their declarations from these tags.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CarepipeError } from '../errors.js';
import { RECORD_ID_COLUMN, RECORD_TYPE_COLUMN } from '../writers/flat-table.js';
import { TREATMENTS } from './profile.js';
import type { SourceDeclaration, Treatment } from './treatments.js';

export const RESEARCH_TAG = 'research';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Every column name of the view with its research treatment (undefined when the column has no tag).
 * A column that appears in several `unionAll` branches must carry the same treatment in each.
 */
export function researchTreatments(definition: unknown, source: string): Map<string, Treatment | undefined> {
  const out = new Map<string, Treatment | undefined>();
  const visit = (select: unknown, location: string): void => {
    if (!isObject(select)) return;
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
      if (out.has(column.name) && out.get(column.name) !== treatment) {
        throw new CarepipeError('VIEW_INVALID', `column ${column.name} has different research tags in different branches`, {
          file: source,
          field: column.name,
        });
      }
      out.set(column.name, treatment);
    });
    for (const key of ['select', 'unionAll'] as const) {
      const nested = select[key];
      if (Array.isArray(nested)) nested.forEach((s, i) => visit(s, `${location}.${key}[${i}]`));
    }
  };
  visit({ select: isObject(definition) ? definition.select : undefined }, 'ViewDefinition');
  return out;
}

/** When two views that fill one table disagree on a column, the stricter treatment wins. */
const STRICTNESS: Record<Treatment, number> = { keep: 0, year: 1, postcode_outward: 1, pseudonym: 2, drop: 3 };

/**
 * Declarations of the flat tables built from the ViewDefinitions in `dir` (table name = view name;
 * views sharing a name fill one table). Untagged columns are left out of `columns`: the research
 * profile refuses them when it meets them. The two bookkeeping columns ingest adds to every flat
 * table are declared too: the resource type (kept) and id (pseudonymised).
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
  }
  return [...tables.values()];
}
