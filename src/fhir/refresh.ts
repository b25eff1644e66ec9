/**
 * Rebuilding flat tables from fhir_resources: the rows of a flat table are a pure function of the
 * current (not deleted) resource versions and the table's ViewDefinitions, so they can be derived
 * again without the files they came from. Each table is built anew beside the old one (a side table
 * in the same schema, with the same columns, key and indexes), filled in batches read from
 * fhir_resources by keyset pagination, mapped by the mapper ingest-fhir uses and written the way it
 * writes (COPY on a server); then one short transaction swaps it in by rename, recreating the views
 * that depended on the old table (diseases over codings) and keeping its grants. Readers see the old
 * table until that commit. One pass over fhir_resources fills every table asked for.
 *
 * The fill runs on the pipeline engine (src/pipeline/run.ts: batches, the dry run as one rolled-back
 * transaction, interruption, rejects, ledger counts, progress): read = resources from fhir_resources,
 * map = the views, write = into the side tables. The swap comes after the run completes; a dry run
 * builds and counts, and its rollback takes the side tables.
 */
import type { Knex } from 'knex';
import { parse as parseLossless } from 'lossless-json';
import type { FhirResource } from 'fhir/r4.js';
import { quoteIdent } from '../db/catalog.js';
import type { DatabaseKind } from '../db/connection.js';
import type { RunLedger } from '../db/ledger.js';
import { inRunTransaction } from '../db/transaction.js';
import { isMappingIssue, mapRows } from './map.js';
import { mayLoseDigits } from './read/format.js';
import {
  BOOKKEEPING,
  addFlatTableKeys,
  createFlatTable,
  existingColumns,
  primaryKeyName,
  referenceIndexName,
  refuseReservedTableName,
  sameColumns,
  type TableSpec,
} from './write/flat-table.js';
import { writeRows, type Row } from '../io/json-rows.js';
import { run, type MapResult, type Pipeline } from '../pipeline/run.js';
import type { Reporter } from '../pipeline/reporter.js';
import { ensureCodingsExtras } from './codings.js';
import { recordDerivedTable } from '../db/history.js';
import { recordsOf, recordViews } from './flat-views.js';
import type { FlatView } from './views.js';

/** A table to rebuild and the views that fill it, in the order ingest-fhir applies them (shipped by file name, then the user's). */
export interface RefreshTarget {
  table: TableSpec;
  views: FlatView[];
}

export interface RefreshOptions {
  knex: Knex;
  kind: DatabaseKind;
  /** The FHIR schema: where a table that does not exist yet is created. */
  schema: string;
  ledger: RunLedger;
  signal: AbortSignal;
  dryRun: boolean;
  reporter?: Reporter;
  /** Resources per batch (default 2,000; a batch also ends at BATCH_JSON_LIMIT characters). */
  batchSize?: number;
}

export interface TableOutcome {
  table: string;
  views: string[];
  rows: number;
  /** The table did not exist before. */
  created: boolean;
}

export interface RefreshResult {
  /** Resources read from fhir_resources (each once, whatever the number of tables it fills). */
  resources: number;
  rejected: number;
  tables: TableOutcome[];
}

export const DEFAULT_REFRESH_BATCH = 2000;
/** Characters of resource JSON after which a batch ends whatever its count: memory stays bounded. */
const BATCH_JSON_LIMIT = 16 * 1024 * 1024;
const SOURCE = 'fhir_resources';

/** A stored resource as read back: its key and its JSON text. */
export interface StoredResource {
  type: string;
  id: string;
  json: string;
}

/**
 * The current, not deleted, resources of `types`, read in pages of `pageSize` by keyset pagination on
 * the primary key (resource_type, id): each page is one indexed range query, so no cursor stays open
 * between pages and the embedded database's single connection is free for the writes in between.
 */
