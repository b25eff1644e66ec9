/**
 * `carepipe export-csv`: a declared table, view or computed source (export-source.ts), or a
 * ViewDefinition evaluated over the stored FHIR resources (export-view.ts), to CSV with the chosen
 * profile applied. This module holds the command's options and results and chooses the pipeline.
 */
import type { Writable } from 'node:stream';
import type { Knex } from 'knex';
import type { RunLedger } from '../db/ledger.js';
import type { Reporter } from '../pipeline/reporter.js';
import type { CsvFormat } from '../io/csv.js';
import type { BirthDateTreatment, Profile } from './profile.js';
import { parseCondition } from './query.js';
import type { ExportParams, SourceDeclaration } from './treatments.js';
import { exportSource } from './export-source.js';
import { exportView } from './export-view.js';

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
