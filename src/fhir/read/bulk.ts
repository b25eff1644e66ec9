/**
 * FHIR Bulk Data Access reader: kick off `$export` with `Prefer: respond-async`, poll the status URL
 * honouring Retry-After (and passing X-Progress on), then stream each ndjson output file through the
 * ndjson line reader, and delete the job at the end whatever happened. A file cut mid-download is
 * fetched again and the lines already yielded are skipped. When every file is read, one checkpoint per
 * type stores the export's transactionTime as the cursor, so the next run asks `_since` that instant.
 */
import { Readable } from 'node:stream';
import { CarepipeError } from '../../errors.js';

import { readText } from '../../http/client.js';
import { checkOrigin, type HttpPolicy } from '../../http/policy.js';
import { backoffMs, DEFAULT_RETRY, RetryableError } from '../../http/retry.js';
import type { FhirItem } from './item.js';
import { RejectReasons as ReasonCodes } from '../../pipeline/reasons.js';
import { exceedsJsonDepth, tooDeepMessage } from '../../io/json-limits.js';
import { readLines } from '../../io/ndjson.js';
import { classify, emptyServerStats, HttpStatusError, interruptedError, serverCall, type ServerCallOptions, type ServerReadStats } from '../client/call.js';
import { normalizeBaseUrl, searchCheckpointKey, type SearchState } from './search.js';
import { maskUrl } from '../../http/mask.js';

/** Turns an ndjson byte stream into items with 1-based line numbers. */
export type NdjsonReader = (input: Readable, source: string, signal?: AbortSignal) => AsyncIterable<FhirItem>;

export interface BulkReaderOptions extends Omit<ServerCallOptions, 'stats'> {
  baseUrl: string;
  /** `_type`; all types when empty. */
  types: string[];
  /** `_since`; overrides the stored cursors. */
  since?: string;
  fullRefresh?: boolean;
  states?: ReadonlyMap<string, SearchState>;
  /** Kick-off path below the base URL: `$export` (default), `Patient/$export`, `Group/{id}/$export`. */
  exportPath?: string;
  /** Wait between polls when the server sends no Retry-After (default 2 s), and at most (default 60 s). */
  pollIntervalMs?: number;
  maxPollWaitMs?: number;
  /** Give up after this long waiting for the export (default 6 h). */
  exportTimeoutMs?: number;
  onProgress?: (progress: string) => void;
  onWarning?: (message: string) => void;
  /** How output files are read (default readNdjsonLines). */
  readNdjson?: NdjsonReader;
  stats?: ServerReadStats;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

interface Manifest {
  transactionTime: string;
  requiresAccessToken?: boolean;
  output: { type: string; url: string; count?: number }[];
  error?: { type: string; url: string }[];
}

function sleepFor(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
  });
}

/** ndjson bytes → items, through the file readers' line reader; unreadable lines become invalid items with their reason codes. */
export async function* readNdjsonLines(input: Readable, source: string, signal?: AbortSignal): AsyncGenerator<FhirItem> {
  for await (const { line, text, invalidUtf8 } of readLines(input, { signal })) {
    if (invalidUtf8) {
      yield { kind: 'invalid', source, line, reasonCode: ReasonCodes.INVALID_UTF8, message: `invalid UTF-8 on line ${line}: the line is not read` };
      continue;
    }
    if (!text.trim()) continue;
    let value: { resourceType?: unknown; id?: unknown };
    try {
      value = JSON.parse(text) as typeof value;
    } catch (err) {
      yield { kind: 'invalid', source, line, reasonCode: ReasonCodes.INVALID_JSON, message: (err as Error).message, raw: text.slice(0, MAX_RAW) };
      continue;
    }
    if (exceedsJsonDepth(value)) {
      yield { kind: 'invalid', source, line, reasonCode: ReasonCodes.TOO_DEEP, message: tooDeepMessage(), raw: text.slice(0, MAX_RAW) };
      continue;
    }
    const problem =
      value === null || typeof value !== 'object' || Array.isArray(value)
        ? ([ReasonCodes.NOT_A_RESOURCE, 'expected a FHIR resource (a JSON object)', undefined] as const)
        : typeof value.resourceType !== 'string'
          ? ([ReasonCodes.MISSING_RESOURCE_TYPE, 'the resource has no resourceType', 'resourceType'] as const)
          : typeof value.id !== 'string' || !value.id
            ? ([ReasonCodes.MISSING_ID, `the ${value.resourceType} has no id`, 'id'] as const)
            : undefined;
    if (problem) {
      yield { kind: 'invalid', source, line, reasonCode: problem[0], message: problem[1], ...(problem[2] ? { field: problem[2] } : {}), raw: text.slice(0, MAX_RAW) };
      continue;
    }
    yield { kind: 'resource', source, line, resource: value as Extract<FhirItem, { kind: 'resource' }>['resource'], text };
  }
}

