/**
 * `carepipe export-csv`: a declared table, view or computed source, or a ViewDefinition evaluated over
 * the stored FHIR resources, streamed through a cursor to CSV with the chosen profile applied.
 */
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Knex } from 'knex';
import { parse as parseLossless, stringify as stringifyLossless } from 'lossless-json';
import { CarepipeError, isCarepipeError } from '../errors.js';
import { quoteIdent } from '../db/catalog.js';
import type { RejectRecord, RunLedger } from '../db/ledger.js';
import type { Reporter } from '../pipeline/reporter.js';
import { readViewFile } from '../fhir/view/index.js';
import { guardFormula, writeCsv, type Cell, type CsvFormat } from '../io/csv.js';
import { writeFileAtomically } from '../io/output-file.js';
import { formatPgText, type ValueKind } from './format.js';
import { applyProfile, pseudonymiser, pseudonymSql, type BirthDateTreatment, type Profile, type ProfiledColumn } from './profile.js';
import { buildSelect, parseCondition, ReadTransaction, userErrorFromDatabase, type Condition, type Field, type SqlQuery } from './query.js';
import { loadSources } from './sources.js';
import type { ExportParams, SourceDeclaration, Treatment } from './treatments.js';
import { patientKeyOf, refuseKeptIdentifiers, researchColumns } from './view-tags.js';

export interface ExportCsvOptions {
  /** A declared source name, or undefined with `view`. */
  source?: string;
  /** A ViewDefinition file evaluated over fhir_resources. */
  view?: string;
  /** Output file; stdout when undefined. */
  output?: string;
  where: string[];
  since?: string;
  columns?: string[];
  profile: Profile;
  pseudonymKey?: string;
  /** --birth-date: research birth dates cut to the year (default) or shifted like the other dates. */
  birthDate?: BirthDateTreatment;
  format: CsvFormat;
  formulaGuard: boolean;
  timezone: string;
  /** Parameters of a computed source (--by --period --from --to). */
  params: ExportParams;
  chart?: string;
  /** Mode of the files written (-o, --chart): see io/output-file.ts; default 0600 for a new file. */
  fileMode?: number;
  /** Rows per FETCH. */
  batchSize?: number;
  /** Where views/*.json are (tests). */
  viewsDir?: string;
}

export interface ExportCsvDeps {
  knex: Knex;
  reporter: Reporter;
  ledger: RunLedger;
  stdout: Writable;
  signal: AbortSignal;
  cwd: string;
  now: () => Date;
  /** --dry-run: read and count everything, write no file. */
  dryRun?: boolean;
  /** More declarations than the shipped ones (tests declare a computed source of their own). */
  extraSources?: SourceDeclaration[];
}

export interface ExportCsvResult {
  source: string;
  profile: Profile;
  rows: number;
  columns: string[];
  output: string;
  chart?: string;
}

/** A column as read, with its declared treatment. */
interface ReadColumn extends Field {
  treatment?: Treatment;
}

const DEFAULT_BATCH = 2_000;

function usage(message: string, context = {}): CarepipeError {
  return new CarepipeError('USAGE', message, context);
}

/** Chooses and orders columns with --columns; every name must exist. */
function chooseColumns<T extends { name: string }>(all: T[], wanted: string[] | undefined, source: string): T[] {
  if (!wanted || wanted.length === 0) return all;
  const byName = new Map(all.map((c) => [c.name, c]));
  return wanted.map((name) => {
    const column = byName.get(name);
    if (!column) throw usage(`${source} has no column '${name}' (it has: ${all.map((c) => c.name).join(', ')})`, { field: name });
    return column;
  });
}

/**
 * Checks --columns and --where against the research profile: a researcher cannot ask for a dropped
 * column, nor filter on a column that is not kept as it is (filtering on an NHS number or a birth date
 * would reveal whether that person is in the data).
 */
