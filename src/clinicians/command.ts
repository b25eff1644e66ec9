/**
 * `import-clinicians`: one backend's listing run on the engine (src/pipeline/run.ts): read = the
 * backend's listing over HTTP (src/clinicians/read.ts), map = the backend's own mapping
 * (src/clinicians/map.ts), write = the upsert into `clinicians` (src/clinicians/write.ts), finish = the
 * inactive marking after a complete listing. The engine owns the batches, the dry run (one rolled-back
 * transaction), rejects, the ledger counts and the interruption (INTERRUPTED, exit 130, also while a
 * request or a retry wait is under way).
 */
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import type { RunLedger } from '../db/ledger.js';
import { httpPolicy } from '../http/policy.js';
import type { Reporter } from '../pipeline/reporter.js';
import { run, type Pipeline } from '../pipeline/run.js';
import { mapWith, type ClinicianItem } from './map.js';
import { readListing } from './read.js';
import { emptyHttpTotals, type HttpTotals } from './session.js';
import type { BackendConfig, ClinicianBackend } from './types.js';
import { clinicianWriter, type ClinicianFigures } from './write.js';

export interface ImportClinicianOptions {
  backend: ClinicianBackend;
  config: BackendConfig;
  maxRetries: number;
  baseDelayMs: number;
  timeoutMs: number;
  /** Other origins the provider may send us to (--allow-origin). */
  allowOrigins?: readonly string[];
  /** Largest answer read into memory, in MB (--max-response-mb). */
  maxResponseMb?: number;
  batchSize?: number;
  dryRun: boolean;
}

/** The provider's base URL: its `baseUrl` setting, else its site when that is a URL, else none (see HttpPolicy.home). */
function providerBaseUrl(backend: ClinicianBackend, config: BackendConfig): string | undefined {
  const candidate = config.baseUrl ?? backend.siteUrl(config);
  return /^https?:\/\//i.test(candidate) ? candidate : undefined;
}

export interface ImportClinicianDeps {
  knex: Knex;
  ledger: RunLedger;
  signal: AbortSignal;
  now: () => Date;
  reporter: Reporter;
}

export interface ImportClinicianResult extends ClinicianFigures {
  provider: string;
  complete_listing: boolean;
  http: HttpTotals;
}

const DEFAULT_BATCH_SIZE = 500;

/** Check the backend's settings: a required one missing is a usage error naming flag, variable and file key. */
export function checkConfig(backend: ClinicianBackend, config: BackendConfig): void {
  const missing = backend.settings.filter((s) => s.required && !config[s.name]);
  if (missing.length > 0) {
    const how = missing.map((s) => [s.flag, s.env ?? envName(backend.name, s.name), `backends.${backend.name}.${s.name} in the config file`].filter(Boolean).join(' or '));
    throw new CarepipeError('CONFIG_INVALID', `${backend.name} needs ${how.join('; and ')}`);
  }
}

/** `NOTEWORTH_BASE_URL` from (`noteworth`, `baseUrl`). */
export function envName(backend: string, setting: string): string {
  return `${backend}_${setting.replace(/([a-z0-9])([A-Z])/g, '$1_$2')}`.replace(/-/g, '_').toUpperCase();
}

/** Runs one backend's listing into `clinicians`; the figures are also the ledger's `details.clinicians`. */
export async function importClinicians(options: ImportClinicianOptions, deps: ImportClinicianDeps): Promise<ImportClinicianResult> {
  const { backend } = options;
  const { ledger, reporter } = deps;
  checkConfig(backend, options.config);
  const result: ImportClinicianResult = {
    provider: backend.name,
    complete_listing: backend.completeListing,
    inserted: 0,
    updated: 0,
    unchanged: 0,
    duplicates: 0,
    marked_inactive: 0,
    http: emptyHttpTotals(),
  };
  ledger.details.clinicians = result;
  const log = (level: 'info' | 'warn', event: string, fields: Record<string, string | number | boolean | null | undefined>) =>
    level === 'warn' ? reporter.warn(event, fields) : reporter.info(event, fields);
  const writer = clinicianWriter({ provider: backend.name, completeListing: backend.completeListing, seenAt: deps.now(), figures: result, log });

  const pipeline: Pipeline<unknown, ClinicianItem> = {
    name: `import-clinicians ${backend.name}`,
    read: readListing({
      backend,
      config: options.config,
      maxRetries: options.maxRetries,
      baseDelayMs: options.baseDelayMs,
      timeoutMs: options.timeoutMs,
      policy: httpPolicy(providerBaseUrl(backend, options.config), { allowOrigins: options.allowOrigins, maxResponseMb: options.maxResponseMb }),
      now: deps.now,
      totals: result.http,
      onRetry: (e) => log('warn', 'retry', { call: e.what, attempt: e.attempt, status: e.status, error: e.reason, wait_ms: e.waitMs, retries_left: e.retriesLeft }),
      onEvent: (event, fields) => log('info', event, fields),
    }),
    map: mapWith(backend),
    write: writer.write,
    finish: writer.finish,
    batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
    describe: (s) => ({
      text: `${backend.name}: ${s.read} clinicians read, ${s.written} written, ${s.unchanged} unchanged${s.rejected ? `, ${s.rejected} rejected` : ''}`,
      fields: { read: s.read, written: s.written, unchanged: s.unchanged, rejected: s.rejected },
    }),
  };
  await run(pipeline, { knex: deps.knex, ledger, signal: deps.signal, dryRun: options.dryRun, reporter });
  return result;
}
