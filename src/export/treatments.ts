/**
 * Who may see what, declared per column in one place per table. The research profile applies these
 * treatments; a column with no declared treatment is refused there rather than leaked. Each domain
 * declares its own tables (`src/<domain>/export.ts`) and src/export/sources.ts collects them.
 */
import type { Knex } from 'knex';
import type { OutputFileOptions } from '../io/output-file.js';

/**
 * - `keep`: not identifying; passed through.
 * - `drop`: a direct identifier (name, telecom, street address, NHS number or other identifier, free text).
 * - `pseudonym`: a patient or resource id: replaced by a keyed HMAC pseudonym (stable per key).
 * - `year`: a date generalised to its year.
 * - `postcode_outward`: a postcode: generalised to its outward code (`N6 2FA` → `N6`).
 * - `date_shift`: a date or time of a patient's care or life: moved by the patient's own offset
 *   (src/export/profile.ts), so intervals and order survive and the exact date does not.
 * - `birth_date`: a birth date: cut to its year, or shifted like the patient's other dates
 *   (`--birth-date year|shift`).
 */
export type Treatment = 'keep' | 'drop' | 'pseudonym' | 'year' | 'postcode_outward' | 'date_shift' | 'birth_date';

export interface SourceDeclaration {
  /** Name users type: `carepipe export-csv NAME`. */
  name: string;
  /** The table or view it reads (defaults to `name`). */
  relation?: string;
  description: string;
  /** Column that `--since` filters on. */
  lastUpdatedColumn?: string;
  /** Every column, in export order, with its research-profile treatment. */
  columns: Record<string, Treatment>;
  /**
   * Whose dates a row holds, for `date_shift` and `birth_date`: a column with the patient's key, or
   * an SQL expression over the row (columns as `q."name"`). A row without one loses its shifted dates.
   */
  patientKey?: { column: string } | { sql: string };
  /** The FHIR element (`Resource.element`) each column carries, where the table is not a view's. */
  elements?: Record<string, string>;
  /** A computed source (for example missed-appointments): its SQL from the export parameters. */
  query?(params: ExportParams): { sql: string; bindings: unknown[] };
  /** A computed source whose columns' treatments depend on its parameters (`--by clinician`). */
  treatmentsFor?(params: ExportParams): Record<string, Treatment>;
  /**
   * Draws a chart of the source to `file` (.svg or .png) when `--chart FILE` is given, written with `output`'s mode; `pseudonym`
   * (research profile) relabels what the export pseudonymises.
   */
  chart?(knex: Knex, params: ExportParams, file: string, pseudonym?: (value: string) => string, output?: OutputFileOptions): Promise<void>;
}

/** Parameters of computed sources, from `export-csv` flags. */
export interface ExportParams {
  by?: string;
  period?: string;
  from?: string;
  to?: string;
  /** The run's clock, so figures are reproducible in tests. */
  now?: Date;
}
