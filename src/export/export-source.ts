/**
 * The source pipeline of export-csv: a declared table, view or computed source read in one read-only
 * transaction. Its cells are made by the database (cell-sql.ts: formatted, profiled, guarded), so on
 * a Postgres server `COPY (SELECT …) TO STDOUT` writes the CSV (copy-out.ts) and no row passes
 * through Node; on PGlite the cells come through a cursor to csv-stringify.
 */
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import { quoteIdent } from '../db/catalog.js';
import type { Cell } from '../io/csv.js';
import { applyProfile, pseudonymiser, pseudonymSql } from './profile.js';
import { buildSelect, parseCondition, ReadTransaction, userErrorFromDatabase, type Condition, type Field, type SqlQuery } from './query.js';
import { loadSources } from './sources.js';
import type { ExportParams, SourceDeclaration } from './treatments.js';
import type { ExportCsvDeps, ExportCsvOptions, ExportCsvResult } from './export-csv.js';
import { cellSql } from './cell-sql.js';
import { copyCsv, copyWrites } from './copy-out.js';
import { checkResearchFlags, chooseColumns, csvWriter, DEFAULT_BATCH, progressCounter, usage, writeOut, type ReadColumn } from './pipeline.js';

/** A Postgres server (COPY through pg-copy-streams), not the embedded PGlite. */
function isServer(knex: Knex): boolean {
  return (knex.client as { config: { client?: unknown } }).config.client === 'pg';
}

/** A declared source, found and checked against the flags before anything is read. */
interface ResolvedSource {
  name: string;
  declaration: SourceDeclaration;
  computed: boolean;
  params: ExportParams;
  inner: SqlQuery;
}

async function resolveSource(options: ExportCsvOptions, deps: Pick<ExportCsvDeps, 'extraSources' | 'now'>): Promise<ResolvedSource> {
  const sources = await loadSources({ viewsDir: options.viewsDir });
  for (const extra of deps.extraSources ?? []) sources.set(extra.name, extra);
  const name = options.source!;
  const declared = sources.get(name);
  if (!declared) {
    throw new CarepipeError('SOURCE_UNKNOWN', `unknown source '${name}'; carepipe export-csv --list shows them (${[...sources.keys()].join(', ')})`);
  }
  const computed = typeof declared.query === 'function';
  const params: ExportParams = { ...options.params, now: deps.now() };
  const declaration = declared.treatmentsFor ? { ...declared, columns: declared.treatmentsFor(params) } : declared;
  const given = (['by', 'period', 'from', 'to'] as const).filter((k) => options.params[k] !== undefined);
  if (!computed && given.length > 0) throw usage(`--${given[0]} applies to computed sources only; ${name} is a table`);
  if (options.chart && !declaration.chart) throw usage(`${name} draws no chart (--chart)`);
  const inner: SqlQuery = computed ? declaration.query!(params) : { sql: 'select * from ??', bindings: [declaration.relation ?? name] };
  return { name, declaration, computed, params, inner };
}

/**
 * The SELECT of an export's cells and its CSV header: columns chosen and checked against the profile,
 * --where and --since validated and bound, rows in key order (pseudonym order for research).
 */
async function planSelect(read: ReadTransaction, source: ResolvedSource, options: ExportCsvOptions, conditions: Condition[]): Promise<{ select: SqlQuery; header: string[] }> {
  const { name, declaration, computed, inner } = source;
  const fields = await read.describe(inner).catch((err) => {
    throw userErrorFromDatabase(err, { source: name }) ?? err;
  });
  const columns = orderColumns(fields, declaration);
  const chosen = chooseColumns(columns, options.columns, name);
  if (options.profile === 'research') checkResearchFlags(columns, options.columns, conditions, name);
  const profiled = applyProfile(chosen, { profile: options.profile, pseudonymKey: options.pseudonymKey, source: name, birthDate: options.birthDate });
  const research = options.profile === 'research';
  const known = new Set(fields.map((f) => f.name));
  const conditionTypes = new Map<string, string>();
  for (const c of conditions) {
    if (!known.has(c.column)) throw usage(`--where: ${name} has no column '${c.column}' (it has: ${[...known].join(', ')})`, { field: c.column });
    const oid = fields.find((f) => f.name === c.column)!.oid;
    const type = await read.misfit(c.value, oid);
    // The value is left out of the message: it may be patient data (a birth date), and errors reach the ledger.
    if (type) throw usage(`--where ${c.column}: the value given does not fit its column ${name}.${c.column}, of type ${type}`, { field: c.column });
    conditionTypes.set(c.column, await read.typeName(oid));
  }
  let since: { column: string; value: string } | undefined;
  if (options.since !== undefined) {
    const column = declaration.lastUpdatedColumn;
    if (!column || !known.has(column)) throw usage(`--since: ${name} has no last-updated column`);
    if (options.profile === 'research' && declaration.columns[column] !== 'keep') {
      throw usage(`--since: the research profile filters only on columns kept as they are; ${name}.${column} is ${declaration.columns[column] ?? 'undeclared'}`);
    }
    since = { column, value: options.since };
  }
  // A research export in key order would list patients by NHS number: order by the pseudonyms instead
  // (a computed source by its pseudonymised columns first, so clinicians do not come out by name).
  const key = computed
    ? research && chosen.some((c) => c.treatment === 'pseudonym')
      ? [...chosen.filter((c) => c.treatment === 'pseudonym'), ...chosen.filter((c) => c.treatment === 'keep')].map((c) => c.name)
      : []
    : await read.primaryKey(declaration.relation ?? name);
  const orderBy = research ? key.map((c) => (declaration.columns[c] === 'keep' ? c : pseudonymSql(options.pseudonymKey!, `q.${quoteIdent(c)}`))) : key;
  const patientKey = research ? patientKeySql(declaration, known) : undefined;
  // Every cell is made by the database (cell-sql.ts): formatted, profiled and guarded in the SELECT.
  const plan = { profile: options.profile, pseudonymKey: options.pseudonymKey, birthDate: options.birthDate, formulaGuard: options.formulaGuard, patientKey };
  const cells = profiled.map((p) => ({ name: p.name, sql: cellSql(chosen[p.index]!, plan)! }));
  return { select: buildSelect({ inner, columns: chosen, cells, conditions, since, orderBy, conditionTypes }), header: profiled.map((p) => p.name) };
}