const MAX_RAW = 1024 * 1024;

/**
 * fetch under the run's origin rule (a status or file URL on another host is refused before any
 * credential leaves), throwing HttpStatusError for a non-2xx answer (body read for the OperationOutcome).
 */
async function fetchChecked(url: string, init: RequestInit, policy: HttpPolicy | undefined): Promise<Response> {
  checkOrigin(policy, url);
  const response = await fetch(url, init);
  if (response.status >= 200 && response.status < 300) return response;
  const body = await readText(response, policy, init.method ?? 'GET', url).catch((err: unknown) => {
    if (err instanceof CarepipeError) throw err;
    return '';
  });
  throw new HttpStatusError({ status: response.status, headers: response.headers, body }, url);
}

function headersWith(authorization: string | undefined, extra: Record<string, string>): Record<string, string> {
  return authorization ? { ...extra, authorization } : extra;
}

/** Run one Bulk Data export and yield its resources. */
export async function* readFhirBulk(options: BulkReaderOptions): AsyncGenerator<FhirItem> {
  const baseUrl = normalizeBaseUrl(options.baseUrl);
  const stats = options.stats ?? emptyServerStats();
  const call = { ...options, stats };
  const sleep = options.sleep ?? sleepFor;
  const readNdjson = options.readNdjson ?? readNdjsonLines;
  if (options.since !== undefined && Number.isNaN(Date.parse(options.since))) {
    throw new CarepipeError('USAGE', `--since ${JSON.stringify(options.since)} is not a date or instant (e.g. 2024-01-01T00:00:00Z)`, { field: 'since' });
  }

  // _since: the flag, else the oldest stored cursor of the types asked (none if any type has none).
  let since = options.since;
  if (since === undefined && !options.fullRefresh && options.types.length > 0) {
    const cursors = options.types.map((t) => options.states?.get(searchCheckpointKey(baseUrl, t))?.lastUpdated ?? null);
    if (cursors.every((c) => c !== null)) since = cursors.sort((a, b) => Date.parse(a!) - Date.parse(b!))[0]!;
  }
  const kickOff = new URL(`${baseUrl}/${options.exportPath ?? '$export'}`);
  kickOff.searchParams.set('_outputFormat', 'application/fhir+ndjson');
  if (options.types.length) kickOff.searchParams.set('_type', options.types.join(','));
  if (since) kickOff.searchParams.set('_since', since);

  const statusUrl = await serverCall('GET', kickOff.toString(), call, async (authorization, signal) => {
    const response = await fetchChecked(kickOff.toString(), { headers: headersWith(authorization, { accept: 'application/fhir+json', prefer: 'respond-async' }), signal }, call.policy);
    await response.body?.cancel();
    const location = response.headers.get('content-location');
    if (response.status !== 202 || !location) {
      throw new CarepipeError('SOURCE_FAILED', `GET ${maskUrl(kickOff.toString())} answered HTTP ${response.status} without a Content-Location: the server did not start an asynchronous export`, { url: maskUrl(kickOff.toString()) });
    }
    return new URL(location, kickOff).toString();
  });

  try {
    const manifest = await poll(statusUrl, options, call, sleep);
    for (const problem of manifest.error ?? []) options.onWarning?.(`the export reports errors for ${problem.type} in ${maskUrl(problem.url)}`);
    for (const output of manifest.output ?? []) {
      yield* downloadFile(output.url, manifest.requiresAccessToken !== false, options, call, readNdjson, sleep);
      stats.files++;
    }
    // Every file is read: the export's instant is the cursor of each type it covered.
    const types = options.types.length ? options.types : [...new Set((manifest.output ?? []).map((o) => o.type))];
    for (const type of types) {
      const key = searchCheckpointKey(baseUrl, type);
      const stored = options.fullRefresh ? null : (options.states?.get(key)?.lastUpdated ?? null);
      const lastUpdated = stored && Date.parse(stored) > Date.parse(manifest.transactionTime) ? stored : manifest.transactionTime;
      yield { kind: 'checkpoint', source: maskUrl(statusUrl), key, state: { lastUpdated, nextUrl: null } satisfies SearchState };
    }
  } finally {
    // The job holds files on the server: delete it whatever happened, without failing the run for it.
    try {
      await serverCall('DELETE', statusUrl, { ...call, retry: { ...call.retry, maxRetries: 1 }, signal: undefined }, async (authorization, signal) => {
        const response = await fetchChecked(statusUrl, { method: 'DELETE', headers: headersWith(authorization, { accept: 'application/fhir+json' }), signal }, call.policy);
        await response.body?.cancel();
      });
    } catch (err) {
      options.onWarning?.(`could not delete the export job ${maskUrl(statusUrl)}: ${(err as Error).message}`);
    }
  }
}

