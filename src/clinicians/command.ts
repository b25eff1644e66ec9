/**
 * `import-clinicians`: run one backend's listing and upsert what it returns into `clinicians`, keyed by
 * (provider, clinician_key). Records are mapped as they stream in and written in batches, each batch one
 * transaction with its rejects. A row whose fields did not change counts as unchanged (only its
 * `last_seen` moves). Only after a complete listing that finished are clinicians the provider no longer
 * returns marked inactive, with the day; rows are never deleted.
 */
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import type { RetryEvent } from '../http/retry.js';
import type { RejectRecord, RunLedger } from '../db/ledger.js';
import { inRunTransaction } from '../db/transaction.js';
import { httpPolicy } from '../http/policy.js';
import { ProviderSession, type HttpTotals } from './session.js';
import { TokenStore } from './tokens.js';
import type { BackendConfig, Clinician, ClinicianBackend } from './types.js';

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
  log: (level: 'info' | 'warn', event: string, fields: Record<string, string | number | boolean | undefined>) => void;
  progress?: (text: string, fields: Record<string, number>) => void;
}

export interface ImportClinicianResult {
  provider: string;
  complete_listing: boolean;
  inserted: number;
  updated: number;
  unchanged: number;
  /** The same clinician returned twice in one run (a page repeating a clinician). */
  duplicates: number;
  marked_inactive: number;
  /** Why no clinician was marked inactive, when the backend's listing is complete but marking was skipped. */
  inactive_marking?: string;
  http: HttpTotals;
}

const CONTENT = ['given_name', 'family_name', 'title', 'clinic', 'npi', 'rpps', 'specialty', 'phone', 'email', 'active'] as const;

interface ClinicianRow {
  provider: string;
  clinician_key: string;
  given_name: string | null;
  family_name: string | null;
  title: string | null;
  clinic: string | null;
  npi: string | null;
  rpps: string | null;
  specialty: string | null;
  phone: string | null;
  email: string | null;
  active: boolean;
  inactive_since: string | null;
  last_seen: Date;
}

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

