/**
 * Research treatments of ViewDefinition columns, from a column tag
 * `{"name": "research", "value": "<treatment>"}`. The flat tables that ingest builds from
 * `views/*.json` and the `--view FILE` exports both take their declarations from these tags.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CarepipeError } from '../errors.js';
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

/**
 * Declarations of the flat tables built from the ViewDefinitions in `dir` (table name = view name).
 * Untagged columns are left out of `columns`: the research profile refuses them when it meets them.
 */
export function viewSources(dir: string): SourceDeclaration[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch {
    return [];
  }
  return files.map((file) => {
    const full = path.join(dir, file);
    const definition = JSON.parse(readFileSync(full, 'utf8')) as Json;
    const name = typeof definition.name === 'string' ? definition.name : path.basename(file, '.json');
    const columns: Record<string, Treatment> = {};
    let lastUpdated: string | undefined;
    for (const [column, treatment] of researchTreatments(definition, full)) {
      if (treatment) columns[column] = treatment;
      if (column === 'last_updated') lastUpdated = column;
    }
    const description =
      (typeof definition.description === 'string' && definition.description) ||
      (typeof definition.title === 'string' && definition.title) ||
      `${String(definition.resource ?? 'FHIR')} resources as the flat table of views/${file}`;
    return { name, relation: name, description, lastUpdatedColumn: lastUpdated, columns };
  });
}
