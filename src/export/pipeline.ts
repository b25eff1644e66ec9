/**
 * What both export-csv pipelines share (export-source.ts: tables, views and computed sources;
 * export-view.ts: a ViewDefinition file): choosing columns, the research profile's checks on flags,
 * rows into cells, progress, and where the CSV goes (stdout, a file written atomically, or nowhere).
 */
import path from 'node:path';
import { Writable } from 'node:stream';
import { CarepipeError } from '../errors.js';
import type { Reporter } from '../pipeline/reporter.js';
import { guardFormula, writeCsv, type Cell } from '../io/csv.js';
import { writeFileAtomically } from '../io/output-file.js';
import { formatPgText, type ValueKind } from './format.js';
import type { ProfiledColumn } from './profile.js';
import type { Condition, Field } from './query.js';
import type { Treatment } from './treatments.js';
import type { ExportCsvDeps, ExportCsvOptions } from './export-csv.js';

/** A column as read, with its declared treatment. */
export interface ReadColumn extends Field {
  treatment?: Treatment;
}

export const DEFAULT_BATCH = 2_000;

export function usage(message: string, context = {}): CarepipeError {
  return new CarepipeError('USAGE', message, context);
}

/** Chooses and orders columns with --columns; every name must exist. */
export function chooseColumns<T extends { name: string }>(all: T[], wanted: string[] | undefined, source: string): T[] {
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
export function checkResearchFlags(columns: ReadColumn[], chosen: string[] | undefined, conditions: Condition[], source: string): void {
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
export function cellMaker(profiled: ProfiledColumn[], kinds: ValueKind[], formulaGuard: boolean, formatted: boolean, patientIndex?: number) {
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
export function progressCounter(reporter: Reporter, label: string) {
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

export async function writeOut(write: (output: Writable) => Promise<unknown>, options: ExportCsvOptions, deps: ExportCsvDeps): Promise<string> {
  if (deps.dryRun) {
    await write(new Writable({ write: (_chunk, _encoding, done) => done() }));
    return 'none (dry run)';
  }
  if (!options.output) {
    try {
      await write(deps.stdout);
    } catch (err) {
      // The reader of a pipe went away (`| head`): it has what it wanted; stop quietly, as Unix tools do.
      if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
      deps.ledger.details.output_closed = true;
    }
    return 'stdout';
  }
  const file = path.resolve(deps.cwd, options.output);
  await writeFileAtomically(file, write, { mode: options.fileMode, flag: '-o' });
  return file;
}

/** Writes batches of cells as CSV with options.format (writers/csv.ts). */
export function csvWriter(rows: AsyncIterable<Cell[][]>, header: string[], options: ExportCsvOptions, deps: ExportCsvDeps) {
  return (output: Writable) => writeCsv(rows, header, output, { ...options.format, signal: deps.signal });
}
