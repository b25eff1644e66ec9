/**
 * The history of a FHIR flat table (or `codings`), derived: its rows are a pure function of a resource
 * version and the table's ViewDefinitions, so they have no triggers and no stored history. The rows of
 * resource `Type/id` changed exactly when the resource did: each version of the resource (its current
 * row in fhir_resources and its superseded images, src/db/history.ts) goes through the views the table
 * was recorded with (mappers/fhir-views.ts), and each change of the resource becomes what the ingest
 * did to the table: the old version's rows deleted, the new version's rows inserted, by the same run.
 */
import type { Knex } from 'knex';
import type { FhirResource } from 'fhir/r4.js';
import { historyTableFor, rowHistory, type RowChange } from '../db/history.js';
import { isMappingIssue, mapResource } from './map.js';
import type { Row } from '../io/json-rows.js';
import { recordedFlatView, type FlatView } from './views.js';

/** The resource table the flat tables derive from. */
export const RESOURCE_TABLE = 'fhir_resources';

/** The views a derived table was recorded with, compiled. */
export function compileRecordedViews(table: string, definitions: unknown[]): FlatView[] {
  return definitions.map((definition, i) => recordedFlatView(definition, `${table}_${i + 1}`, false, `${table} view ${i + 1}`));
}

/** The rows a stored fhir_resources image gives the table (none for no image, a deleted or an unmappable resource). */
export function derivedRows(image: Record<string, unknown> | null, views: FlatView[], table: string): Row[] {
  if (!image || image.deleted === true) return [];
  const resource = image.resource as (FhirResource & { id: string }) | undefined;
  if (!resource || typeof resource !== 'object') return [];
  const mapped = mapResource(resource, views.filter((v) => v.view.resource === resource.resourceType));
  return isMappingIssue(mapped) ? [] : (mapped.rows.get(table) ?? []);
}

/** The changes of the rows of `key` (`Type/id`) in a derived table, derived from the resource's changes. */
export function derivedChanges(resourceChanges: RowChange[], views: FlatView[], table: string): RowChange[] {
  const out: RowChange[] = [];
  for (const change of resourceChanges) {
    const as = (operation: RowChange['operation'], before: Row | null, after: Row | null): RowChange => ({
      ...change,
      table_name: table,
      operation,
      before: before as Record<string, unknown> | null,
      after: after as Record<string, unknown> | null,
    });
    for (const row of derivedRows(change.before, views, table)) out.push(as('D', row, null));
    for (const row of derivedRows(change.after, views, table)) out.push(as('I', null, row));
  }
  return out;
}

/** The changes of one row of any table with history: recorded images, or derived through the views of a derived table. */
export async function tableRowHistory(knex: Knex, table: string, key: string): Promise<RowChange[]> {
  const recorded = await historyTableFor(knex, table, key);
  if (!recorded.views) return rowHistory(knex, table, key);
  const views = compileRecordedViews(table, recorded.views);
  return derivedChanges(await rowHistory(knex, RESOURCE_TABLE, key), views, table);
}