export async function importClinicians(options: ImportClinicianOptions, deps: ImportClinicianDeps): Promise<ImportClinicianResult> {
  const { backend, dryRun } = options;
  const { knex, ledger } = deps;
  checkConfig(backend, options.config);
  const session = new ProviderSession({
    backend,
    config: options.config,
    tokens: new TokenStore(knex, dryRun),
    maxRetries: options.maxRetries,
    baseDelayMs: options.baseDelayMs,
    timeoutMs: options.timeoutMs,
    policy: httpPolicy(providerBaseUrl(backend, options.config), { allowOrigins: options.allowOrigins, maxResponseMb: options.maxResponseMb }),
    signal: deps.signal,
    now: deps.now,
    onRetry: (e: RetryEvent) =>
      deps.log('warn', 'retry', { call: e.what, attempt: e.attempt, status: e.status, error: e.reason, wait_ms: e.waitMs, retries_left: e.retriesLeft }),
    onEvent: (event, fields) => deps.log('info', event, fields),
  });
  const result: ImportClinicianResult = {
    provider: backend.name,
    complete_listing: backend.completeListing,
    inserted: 0,
    updated: 0,
    unchanged: 0,
    duplicates: 0,
    marked_inactive: 0,
    http: session.totals,
  };
  ledger.details.clinicians = result;

  // One instant for the whole run: every clinician returned gets it as last_seen.
  const seenAt = deps.now();
  const batchSize = options.batchSize ?? 500;
  let batch = new Map<string, Clinician>();
  let rejects: RejectRecord[] = [];
  /** Keys of rejected records that still name a clinician: seen, so not to be marked inactive. */
  let rejectedKeys: string[] = [];
  let unkeyedRejects = 0;

  const flush = async () => {
    if (batch.size === 0 && rejects.length === 0) return;
    const clinicians = [...batch.values()];
    const batchRejects = rejects;
    const touched = rejectedKeys;
    batch = new Map();
    rejects = [];
    rejectedKeys = [];
    const write = async (trx: Knex | Knex.Transaction) => {
      await upsertBatch(trx, backend.name, clinicians, seenAt, ledger.id || null, result, dryRun);
      if (!dryRun && touched.length > 0) {
        await trx('clinicians').where({ provider: backend.name }).whereIn('clinician_key', touched).update({ last_seen: seenAt });
      }
      await ledger.rejectMany(batchRejects, trx);
    };
    if (dryRun) await write(knex);
    else await inRunTransaction(knex, ledger, write);
    ledger.counts.written = result.inserted + result.updated + result.marked_inactive;
    ledger.counts.unchanged = result.unchanged;
    deps.progress?.(`${backend.name}: ${ledger.counts.read} clinicians read`, { read: ledger.counts.read, written: ledger.counts.written });
  };

  for await (const record of backend.fetchClinicians(session.context)) {
    ledger.counts.read += 1;
    const mapped = backend.mapToClinician(record.raw);
    if ('problem' in mapped) {
      const { problem } = mapped;
      rejects.push({
        source: record.source,
        entry: record.entry,
        recordKey: problem.key,
        field: problem.field,
        reasonCode: problem.reasonCode,
        message: problem.message,
        raw: record.raw,
      });
      if (problem.key) rejectedKeys.push(problem.key);
      else unkeyedRejects += 1;
      deps.log('warn', 'rejected', { source: record.source, entry: record.entry, field: problem.field, reason: problem.reasonCode });
    } else {
      if (batch.has(mapped.clinician.key)) result.duplicates += 1;
      batch.set(mapped.clinician.key, mapped.clinician);
    }
    if (batch.size + rejects.length >= batchSize) await flush();
    if (deps.signal.aborted) throw deps.signal.reason;
  }
  await flush();

  if (backend.completeListing) {
    if (ledger.counts.read === 0) {
      // An empty answer is more likely a provider fault than everyone leaving at once.
      result.inactive_marking = 'skipped: the listing was empty';
      deps.log('warn', 'inactive_marking_skipped', { reason: result.inactive_marking });
    } else if (unkeyedRejects > 0) {
      // A rejected record we cannot key might be a clinician still listed: do not call anyone gone.
      result.inactive_marking = `skipped: ${unkeyedRejects} rejected record(s) without a key`;
      deps.log('warn', 'inactive_marking_skipped', { reason: result.inactive_marking });
    } else if (!dryRun) {
      result.marked_inactive = await inRunTransaction(knex, ledger, (trx) =>
        trx('clinicians')
          .where({ provider: backend.name, active: true })
          .where('last_seen', '<', seenAt)
          .update({ active: false, inactive_since: isoDay(seenAt), source_run: ledger.id }),
      );
      ledger.counts.written += result.marked_inactive;
      if (result.marked_inactive > 0) deps.log('info', 'marked_inactive', { provider: backend.name, clinicians: result.marked_inactive });
    }
  }
  return result;
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function toRow(provider: string, c: Clinician, previous: ClinicianRow | undefined, seenAt: Date): Omit<ClinicianRow, 'last_seen'> {
  return {
    provider,
    clinician_key: c.key,
    given_name: c.givenName,
    family_name: c.familyName,
    title: c.title,
    clinic: c.clinic,
    npi: c.npi,
    rpps: c.rpps,
    specialty: c.specialty,
    phone: c.phone,
    email: c.email,
    active: c.active,
    // keep the day a clinician went inactive; clear it when they are back
    inactive_since: c.active ? null : (previous && !previous.active ? previous.inactive_since : isoDay(seenAt)),
  };
}

/**
 * Compare a batch with what is stored, then insert the new, update the changed, and only move
 * `last_seen` on the unchanged. A clinician already seen earlier in this run is a duplicate.
 */
async function upsertBatch(
  trx: Knex | Knex.Transaction,
  provider: string,
  clinicians: Clinician[],
  seenAt: Date,
  runId: number | null,
  result: ImportClinicianResult,
  dryRun: boolean,
): Promise<void> {
  if (clinicians.length === 0) return;
  const stored = (await trx('clinicians')
    .select('clinician_key', ...CONTENT, 'inactive_since', 'last_seen')
    .where({ provider })
    .whereIn(
      'clinician_key',
      clinicians.map((c) => c.key),
    )) as ClinicianRow[];
  const byKey = new Map(stored.map((row) => [row.clinician_key, row]));
  const changed: Record<string, unknown>[] = [];
  const unchangedKeys: string[] = [];
  for (const clinician of clinicians) {
    const previous = byKey.get(clinician.key);
    const row = toRow(provider, clinician, previous, seenAt);
    if (previous && new Date(previous.last_seen).getTime() >= seenAt.getTime()) result.duplicates += 1;
    if (!previous) {
      result.inserted += 1;
      changed.push({ ...row, first_seen: seenAt, last_seen: seenAt, source_run: runId });
    } else if (CONTENT.some((column) => previous[column] !== row[column])) {
      result.updated += 1;
      changed.push({ ...row, first_seen: seenAt, last_seen: seenAt, source_run: runId });
    } else if (new Date(previous.last_seen).getTime() < seenAt.getTime()) {
      result.unchanged += 1;
      unchangedKeys.push(clinician.key);
    }
  }
  if (dryRun) return;
  if (changed.length > 0) {
    await trx('clinicians')
      .insert(changed)
      .onConflict(['provider', 'clinician_key'])
      .merge([...CONTENT, 'inactive_since', 'last_seen', 'source_run']);
  }
  if (unchangedKeys.length > 0) {
    await trx('clinicians').where({ provider }).whereIn('clinician_key', unchangedKeys).update({ last_seen: seenAt });
  }
}