export async function* readResources(q: Knex | Knex.Transaction, types: readonly string[], pageSize: number): AsyncGenerator<StoredResource> {
  for (const type of types) {
    let after = '';
    for (;;) {
      const result = await q.raw<{ rows: { id: string; json: string }[] }>(
        `select id, resource::text as json from fhir_resources
          where resource_type = ? and id > ? and not deleted order by id limit ?`,
        [type, after, pageSize],
      );
      const rows = result.rows;
      for (const r of rows) yield { type, id: r.id, json: r.json };
      if (rows.length < pageSize) break;
      after = rows[rows.length - 1]!.id;
    }
  }
}

/**
 * One stored resource through the views of its type: its rows per table (mapRows, as ingest-fhir
 * maps), or the reason a view cannot map it. Parsed as the file reader parses: losslessly only where a
 * number would lose digits.
 */
export function mapStored(stored: StoredResource, viewsByType: ReadonlyMap<string, readonly FlatView[]>): MapResult<Map<string, Row[]>> {
  const resource = (mayLoseDigits(stored.json) ? parseLossless(stored.json) : JSON.parse(stored.json)) as FhirResource & { id: string };
  const key = `${stored.type}/${stored.id}`;
  const mapped = mapRows(resource, viewsByType.get(stored.type) ?? []);
  if (isMappingIssue(mapped)) return { ok: false, reason: mapped.reasonCode, message: mapped.message, field: mapped.field, key, group: stored.type };
  return { ok: true, value: mapped.rows, key, group: stored.type, weight: stored.json.length };
}

/** Writes a batch's rows into the side tables (`targets`: table → its spec and side table); returns rows per table. */
export async function writeSides(
  trx: Knex.Transaction,
  kind: DatabaseKind,
  targets: ReadonlyMap<string, { spec: TableSpec; side: string }>,
  items: readonly { value: Map<string, Row[]> }[],
): Promise<Map<string, number>> {
  const byTable = new Map<string, Row[]>();
  for (const item of items) {
    for (const [table, rows] of item.value) {
      const list = byTable.get(table);
      if (list) for (const r of rows) list.push(r);
      else byTable.set(table, [...rows]);
    }
  }
  const written = new Map<string, number>();
  for (const [table, rows] of byTable) {
    const target = targets.get(table);
    if (!target || rows.length === 0) continue;
    written.set(table, await writeRows(trx, kind, target.side, [...target.spec.columns, ...BOOKKEEPING], rows));
  }
  return written;
}

/** The name a table is built under before the swap: beside it, recognisable, within Postgres' 63 characters. */
export function sideTableName(table: string): string {
  return `${table.slice(0, 48)}__refresh`;
}

/**
 * Rebuilds every target table from fhir_resources in one pass, then swaps each in. An interruption
 * drops the side tables and leaves every table as it was (INTERRUPTED, exit 130).
 */