function checkResearchFlags(columns: ReadColumn[], chosen: string[] | undefined, conditions: Condition[], source: string): void {
  const treatment = new Map(columns.map((c) => [c.name, c.treatment]));
  for (const name of chosen ?? []) {
    if (treatment.get(name) === 'drop') throw usage(`${source}: column '${name}' is dropped by the research profile`, { field: name });
  }
  for (const condition of conditions) {
    const t = treatment.get(condition.column);
    if (t !== 'keep') {
      throw usage(`${source}: the research profile filters only on columns kept as they are; '${condition.column}' is ${t ?? 'undeclared'}`, {
        field: condition.column,
      });
    }
  }
}

/** Turns rows read into cells: formatted, profiled, guarded against formulas; `patientIndex` is where the row's patient key is. */
function cellMaker(profiled: ProfiledColumn[], kinds: ValueKind[], formulaGuard: boolean, formatted: boolean, patientIndex?: number) {
  const plan = profiled.map((p) => ({
    index: p.index,
    kind: kinds[p.index]!,
    transform: p.transform,
    guard: formulaGuard && kinds[p.index] !== 'number',
  }));
  return (row: readonly unknown[]): Cell[] =>
    plan.map(({ index, kind, transform, guard }) => {
      const value = row[index];
      if (value === null || value === undefined) return null;
      let cell: string | null = formatted ? (value as string) : formatPgText(value as string, kind);
      if (transform) cell = transform(cell, patientIndex === undefined ? null : ((row[patientIndex] as string | null | undefined) ?? null));
      return guard && cell !== null ? guardFormula(cell) : cell;
    });
}

/** Progress on the reporter: rows and rate, at most a few times a second. */
function progressCounter(reporter: Reporter, label: string) {
  const started = Date.now();
  let rows = 0;
  let shown = 0;
  return {
    add(n: number) {
      rows += n;
      const now = Date.now();
      if (now - shown < 250) return;
      shown = now;
      const rate = Math.round(rows / Math.max((now - started) / 1000, 0.001));
      reporter.progress(`${label}: ${rows} rows, ${rate} rows/s`, { rows, rate });
    },
    get rows() {
      return rows;
    },
  };
}

async function writeOut(rows: AsyncIterable<Cell[][]>, header: string[], options: ExportCsvOptions, deps: ExportCsvDeps): Promise<string> {
  const csv = { ...options.format, signal: deps.signal };
  if (deps.dryRun) {
    const nowhere = new Writable({ write: (_chunk, _encoding, done) => done() });
    await writeCsv(rows, header, nowhere, csv);
    return 'none (dry run)';
  }
  if (!options.output) {
    try {
      await writeCsv(rows, header, deps.stdout, csv);
    } catch (err) {
      // The reader of a pipe went away (`| head`): it has what it wanted; stop quietly, as Unix tools do.
      if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
      deps.ledger.details.output_closed = true;
    }
    return 'stdout';
  }
  const file = path.resolve(deps.cwd, options.output);
  await writeFileAtomically(file, (out) => writeCsv(rows, header, out, csv), { mode: options.fileMode, flag: '-o' });
  return file;
}

export async function runExportCsv(options: ExportCsvOptions, deps: ExportCsvDeps): Promise<ExportCsvResult> {
  const conditions = options.where.map(parseCondition);
  const result = options.view ? await exportView(options, conditions, deps) : await exportSource(options, conditions, deps);
  deps.ledger.add({ written: result.rows });
  Object.assign(deps.ledger.details, {
    source: result.source,
    profile: result.profile,
    rows: result.rows,
    output: result.output,
    columns: result.columns,
    ...(result.chart ? { chart: result.chart } : {}),
  });
  return result;
}