/** The SELECT an export of `options.source` runs (bench/export-csv.mjs measures COPY of it against the export). */
export async function exportSelect(knex: Knex, options: ExportCsvOptions, now = new Date()): Promise<{ select: SqlQuery; header: string[] }> {
  const source = await resolveSource(options, { now: () => now });
  const read = await ReadTransaction.begin(knex, { timezone: options.timezone });
  try {
    return await planSelect(read, source, options, options.where.map(parseCondition));
  } finally {
    await read.end(true);
  }
}

export async function exportSource(options: ExportCsvOptions, conditions: Condition[], deps: ExportCsvDeps): Promise<ExportCsvResult> {
  const source = await resolveSource(options, deps);
  const { name, declaration, params } = source;
  deps.reporter.start(`export-csv ${name}`);
  const read = await ReadTransaction.begin(deps.knex, { timezone: options.timezone });
  let ok = false;
  let outcome: Omit<ExportCsvResult, 'chart'>;
  try {
    const { select, header } = await planSelect(read, source, options, conditions);
    const progress = progressCounter(deps.reporter, name);
    const counted = (n: number) => {
      progress.add(n);
      deps.ledger.add({ read: n });
    };
    let write: (output: Writable) => Promise<unknown>;
    if (isServer(deps.knex) && copyWrites(options.format, header.length)) {
      // The server writes the CSV: no row passes through Node.
      write = (output) => copyCsv(deps.knex, read.trx, select, output, { ...options.format, signal: deps.signal, onRows: counted });
    } else {
      // PGlite (or a format COPY cannot write): the cells come through a cursor and csv-stringify writes them.
      const batchSize = options.batchSize ?? DEFAULT_BATCH;
      const rows = async function* (): AsyncGenerator<Cell[][]> {
        for await (const batch of read.batches(select, batchSize)) {
          // A select of no columns still reads one (`select null`): nothing of it is written.
          yield header.length > 0 ? batch : batch.map(() => []);
          counted(batch.length);
        }
      };
      write = csvWriter(rows(), header, options, deps);
    }
    const output = await writeOut(write, options, deps).catch((err: unknown) => {
      throw userErrorFromDatabase(err, { source: name }) ?? err;
    });
    outcome = { source: name, profile: options.profile, rows: progress.rows, columns: header, output };
    ok = true;
  } finally {
    await read.end(ok);
  }
  if (options.chart) {
    const file = path.resolve(deps.cwd, options.chart);
    const relabel = options.profile === 'research' ? pseudonymiser(options.pseudonymKey!) : undefined;
    await declaration.chart!(deps.knex, params, file, relabel, { mode: options.fileMode, flag: '--chart' });
    return { ...outcome, chart: file };
  }
  return outcome;
}

/** The row's patient key for date shifting, as an SQL expression over `q` (undefined when the source has none). */
function patientKeySql(declaration: SourceDeclaration, known: Set<string>): SqlQuery | undefined {
  const key = declaration.patientKey;
  if (!key) return undefined;
  if ('sql' in key) return { sql: key.sql, bindings: [] };
  return known.has(key.column) ? { sql: `q.${quoteIdent(key.column)}`, bindings: [] } : undefined;
}

/** Declared columns in declared order, then any the declaration does not know (treatment undefined). */
function orderColumns(fields: Field[], declaration: SourceDeclaration): ReadColumn[] {
  const byName = new Map(fields.map((f) => [f.name, f]));
  const declared = Object.keys(declaration.columns);
  const out: ReadColumn[] = [];
  for (const name of declared) {
    const field = byName.get(name);
    if (field) out.push({ ...field, treatment: declaration.columns[name] });
  }
  for (const field of fields) {
    if (!(field.name in declaration.columns)) out.push({ ...field });
  }
  return out;
}
