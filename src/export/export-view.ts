/**
 * The ViewDefinition pipeline of export-csv (`export-csv --view FILE`): the stored resources of the
 * view's type read in id order (pseudonym order for research), evaluated by the view engine in Node,
 * filtered, profiled and written as CSV. Resources the view cannot evaluate land in rejects.
 */
import path from 'node:path';
import { parse as parseLossless, stringify as stringifyLossless } from 'lossless-json';
import { isCarepipeError } from '../errors.js';
import type { RejectRecord } from '../db/ledger.js';
import { readViewFile } from '../fhir/view/index.js';
import type { Cell } from '../io/csv.js';
import type { ValueKind } from './format.js';
import { applyProfile, pseudonymSql } from './profile.js';
import { ReadTransaction, userErrorFromDatabase, type Condition, type SqlQuery } from './query.js';
import { patientKeyOf, refuseKeptIdentifiers, researchColumns } from './view-tags.js';
import type { ExportCsvDeps, ExportCsvOptions, ExportCsvResult } from './export-csv.js';
import { cellMaker, checkResearchFlags, chooseColumns, csvWriter, DEFAULT_BATCH, progressCounter, usage, writeOut, type ReadColumn } from './pipeline.js';

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

export async function exportView(options: ExportCsvOptions, conditions: Condition[], deps: ExportCsvDeps): Promise<ExportCsvResult> {
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
    const output = await writeOut(csvWriter(rows(), header, options, deps), options, deps);
    ok = true;
    return { source: label, profile: options.profile, rows: progress.rows, columns: header, output };
  } finally {
    await read.end(ok);
    if (ok) await deps.ledger.rejectMany(rejects);
  }
}