async function exportSource(options: ExportCsvOptions, conditions: Condition[], deps: ExportCsvDeps): Promise<ExportCsvResult> {
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

  deps.reporter.start(`export-csv ${name}`);
  const read = await ReadTransaction.begin(deps.knex, { timezone: options.timezone });
  let ok = false;
  let outcome: Omit<ExportCsvResult, 'chart'>;
  try {
    const fields = await read.describe(inner).catch((err) => {
      throw userErrorFromDatabase(err, { source: name }) ?? err;
    });
    const columns = orderColumns(fields, declaration);
    const chosen = chooseColumns(columns, options.columns, name);
    if (options.profile === 'research') checkResearchFlags(columns, options.columns, conditions, name);
    const profiled = applyProfile(chosen, { profile: options.profile, pseudonymKey: options.pseudonymKey, source: name, birthDate: options.birthDate });
    const research = options.profile === 'research';
    const known = new Set(fields.map((f) => f.name));
    for (const c of conditions) {
      if (!known.has(c.column)) throw usage(`--where: ${name} has no column '${c.column}' (it has: ${[...known].join(', ')})`, { field: c.column });
      const type = await read.misfit(c.value, fields.find((f) => f.name === c.column)!.oid);
      // The value is left out of the message: it may be patient data (a birth date), and errors reach the ledger.
      if (type) throw usage(`--where ${c.column}: the value given does not fit its column ${name}.${c.column}, of type ${type}`, { field: c.column });
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
    const select = buildSelect({ inner, columns: chosen, conditions, since, orderBy, extra: patientKey ? [patientKey] : [] });
    const toCells = cellMaker(profiled, chosen.map((c) => c.kind), options.formulaGuard, false, patientKey ? chosen.length : undefined);
    const progress = progressCounter(deps.reporter, name);
    const batchSize = options.batchSize ?? DEFAULT_BATCH;
    async function* rows(): AsyncGenerator<Cell[][]> {
      try {
        for await (const batch of read.batches(select, batchSize)) {
          yield batch.map(toCells);
          progress.add(batch.length);
          deps.ledger.add({ read: batch.length });
        }
      } catch (err) {
        throw userErrorFromDatabase(err, { source: name }) ?? err;
      }
    }
    const header = profiled.map((p) => p.name);
    const output = await writeOut(rows(), header, options, deps);
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

/** A view value as a cell (see format.ts): the engine already gives typed JS values. */
function viewCell(value: unknown, collection: boolean): string | null {
  if (value === null || value === undefined) return null;
  if (collection) return stringifyLossless(value) ?? null;
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
  return stringifyLossless(value) ?? null;
}

/** JS-side `--where` on view columns, on the cell text: numbers compare as numbers, the rest as text. */
function viewFilter(conditions: Condition[], columns: { name: string; kind: ValueKind }[], source: string) {
  const tests = conditions.map((c) => {
    const index = columns.findIndex((col) => col.name === c.column);
    if (index < 0) throw usage(`--where: ${source} has no column '${c.column}' (it has: ${columns.map((col) => col.name).join(', ')})`, { field: c.column });
    const numeric = columns[index]!.kind === 'number';
    const wanted = numeric ? Number(c.value) : c.value;
    if (numeric && Number.isNaN(wanted)) throw usage(`--where ${c.column}: '${c.value}' is not a number`, { field: c.column });
    return (cells: (string | null)[]): boolean => {
      const cell = cells[index];
      if (cell === null || cell === undefined) return false;
      const have = numeric ? Number(cell) : cell;
      switch (c.operator) {
        case '=':
          return have === wanted;
        case '!=':
          return have !== wanted;
        case '<':
          return have < wanted;
        case '<=':
          return have <= wanted;
        case '>':
          return have > wanted;
        case '>=':
          return have >= wanted;
      }
    };
  });
  return (cells: (string | null)[]) => tests.every((test) => test(cells));
}

async function exportView(options: ExportCsvOptions, conditions: Condition[], deps: ExportCsvDeps): Promise<ExportCsvResult> {
  const file = path.resolve(deps.cwd, options.view!);
  const { definition, view } = readViewFile(file);
  if (options.chart || (['by', 'period', 'from', 'to'] as const).some((k) => options.params[k] !== undefined)) {
    throw usage('--by, --period, --from, --to and --chart apply to computed sources, not to --view');
  }
  const research = researchColumns(definition, file);
  if (options.profile === 'research') refuseKeptIdentifiers(research, file);
  const all: (ReadColumn & { collection: boolean })[] = view.columns.map((c) => ({
    name: c.name,
    oid: 0,
    kind: c.collection ? 'json' : c.sqlType === 'integer' || c.sqlType === 'bigint' || c.sqlType === 'numeric' ? 'number' : c.sqlType === 'boolean' ? 'boolean' : 'text',
    treatment: research.get(c.name)?.treatment,
    collection: c.collection,
  }));
  const label = path.basename(file);
  const chosen = chooseColumns(all, options.columns, label);
  if (options.profile === 'research') checkResearchFlags(all, options.columns, conditions, label);
  const profiled = applyProfile(chosen, { profile: options.profile, pseudonymKey: options.pseudonymKey, source: label, birthDate: options.birthDate });
  const patientColumn = patientKeyOf(definition)?.column;
  const patientIndex = patientColumn === undefined ? -1 : all.findIndex((c) => c.name === patientColumn);
  // Filters see every column of the view, before the profile changes or drops any.
  const keep = viewFilter(conditions, all, label);
  const toCells = cellMaker(
    profiled.map((p) => ({ ...p, index: all.indexOf(chosen[p.index]!) })),
    all.map((c) => c.kind),
    options.formulaGuard,
    true,
    patientIndex >= 0 ? patientIndex : undefined,
  );
  // Resources in id order would list them by their real ids: the research profile orders by pseudonym.
  const order = options.profile === 'research' ? pseudonymSql(options.pseudonymKey!, 'id') : { sql: 'id', bindings: [] };
  const select: SqlQuery = {
    sql:
      'select id, resource::text from fhir_resources where resource_type = ? and not deleted' +
      (options.since !== undefined ? ' and last_updated >= ?::timestamptz' : '') +
      ` order by ${order.sql}`,
    bindings: [...(options.since !== undefined ? [view.resource, options.since] : [view.resource]), ...order.bindings],
  };

  deps.reporter.start(`export-csv ${label}`);
  const read = await ReadTransaction.begin(deps.knex, { timezone: options.timezone });
  // The read transaction is read only: rejects are kept here and written once it has ended.
  const rejects: RejectRecord[] = [];
  let ok = false;
  try {
    const progress = progressCounter(deps.reporter, label);
    const batchSize = options.batchSize ?? DEFAULT_BATCH;
    async function* rows(): AsyncGenerator<Cell[][]> {
      try {
        for await (const batch of read.batches(select, batchSize)) {
          deps.ledger.add({ read: batch.length });
          const out: Cell[][] = [];
          for (const [id, text] of batch) {
            let viewRows: Record<string, unknown>[];
            try {
              viewRows = view.evaluate(parseLossless(text!));
            } catch (err) {
              if (!isCarepipeError(err) || err.code !== 'RECORD_INVALID') throw err;
              rejects.push({
                source: 'fhir_resources',
                recordKey: `${view.resource}/${id}`,
                field: err.context.field,
                reasonCode: 'RECORD_INVALID',
                message: `${label}: ${err.message}`,
              });
              continue;
            }
            for (const viewRow of viewRows) {
              const cells = all.map((c) => viewCell(viewRow[c.name], c.collection));
              if (keep(cells)) out.push(toCells(cells));
            }
          }
          if (out.length > 0) yield out;
          progress.add(out.length);
        }
      } catch (err) {
        throw userErrorFromDatabase(err, { source: label }) ?? err;
      }
    }
    const header = profiled.map((p) => p.name);
    const output = await writeOut(rows(), header, options, deps);
    ok = true;
    return { source: label, profile: options.profile, rows: progress.rows, columns: header, output };
  } finally {
    await read.end(ok);
    if (ok) await deps.ledger.rejectMany(rejects);
  }
}