export async function refreshTables(allTargets: readonly RefreshTarget[], options: RefreshOptions): Promise<RefreshResult> {
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_REFRESH_BATCH);
  for (const t of allTargets) await refuseReservedTableName(options.knex, t.table.table);
  // A table already empty, of the right columns, whose views have no resource to map, would be rebuilt
  // as it is: only its record is written (creating and swapping it costs more than the rest on PGlite).
  const empty: RefreshTarget[] = [];
  const targets: RefreshTarget[] = [];
  for (const t of allTargets) (await alreadyEmpty(options.knex, t) ? empty : targets).push(t);
  const sides = new Map<string, { spec: TableSpec; side: string; schema: string; existed: boolean }>();
  const viewsByType = new Map<string, FlatView[]>();
  for (const t of targets) {
    for (const v of t.views) viewsByType.set(v.view.resource, [...(viewsByType.get(v.view.resource) ?? []), v]);
  }
  const rowsOf = new Map<string, number>(targets.map((t) => [t.table.table, 0]));
  const totalRows = () => [...rowsOf.values()].reduce((a, b) => a + b, 0);

  const pipeline: Pipeline<StoredResource, Map<string, Row[]>> = {
    name: 'views refresh',
    batchSize,
    batchWeight: BATCH_JSON_LIMIT,
    async prepare(ctx) {
      for (const t of targets) {
        const existing = await schemaOf(ctx.q, t.table.table);
        const side = { spec: t.table, side: sideTableName(t.table.table), schema: existing ?? options.schema, existed: existing !== undefined };
        sides.set(t.table.table, side);
        // a side table left by a run that crashed
        await ctx.q.raw(`drop table if exists ${qualified(side.schema, side.side)}`);
        // without its key and indexes: they are built once the table is full
        await createFlatTable(ctx.q, t.table, side.schema, side.side, { keys: false });
        if (side.existed) await copyGeneratedColumns(ctx.q, side.schema, t.table.table, side.side);
      }
    },
    read(ctx) {
      return (async function* () {
        for await (const record of readResources(ctx.q, [...viewsByType.keys()], batchSize)) yield { kind: 'record' as const, record, at: { source: SOURCE } };
      })();
    },
    map: (stored) => mapStored(stored, viewsByType),
    // the side table is invisible until the swap, which commits durably: a batch need not wait for its WAL flush
    begin: async (trx) => {
      await trx.raw('set local synchronous_commit = off');
    },
    async write(trx, batch) {
      const written = await writeSides(trx, options.kind, sides, batch.items);
      return {
        outcomes: batch.items.map(() => 'written' as const),
        committed: () => {
          for (const [table, n] of written) rowsOf.set(table, rowsOf.get(table)! + n);
        },
      };
    },
    describe(summary) {
      const rate = summary.elapsedMs > 0 ? Math.round((summary.read * 1000) / summary.elapsedMs) : 0;
      return {
        text: `views refresh: ${summary.read} resources, ${totalRows()} rows, ${rate}/s${summary.rejected ? `, ${summary.rejected} rejected` : ''}`,
        fields: { resources: summary.read, rows: totalRows(), per_second: rate, rejected: summary.rejected },
      };
    },
  };

  const result: RefreshResult = { resources: 0, rejected: 0, tables: [] };
  try {
    const summary = await run(pipeline, {
      knex: options.knex,
      ledger: options.ledger,
      signal: options.signal,
      dryRun: options.dryRun,
      reporter: options.reporter,
      groupsDetail: 'types',
    });
    result.resources = summary.read;
    result.rejected = summary.rejected;
    for (const t of targets) {
      const side = sides.get(t.table.table)!;
      if (!options.dryRun) {
        await addFlatTableKeys(options.knex, t.table, side.schema, side.side);
        const extra = side.existed ? await extraIndexes(options.knex, side.schema, t.table) : [];
        // other indexes of the old table (codings' lookup index), built on the full side table: faster than row by row
        for (const index of extra) await options.knex.raw(escapeBindings(index.sideSql));
        await swapIn(options, t, side, extra);
        sides.delete(t.table.table);
      }
      result.tables.push({ table: t.table.table, views: t.views.map((v) => v.viewName), rows: rowsOf.get(t.table.table)!, created: !side.existed });
    }
    for (const t of empty) {
      if (!options.dryRun) await inRunTransaction(options.knex, options.ledger, (trx) => recordViews(trx, t.table.table, recordsOf(t.views), options.ledger.id));
      result.tables.push({ table: t.table.table, views: t.views.map((v) => v.viewName), rows: 0, created: false });
    }
    result.tables.sort((a, b) => (a.table < b.table ? -1 : a.table > b.table ? 1 : 0));
  } finally {
    // what is not swapped in goes (a dry run's rollback took it already)
    if (!options.dryRun) {
      for (const side of sides.values()) await options.knex.raw(`drop table if exists ${qualified(side.schema, side.side)}`).catch(() => undefined);
    }
  }
  options.ledger.details.rows = totalRows();
  return result;
}

/**
 * One short transaction: drop the old table (its dependent views with it), rename the side table,
 * its key and indexes to the old names, recreate the dependent views and the grants, and record the
 * table's views.
 */
