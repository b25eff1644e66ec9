/**
 * `carepipe views refresh` and the shipped-view changes `carepipe migrate` applies: which tables to
 * rebuild, with which views, then refresh.ts rebuilds them. The command file wires flags to
 * `runViewsRefresh`; migrate calls `refreshChangedShippedViews` after the knex migrations.
 */
import type { Knex } from 'knex';
import type { Database } from '../db/connection.js';
import type { RunLedger } from '../db/ledger.js';
import { CarepipeError } from '../errors.js';
import { formatTable } from '../io/table.js';
import type { Reporter } from '../pipeline/reporter.js';
import { existingColumns, sameColumns } from './write/flat-table.js';
import { changedViews, recordedViews, recordsOf, recordViews, userViewsOf, type ViewRecord } from './flat-views.js';
import { refreshTables, type RefreshResult, type RefreshTarget } from './refresh.js';
import { flatView, loadShippedViews, tablesOf, viewsByTable, type FlatView } from './views.js';

export interface ViewsRefreshOptions {
  /** User ViewDefinition files: their tables are the ones rebuilt. */
  viewFiles: string[];
  /** Only this table. */
  table?: string;
  batchSize?: number;
  dryRun: boolean;
}

export interface RefreshDeps {
  db: Database;
  ledger: RunLedger;
  reporter: Reporter;
  signal: AbortSignal;
}

/**
 * The tables `views refresh` rebuilds: with --view files, theirs (with the shipped views of the same
 * table); without, every shipped view's table plus every table a user's view is recorded for (with
 * its recorded definitions); --table keeps one of them.
 */
export async function selectTargets(q: Knex | Knex.Transaction, options: Pick<ViewsRefreshOptions, 'viewFiles' | 'table'>): Promise<RefreshTarget[]> {
  const shipped = loadShippedViews();
  let views: FlatView[];
  if (options.viewFiles.length > 0) {
    const user = options.viewFiles.map((file) => flatView(file));
    const tables = new Set(user.map((v) => v.table.table));
    views = [...shipped.filter((v) => tables.has(v.table.table)), ...user];
  } else {
    const recorded = await recordedViews(q);
    views = [...shipped, ...[...recorded.values()].flatMap(userViewsOf)];
  }
  const targets = viewsByTable(views);
  if (options.table === undefined) return targets;
  const one = targets.filter((t) => t.table.table === options.table);
  if (one.length === 0) {
    const where = options.viewFiles.length > 0 ? `the --view files fill ${targets.map((t) => t.table.table).join(', ')}` : 'no shipped or recorded view fills it: pass its --view FILE';
    throw new CarepipeError('USAGE', `unknown table ${options.table}: ${where}`, { table: options.table });
  }
  return one;
}

export interface RefreshOutcome {
  human: string;
  summary: Record<string, unknown>;
}

export async function runViewsRefresh(options: ViewsRefreshOptions, deps: RefreshDeps): Promise<RefreshOutcome> {
  const targets = await selectTargets(deps.db.knex, options);
  await deps.reporter.start(`views refresh: ${targets.length} table${targets.length === 1 ? '' : 's'}`);
  const result = await rebuild(targets, deps, { batchSize: options.batchSize, dryRun: options.dryRun });
  return outcome(result, deps.ledger, options.dryRun);
}

function rebuild(targets: RefreshTarget[], deps: RefreshDeps, options: { batchSize?: number; dryRun: boolean }): Promise<RefreshResult> {
  const { db, ledger, reporter, signal } = deps;
  return refreshTables(targets, { knex: db.knex, kind: db.kind, schema: db.schemas.fhir, ledger, signal, reporter, ...options });
}

function outcome(result: RefreshResult, ledger: RunLedger, dryRun: boolean): RefreshOutcome {
  const tables = result.tables.map((t) => ({ table: t.table, views: t.views, rows: t.rows, created: t.created }));
  ledger.details.tables = tables;
  ledger.details.resources = result.resources;
  const table = formatTable(
    ['table', 'rows', 'views'],
    result.tables.map((t) => [t.table, t.rows, t.views.join(', ')]),
  );
  const human =
    `${table}${result.resources} resources read from fhir_resources, ${result.tables.length} table${result.tables.length === 1 ? '' : 's'} rebuilt` +
    `${result.rejected ? `, ${result.rejected} resources rejected (see the rejects table)` : ''}\n${dryRun ? 'dry run: nothing was written\n' : ''}`;
  return { human, summary: {} };
}

/** What migrate did about the shipped views. */
export interface ShippedViewsSync {
  /** Tables rebuilt because a shipped view of theirs changed (or their columns are not the view's). */
  refreshed: string[];
  /** Tables made before flat_views existed, whose views are now recorded as they are. */
  recorded: string[];
  resources: number;
  rejected: number;
}

/**
 * After the knex migrations: each existing table of a shipped view whose recorded shipped views are
 * not the shipped ones now (changed, added or removed) is rebuilt with the shipped views and the
 * user's recorded ones. A table made before the record existed is recorded as it is when its columns
 * are the view's, rebuilt when not. Tables not made yet are left to ingest-fhir. The ledger is
 * started (`start`) only when there is something to do.
 */
export async function refreshChangedShippedViews(
  deps: Omit<RefreshDeps, 'ledger'> & { start: () => Promise<RunLedger> },
): Promise<ShippedViewsSync | undefined> {
  const { db, reporter } = deps;
  const recorded = await recordedViews(db.knex);
  const toRecord: { table: string; records: ViewRecord[] }[] = [];
  const stale: RefreshTarget[] = [];
  for (const target of viewsByTable(loadShippedViews())) {
    const table = target.table.table;
    const columns = await existingColumns(db.knex, table);
    if (columns.length === 0) continue;
    const records: ViewRecord[] | undefined = recorded.get(table);
    const current = recordsOf(target.views);
    if (!records) {
      if (sameColumns(columns, target.table)) {
        toRecord.push({ table, records: current });
        continue;
      }
      reporter.info('view_changed', { message: `table ${table}: its columns are not those of the shipped view; rebuilding it from fhir_resources`, table });
    } else {
      const changed = changedViews(records.filter((r) => r.shipped), current, { removed: (r) => r.shipped });
      if (changed.length === 0) continue;
      reporter.info('view_changed', { message: `table ${table}: shipped view${changed.length === 1 ? '' : 's'} ${changed.join(', ')} changed; rebuilding it from fhir_resources`, table });
    }
    stale.push({ table: target.table, views: [...target.views, ...userViewsOf(records ?? [])] });
  }
  if (stale.length === 0 && toRecord.length === 0) return undefined;
  // the user's recorded views must still fit the shipped table's columns
  for (const t of stale) tablesOf(t.views);
  const ledger = await deps.start();
  for (const r of toRecord) await recordViews(db.knex, r.table, r.records, ledger.id);
  const sync: ShippedViewsSync = { refreshed: [], recorded: toRecord.map((r) => r.table), resources: 0, rejected: 0 };
  ledger.details.recorded = sync.recorded;
  if (stale.length === 0) return sync;
  const result = await rebuild(stale, { ...deps, ledger }, { dryRun: false });
  sync.refreshed = result.tables.map((t) => t.table);
  sync.resources = result.resources;
  sync.rejected = result.rejected;
  ledger.details.tables = result.tables;
  ledger.details.resources = result.resources;
  return sync;
}