async function poll(statusUrl: string, options: BulkReaderOptions, call: ServerCallOptions, sleep: NonNullable<BulkReaderOptions['sleep']>): Promise<Manifest> {
  const started = Date.now();
  const timeoutMs = options.exportTimeoutMs ?? 6 * 3600_000;
  const maxWait = options.maxPollWaitMs ?? 60_000;
  for (;;) {
    const answer = await serverCall('GET', statusUrl, call, async (authorization, signal) => {
      const response = await fetchChecked(statusUrl, { headers: headersWith(authorization, { accept: 'application/json' }), signal }, call.policy);
      if (response.status === 202) {
        await response.body?.cancel();
        return { done: false as const, progress: response.headers.get('x-progress'), retryAfter: response.headers.get('retry-after') };
      }
      const text = await readText(response, call.policy, 'GET', statusUrl);
      let manifest: Manifest;
      try {
        manifest = JSON.parse(text) as Manifest;
      } catch {
        throw new RetryableError('malformed JSON body', response.status);
      }
      if (!Array.isArray(manifest.output) || typeof manifest.transactionTime !== 'string') {
        throw new CarepipeError('SOURCE_FAILED', `GET ${maskUrl(statusUrl)} answered a manifest without output or transactionTime`, { url: maskUrl(statusUrl) });
      }
      return { done: true as const, manifest };
    });
    if (answer.done) return answer.manifest;
    if (answer.progress) options.onProgress?.(answer.progress);
    if (Date.now() - started > timeoutMs) {
      throw new CarepipeError('SOURCE_FAILED', `the export at ${maskUrl(statusUrl)} was not ready after ${Math.round(timeoutMs / 1000)} s`, { url: maskUrl(statusUrl) });
    }
    const seconds = answer.retryAfter !== null ? Number(answer.retryAfter) : NaN;
    const wait = Number.isFinite(seconds) ? seconds * 1000 : (options.pollIntervalMs ?? 2000);
    await sleep(Math.min(maxWait, Math.max(0, wait)), options.signal).catch((err: unknown) => {
      throw options.signal?.aborted ? interruptedError() : err;
    });
  }
}

/** Stream one output file; a cut transfer is fetched again from the start and the lines already yielded are skipped. */
async function* downloadFile(
  url: string,
  withToken: boolean,
  options: BulkReaderOptions,
  call: ServerCallOptions,
  readNdjson: NdjsonReader,
  sleep: NonNullable<BulkReaderOptions['sleep']>,
): AsyncGenerator<FhirItem> {
  const maxRetries = options.retry?.maxRetries ?? DEFAULT_RETRY.maxRetries;
  const source = maskUrl(url);
  let linesDone = 0;
  for (let attempt = 1; ; attempt++) {
    // The request itself (status, auth, 429/503) goes through the retry layer.
    // (The attempt's timeout signal is not passed on: it would cut a long transfer.)
    const response = await serverCall('GET', url, { ...call, auth: withToken ? call.auth : noAuth }, (authorization) =>
      fetchChecked(url, { headers: headersWith(authorization, { accept: 'application/fhir+ndjson' }), signal: options.signal }, call.policy),
    );
    if (!response.body) return;
    try {
      for await (const item of readNdjson(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), source, options.signal)) {
        if (item.line !== undefined && item.line <= linesDone) continue;
        if (item.line !== undefined) linesDone = item.line;
        yield item;
      }
      return;
    } catch (err) {
      const failure = classify(err, `GET ${source}`, undefined, options.signal);
      if (!(failure instanceof RetryableError) || attempt > maxRetries) {
        if (failure instanceof RetryableError) {
          throw new CarepipeError('RETRIES_EXHAUSTED', `GET ${source} failed after ${attempt} attempts: ${failure.message}`, { url: source }, { cause: err });
        }
        throw failure;
      }
      const waitMs = backoffMs(attempt, options.retry?.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs, options.retry?.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs);
      call.stats!.retries++;
      options.onRetry?.({ what: `GET ${source}`, attempt, reason: `transfer cut after line ${linesDone}: ${failure.message}`, waitMs, retriesLeft: maxRetries - attempt + 1 });
      await sleep(waitMs, options.signal).catch((err: unknown) => {
        throw options.signal?.aborted ? interruptedError() : err;
      });
    }
  }
}

const noAuth = { mode: 'none' as const, header: async () => undefined, refresh: async () => false, tokensRequested: 0 };
