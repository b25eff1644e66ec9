/**
 * The ViewDefinitions ingest-fhir maps resources through: the ones shipped in the top-level `views/`
 * folder and any a user passes with --view. A view's `name` is its table; several views may share a
 * name (codings from Condition and from Observation) and then one table, so their columns must match.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { CarepipeError } from '../errors.js';
import type { TableColumn } from '../io/json-rows.js';
import type { TableSpec } from './write/flat-table.js';
import { compileView, readViewFile, type CompiledView } from './view/index.js';
import { viewsDir } from './views-dir.js';

/** `views/` at the package root (see views-dir.ts). */
export const SHIPPED_VIEWS_DIR = viewsDir();

/** A compiled view with the file it came from and the table its rows go to. */
export interface FlatView {
  file: string;
  view: CompiledView;
  table: TableSpec;
  /**
   * The ViewDefinition as parsed: its fingerprint is recorded with the table (flat-views.ts), and it
   * derives the table's history from the resources' versions (src/fhir/derived-history.ts).
   */
  definition: unknown;
  /** The view's name in the record of the tables' views: its file's name without `.json`. */
  viewName: string;
  /** One of the views in `views/`. */
  shipped: boolean;
}

/** Every `*.json` in the shipped views folder (or only `files`, names relative to it), sorted by file name. */
export function loadShippedViews(files?: readonly string[]): FlatView[] {
  const names = files ?? readdirSync(SHIPPED_VIEWS_DIR).filter((f) => f.endsWith('.json')).sort();
  return names.map((name) => flatView(path.join(SHIPPED_VIEWS_DIR, name), true));
}

/** A user's ViewDefinition file (or, with `shipped`, one of views/). */
export function flatView(file: string, shipped = false): FlatView {
  const { definition, view } = readViewFile(file);
  return { file, view, table: tableSpecOf(view), definition, viewName: path.basename(file).replace(/\.json$/i, ''), shipped };
}

/** A view recorded with its table (flat-views.ts), compiled from its stored definition; `source` names it in errors. */
export function recordedFlatView(definition: unknown, viewName: string, shipped: boolean, source: string): FlatView {
  const view = compileView(definition, { source });
  return { file: source, view, table: tableSpecOf(view), definition, viewName, shipped };
}

/**
 * The table of a view: its name, its columns (a collection column is stored as jsonb), and the
 * reference columns to index: those whose path is a getReferenceKey(), what other tables join on.
 */
export function tableSpecOf(view: CompiledView): TableSpec {
  const columns: TableColumn[] = view.columns.map((c) => ({ name: c.name, sqlType: c.collection ? 'jsonb' : c.sqlType }));
  const indexed = view.columns.filter((c) => !c.collection && c.path.includes('getReferenceKey(')).map((c) => c.name);
  return { table: view.name, columns, indexed };
}

/**
 * The distinct tables of `views`, refusing (VIEW_INVALID, exit 2) two views that share a name but not
 * their columns, and a view whose table name or columns clash with carepipe's bookkeeping.
 */
export function tablesOf(views: readonly FlatView[]): TableSpec[] {
  const tables = new Map<string, FlatView>();
  for (const v of views) {
    for (const c of v.table.columns) {
      if (c.name.startsWith('_')) {
        throw new CarepipeError('VIEW_INVALID', `column ${c.name} of view ${v.file}: names starting with _ are reserved for carepipe's bookkeeping`, { file: v.file, field: c.name });
      }
    }
    const first = tables.get(v.table.table);
    if (!first) {
      tables.set(v.table.table, v);
      continue;
    }
    const sig = (t: TableSpec) => t.columns.map((c) => `${c.name} ${c.sqlType}`).join(', ');
    if (sig(first.table) !== sig(v.table)) {
      throw new CarepipeError(
        'VIEW_INVALID',
        `views ${first.file} and ${v.file} both fill table ${v.table.table} but their columns differ: (${sig(first.table)}) and (${sig(v.table)})`,
        { file: v.file },
      );
    }
  }
  return [...tables.values()].map((v) => v.table);
}

/** `views` grouped by the table they fill, each group in the order ingest-fhir applies them (tablesOf's checks included). */
export function viewsByTable(views: readonly FlatView[]): { table: TableSpec; views: FlatView[] }[] {
  return tablesOf(views).map((table) => ({ table, views: views.filter((v) => v.table.table === table.table) }));
}
