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
 * - `year`: a birth date (or other identifying date): generalised to its year.
 * - `postcode_outward`: a postcode: generalised to its outward code (`N6 2FA` → `N6`).
 */
export type Treatment = 'keep' | 'drop' | 'pseudonym' | 'year' | 'postcode_outward';

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
  /** A computed source (for example missed-appointments): its SQL from the export parameters. */
  query?(params: ExportParams): { sql: string; bindings: unknown[] };
  /** Draws a chart of the source to `file` (.svg or .png) when `--chart FILE` is given, written with `output`'s mode. */
  chart?(knex: Knex, params: ExportParams, file: string, output?: OutputFileOptions): Promise<void>;
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
