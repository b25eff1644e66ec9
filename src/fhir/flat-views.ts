/**
 * The record of which ViewDefinitions made each flat table (`carepipe.flat_views`): one row per view
 * feeding a table, with the fingerprint of its canonical JSON and the JSON itself. ingest-fhir writes
 * it when it creates a table (or first meets one made before the record existed); `views refresh`
 * rewrites a table's rows when it rebuilds the table; `migrate` compares the shipped views with it to
 * find the tables whose shipped view changed. A table's rows are derived data: this is what makes
 * them reproducible from fhir_resources alone.
 */
import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { recordedFlatView, viewsByTable, type FlatView } from './views.js';

const TABLE = 'flat_views';

/** JSON with every object's keys sorted and no spaces: equal definitions, equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** sha256 (hex) of the canonical JSON of a ViewDefinition. */
export function viewHash(definition: unknown): string {
  return createHash('sha256').update(canonicalJson(definition)).digest('hex');
}

/** One row of flat_views. */
export interface ViewRecord {
  table: string;
  viewName: string;
  hash: string;
  definition: unknown;
  shipped: boolean;
}

/**
 * The records of `views` (which all fill one table), names made unique: two user files of one name
 * feeding a table become `name` and `name#2`.
 */
export function recordsOf(views: readonly FlatView[]): ViewRecord[] {
  const seen = new Map<string, number>();
  return views.map((v) => {
    const n = (seen.get(v.viewName) ?? 0) + 1;
    seen.set(v.viewName, n);
    return { table: v.table.table, viewName: n === 1 ? v.viewName : `${v.viewName}#${n}`, hash: viewHash(v.definition), definition: v.definition, shipped: v.shipped };
  });
}

/** Every recorded view, by table, in the order the views fill it (shipped first, by name). */
export async function recordedViews(knex: Knex | Knex.Transaction): Promise<Map<string, ViewRecord[]>> {
  const rows = await knex(TABLE)
    .select('table_name', 'view_name', 'view_hash', 'view_json', 'shipped')
    .orderBy([{ column: 'table_name' }, { column: 'shipped', order: 'desc' }, { column: 'view_name' }]);
  const byTable = new Map<string, ViewRecord[]>();
  for (const r of rows as { table_name: string; view_name: string; view_hash: string; view_json: unknown; shipped: boolean }[]) {
    const list = byTable.get(r.table_name) ?? [];
    list.push({ table: r.table_name, viewName: r.view_name, hash: r.view_hash, definition: typeof r.view_json === 'string' ? JSON.parse(r.view_json) : r.view_json, shipped: r.shipped });
    byTable.set(r.table_name, list);
  }
  return byTable;
}

/** The recorded user views (not shipped ones) of a table, compiled: `views refresh` rebuilds with them. */
export function userViewsOf(records: readonly ViewRecord[]): FlatView[] {
  return records
    .filter((r) => !r.shipped)
    .map((r) => recordedFlatView(r.definition, r.viewName, false, `${TABLE} ${r.table}/${r.viewName}`));
}

/** Replaces the record of `table` with `records` (in the caller's transaction, with the table's rows). */
export async function recordViews(knex: Knex | Knex.Transaction, table: string, records: readonly ViewRecord[], runId: number | null): Promise<void> {
  await knex(TABLE).where({ table_name: table }).whereNotIn('view_name', records.map((r) => r.viewName)).delete();
  if (records.length === 0) return;
  // an upsert: ingest-fhir workers starting together may record the same new table at once
  await knex(TABLE).insert(
    records.map((r) => ({
      table_name: table,
      view_name: r.viewName,
      view_hash: r.hash,
      view_json: JSON.stringify(r.definition),
      shipped: r.shipped,
      refreshed_at: knex.fn.now(),
      run_id: runId,
    })),
  ).onConflict(['table_name', 'view_name']).merge();
}

/**
 * The views of `current` whose recorded fingerprint differs from theirs, or that are not recorded,
 * plus the recorded ones `current` no longer has (when `all`, e.g. every shipped view of the table):
 * what made the table's older rows and is not what would make them now. Names, sorted.
 */
export function changedViews(recorded: readonly ViewRecord[], current: readonly ViewRecord[], options: { removed?: (r: ViewRecord) => boolean } = {}): string[] {
  const have = new Map(recorded.map((r) => [r.viewName, r.hash]));
  const now = new Set(current.map((c) => c.viewName));
  const changed = current.filter((c) => have.get(c.viewName) !== c.hash).map((c) => c.viewName);
  const removed = options.removed ? recorded.filter((r) => !now.has(r.viewName) && options.removed!(r)).map((r) => r.viewName) : [];
  return [...changed, ...removed].sort();
}

/**
 * ingest-fhir's part: a table it creates, or one that has no record yet, gets its views recorded.
 * Returns a warning for each table whose recorded views differ from the ones this run fills it with:
 * its earlier rows came from other definitions, and only a refresh rebuilds them.
 */
export async function recordIngestViews(q: Knex | Knex.Transaction, views: readonly FlatView[], created: ReadonlySet<string>, runId: number | null): Promise<string[]> {
  const recorded = await recordedViews(q);
  const warnings: string[] = [];
  for (const target of viewsByTable(views)) {
    const table = target.table.table;
    const current = recordsOf(target.views);
    const records = recorded.get(table);
    if (created.has(table) || !records) {
      await recordViews(q, table, current, runId);
      continue;
    }
    const changed = changedViews(records, current);
    if (changed.length === 0) continue;
    const user = target.views.filter((v) => !v.shipped).map((v) => ` --view ${v.file}`).join('');
    warnings.push(
      `table ${table} was built with other definitions of ${changed.join(', ')}: its rows from earlier runs are not what the views give now; ` +
        `rebuild it with \`carepipe views refresh --table ${table}${user}\` (or \`carepipe migrate\` after an upgrade)`,
    );
  }
  return warnings;
}