async function swapIn(
  options: RefreshOptions,
  target: RefreshTarget,
  side: { side: string; schema: string; existed: boolean },
  extra: ExtraIndex[],
): Promise<void> {
  const table = target.table.table;
  const swap = async (trx: Knex.Transaction) => {
    const old = qualified(side.schema, table);
    const dependents = side.existed ? await dependentViews(trx, old) : [];
    const grants = side.existed ? await grantsOn(trx, old) : [];
    for (const view of dependents) view.grants = await grantsOn(trx, qualified(view.schema, view.name));
    await trx.raw(`drop table if exists ${old} cascade`);
    await trx.raw(`alter table ${qualified(side.schema, side.side)} rename to ${quoteIdent(table)}`);
    await trx.raw(`alter table ${old} rename constraint ${quoteIdent(primaryKeyName(side.side))} to ${quoteIdent(primaryKeyName(table))}`);
    for (const column of target.table.indexed ?? []) {
      await trx.raw(`alter index ${qualified(side.schema, referenceIndexName(side.side, column))} rename to ${quoteIdent(referenceIndexName(table, column))}`);
    }
    for (const index of extra) await trx.raw(`alter index ${qualified(side.schema, index.sideName)} rename to ${quoteIdent(index.name)}`);
    for (const grant of grants) await trx.raw(grantSql(grant, old));
    for (const view of dependents) {
      const what = view.kind === 'm' ? 'materialized view' : 'view';
      await trx.raw(escapeBindings(`create ${what} ${qualified(view.schema, view.name)} as ${view.definition.replace(/;\s*$/, '')}`));
      for (const grant of view.grants ?? []) await trx.raw(grantSql(grant, qualified(view.schema, view.name)));
    }
    // the codings table's derived column and the diseases view, when the table is new
    if (table === 'codings') await ensureCodingsExtras(trx as unknown as Knex);
    await recordViews(trx, table, recordsOf(target.views), options.ledger.id);
    // the views its history is derived through (src/fhir/derived-history.ts): the ones it was rebuilt with
    await recordDerivedTable(trx, table, target.views.map((v) => v.definition));
  };
  await inRunTransaction(options.knex, options.ledger, swap);
}

/** The table exists with the spec's columns and no row, and no current resource of its views' types is stored. */
async function alreadyEmpty(knex: Knex, target: RefreshTarget): Promise<boolean> {
  if (!sameColumns(await existingColumns(knex, target.table.table), target.table)) return false;
  const types = [...new Set(target.views.map((v) => v.view.resource))];
  const result = await knex.raw<{ rows: { filled: boolean }[] }>(
    `select exists (select 1 from ${quoteIdent(target.table.table)}) or exists (select 1 from fhir_resources where resource_type = any(?::text[]) and not deleted) as filled`,
    [types],
  );
  return !result.rows[0]!.filled;
}

