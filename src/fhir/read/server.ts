/**
 * `ingest-fhir --server`: turns the command's settings into a FHIR server source for the ingest
 * pipeline — the reader (search, or Bulk Data with --bulk) fed with the stored cursors, the
 * authentication, and the checkpoint handler that writes fhir_sync_state in each batch transaction.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { CarepipeError } from '../../errors.js';
import { httpPolicy } from '../../http/policy.js';
import type { RetryEvent } from '../../http/retry.js';
import { readFhirBulk } from './bulk.js';
import { emptyServerStats, type ServerReadStats } from '../client/call.js';
import { normalizeBaseUrl, readFhirSearch } from './search.js';
import { createFhirAuth, type FhirAuth, type FhirAuthConfig } from '../client/auth.js';
import type { FhirItem } from './item.js';
import { loadSyncStates, saveSyncState } from '../sync-state.js';

/** The authentication flags of `ingest-fhir --server` (env fallbacks resolved by resolveFhirAuth). */
export interface FhirAuthFlags {
  token?: string;
  basicUser?: string;
  basicPassword?: string;
  smartClientId?: string;
  /** File holding the private key (PEM, JWK or JWKS). */
  smartKey?: string;
  smartTokenUrl?: string;
  smartScope?: string;
}

/**
 * Which authentication the flags and environment ask for: `--token`/CAREPIPE_FHIR_TOKEN (bearer),
 * `--basic-user` with `--basic-password`/CAREPIPE_FHIR_PASSWORD, or `--smart-client-id` with
 * `--smart-key FILE` (SMART Backend Services). More than one is a usage error.
 */
export function resolveFhirAuth(flags: FhirAuthFlags, env: Record<string, string | undefined>, cwd: string): FhirAuthConfig {
  const token = flags.token || env.CAREPIPE_FHIR_TOKEN || undefined;
  const basicUser = flags.basicUser || env.CAREPIPE_FHIR_USER || undefined;
  const smartClientId = flags.smartClientId || env.CAREPIPE_FHIR_SMART_CLIENT_ID || undefined;
  const chosen = [token && '--token', basicUser && '--basic-user', smartClientId && '--smart-client-id'].filter(Boolean);
  if (chosen.length > 1) throw new CarepipeError('USAGE', `choose one authentication: ${chosen.join(', ')} were all given`, {});
  if (token) return { mode: 'bearer', token };
  if (basicUser) {
    const password = flags.basicPassword ?? env.CAREPIPE_FHIR_PASSWORD;
    if (password === undefined) throw new CarepipeError('USAGE', '--basic-user needs a password: set CAREPIPE_FHIR_PASSWORD (or --basic-password)', { field: 'basic-password' });
    return { mode: 'basic', username: basicUser, password };
  }
  if (smartClientId) {
    const keyFile = flags.smartKey || env.CAREPIPE_FHIR_SMART_KEY;
    if (!keyFile) throw new CarepipeError('USAGE', '--smart-client-id needs --smart-key FILE (the private key, PEM or JWK)', { field: 'smart-key' });
    let privateKey: string;
    const file = path.resolve(cwd, keyFile);
    try {
      privateKey = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CarepipeError('INPUT_NOT_FOUND', `cannot read the SMART private key ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file });
    }
    return { mode: 'smart', clientId: smartClientId, privateKey, tokenUrl: flags.smartTokenUrl || undefined, scope: flags.smartScope || undefined };
  }
  return { mode: 'none' };
}

export interface ServerSourceOptions {
  server: string;
  types: string[];
  since?: string;
  fullRefresh?: boolean;
  bulk?: boolean;
  /** Page size of searches (default 100). */
  count?: number;
  maxRetries?: number;
  /** First backoff step in ms (default 500); tests lower it. */
  retryBaseMs?: number;
  timeoutMs?: number;
  auth: FhirAuthConfig;
  /** Other origins the server's links may point to (--allow-origin). */
  allowOrigins?: readonly string[];
  /** Largest answer read into memory, in MB (--max-response-mb, default 512). */
  maxResponseMb?: number;
  signal?: AbortSignal;
  onRetry?: (event: RetryEvent) => void;
  onProgress?: (message: string) => void;
  onWarning?: (message: string) => void;
}

export interface ServerSource {
  /** The base URL as stored in fhir_sync_state. */
  server: string;
  items: AsyncIterable<FhirItem>;
  stats: ServerReadStats;
  auth: FhirAuth;
  /** For the pipeline: stores server checkpoints in the batch transaction. */
  onCheckpoint: (trx: Knex.Transaction, checkpoint: { key: string; state: unknown }, runId: number | null) => Promise<void>;
}

/** Check the options, load the stored cursors, and build the reader. Nothing is fetched until items is iterated. */
export async function openServerSource(knex: Knex, options: ServerSourceOptions): Promise<ServerSource> {
  let server: string;
  try {
    const url = new URL(options.server);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
    server = normalizeBaseUrl(options.server);
  } catch {
    throw new CarepipeError('USAGE', `--server ${JSON.stringify(options.server)} is not an http(s) URL`, { field: 'server' });
  }
  const types = options.types.map((t) => t.trim()).filter(Boolean);
  for (const type of types) {
    if (!/^[A-Z][A-Za-z]{1,63}$/.test(type)) throw new CarepipeError('USAGE', `--type ${JSON.stringify(type)} is not a FHIR resource type (e.g. Patient)`, { field: 'type' });
  }
  if (!options.bulk && types.length === 0) {
    throw new CarepipeError('USAGE', '--server needs --type (e.g. --type Patient,Encounter,Observation), or --bulk to export everything', { field: 'type' });
  }
  if (options.since !== undefined && Number.isNaN(Date.parse(options.since))) {
    throw new CarepipeError('USAGE', `--since ${JSON.stringify(options.since)} is not a date or instant (e.g. 2024-01-01T00:00:00Z)`, { field: 'since' });
  }
  const retry = { maxRetries: options.maxRetries, ...(options.retryBaseMs !== undefined ? { baseDelayMs: options.retryBaseMs } : {}) };
  const policy = httpPolicy(server, { allowOrigins: options.allowOrigins, maxResponseMb: options.maxResponseMb });
  const auth = createFhirAuth(options.auth, server, { ...retry, signal: options.signal, onRetry: options.onRetry }, policy);
  const states = await loadSyncStates(knex, server);
  const stats = emptyServerStats();
  const common = {
    baseUrl: server,
    types,
    since: options.since,
    fullRefresh: options.fullRefresh,
    states,
    auth,
    retry,
    stats,
    policy,
    timeoutMs: options.timeoutMs,
    signal: options.signal,
    onRetry: options.onRetry,
  };
  const items = options.bulk
    ? readFhirBulk({ ...common, onProgress: (p) => options.onProgress?.(`export ${p}`), onWarning: options.onWarning })
    : readFhirSearch({ ...common, count: options.count });
  return {
    server,
    items,
    stats,
    auth,
    onCheckpoint: async (trx, checkpoint, runId) => {
      await saveSyncState(trx, checkpoint, runId);
    },
  };
}