function qualified(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** knex.raw reads `?` as a binding: SQL from the catalog (a view using the jsonb `?` operator) is escaped. */
function escapeBindings(sql: string): string {
  return sql.replace(/\?/g, '\\?');
}

/** The schema holding the table a plain name finds on the search path; undefined when there is none. */
async function schemaOf(q: Knex | Knex.Transaction, table: string): Promise<string | undefined> {
  const result = await q.raw<{ rows: { schema: string }[] }>(
    `select n.nspname as schema from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass(?) and c.relkind in ('r', 'p')`,
    [quoteIdent(table)],
  );
  return result.rows[0]?.schema;
}

/** Stored generated columns of the old table (codings.system_name): the side table gets them too, computed as rows arrive. */
async function copyGeneratedColumns(q: Knex | Knex.Transaction, schema: string, table: string, side: string): Promise<void> {
  const result = await q.raw<{ rows: { name: string; type: string; expression: string }[] }>(
    `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, pg_get_expr(d.adbin, d.adrelid) as expression
       from pg_attribute a join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where a.attrelid = ?::regclass and a.attnum > 0 and not a.attisdropped and a.attgenerated = 's'
      order by a.attnum`,
    [qualified(schema, table)],
  );
  for (const c of result.rows) {
    await q.raw(escapeBindings(`alter table ${qualified(schema, side)} add column ${quoteIdent(c.name)} ${c.type} generated always as (${c.expression}) stored`));
  }
}

interface ExtraIndex {
  name: string;
  sideName: string;
  sideSql: string;
}

/** Indexes of the old table other than its key and reference indexes, as statements that build them on the side table. */
async function extraIndexes(q: Knex | Knex.Transaction, schema: string, spec: TableSpec): Promise<ExtraIndex[]> {
  const table = spec.table;
  const result = await q.raw<{ rows: { name: string; definition: string }[] }>(
    `select i.relname as name, pg_get_indexdef(x.indexrelid) as definition
       from pg_index x join pg_class i on i.oid = x.indexrelid
      where x.indrelid = ?::regclass and not x.indisprimary order by i.relname`,
    [qualified(schema, table)],
  );
  const side = sideTableName(table);
  // the side table has these already
  const made = new Set((spec.indexed ?? []).map((column) => referenceIndexName(table, column)));
  const out: ExtraIndex[] = [];
  for (const r of result.rows) {
    if (made.has(r.name)) continue;
    const sideName = `${r.name.slice(0, 50)}__refresh`;
    // `CREATE [UNIQUE] INDEX name ON [ONLY] schema.table USING …`, as pg_get_indexdef writes it
    const head = /^(CREATE (?:UNIQUE )?INDEX )(\S+|"(?:[^"]|"")+") ON (ONLY )?(.+?) USING /.exec(r.definition);
    if (!head) continue;
    const sideSql = `${head[1]}${quoteIdent(sideName)} ON ${head[3] ?? ''}${qualified(schema, side)} USING ${r.definition.slice(head[0].length)}`;
    out.push({ name: r.name, sideName, sideSql });
  }
  return out;
}

interface Grant {
  privilege: string;
  grantee: string;
  grantable: boolean;
}

interface DependentView {
  schema: string;
  name: string;
  kind: string;
  definition: string;
  grants?: Grant[];
}

/** Views (and materialized views) that depend on `relation`, directly or through others, in an order that recreates them. */
async function dependentViews(q: Knex.Transaction, relation: string): Promise<DependentView[]> {
  const result = await q.raw<{ rows: DependentView[] }>(
    `with recursive deps(oid, depth) as (
       select r.ev_class, 1
         from pg_depend d join pg_rewrite r on r.oid = d.objid
        where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
          and d.refobjid = ?::regclass and r.ev_class <> d.refobjid
       union all
       select r.ev_class, deps.depth + 1
         from deps join pg_depend d on d.refobjid = deps.oid and d.refclassid = 'pg_class'::regclass and d.classid = 'pg_rewrite'::regclass
         join pg_rewrite r on r.oid = d.objid
        where r.ev_class <> deps.oid and deps.depth < 32
     )
     select n.nspname as schema, c.relname as name, c.relkind::text as kind, pg_get_viewdef(c.oid) as definition
       from deps join pg_class c on c.oid = deps.oid join pg_namespace n on n.oid = c.relnamespace
      group by n.nspname, c.relname, c.relkind, c.oid
      order by max(deps.depth), c.relname`,
    [relation],
  );
  return result.rows;
}

/** The privileges granted on a relation to others than its owner. */
async function grantsOn(q: Knex.Transaction, relation: string): Promise<Grant[]> {
  const result = await q.raw<{ rows: Grant[] }>(
    `select a.privilege_type as privilege,
            case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end as grantee,
            a.is_grantable as grantable
       from pg_class c cross join lateral aclexplode(c.relacl) a
      where c.oid = ?::regclass and a.grantee <> c.relowner`,
    [relation],
  );
  return result.rows;
}

function grantSql(grant: Grant, relation: string): string {
  return `grant ${grant.privilege} on ${relation} to ${grant.grantee}${grant.grantable ? ' with grant option' : ''}`;
}
