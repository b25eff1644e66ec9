/**
 * The call discipline shared by the FHIR server readers (search and Bulk Data): every call in the one
 * retry wrapper (src/http/client.ts `withAttempts`: timeouts, backoff, interruption), failures sorted
 * the same way, one token refresh on 401, and figures for the run summary.
 * 429/503 honour Retry-After; 408, 5xx, network errors, timeouts and malformed bodies back off; other
 * 4xx fail at once with the server's OperationOutcome text.
 */
import { CarepipeError } from '../../errors.js';
import { describeBody, isRetryableStatus, withAttempts } from '../../http/client.js';
import { interruptedError as httpInterrupted, parseRetryAfter, RetryableError, type RetryEvent, type RetryOptions } from '../../http/retry.js';
import type { FhirAuth } from './auth.js';
import type { HttpPolicy } from '../../http/policy.js';
import { maskUrl } from '../../http/mask.js';

/** What a server reader did, for the run summary. */
export interface ServerReadStats {
  requests: number;
  retries: number;
  tokenRefreshes: number;
  pages: number;
  files: number;
}

export function emptyServerStats(): ServerReadStats {
  return { requests: 0, retries: 0, tokenRefreshes: 0, pages: 0, files: 0 };
}

export interface ServerCallOptions {
  auth: FhirAuth;
  retry?: Omit<RetryOptions, 'what' | 'onRetry'>;
  onRetry?: (event: RetryEvent) => void;
  /** Abort one attempt after this long (default 30 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  stats?: ServerReadStats;
  /** The run's origin rule and size cap (src/http/policy.ts). */
  policy?: HttpPolicy;
}

/** Details of a failed HTTP answer, whichever client produced it. */
export interface HttpFailure {
  status: number;
  headers?: Headers;
  /** The body as text or as already-parsed JSON. */
  body?: unknown;
}

/** An HTTP failure that the caller decides about (401 for the refresh). */
export class HttpStatusError extends Error {
  constructor(
    readonly failure: HttpFailure,
    readonly url: string,
  ) {
    super(`HTTP ${failure.status}`);
  }
}

/** The HttpFailure a call threw, or undefined for a network error or a final CarepipeError. */
export function failureOf(err: unknown): HttpFailure | undefined {
  return err instanceof HttpStatusError ? err.failure : undefined;
}

function bodyText(body: unknown): string {
  if (body === undefined || body === null) return '';
  return typeof body === 'string' ? body : JSON.stringify(body);
}

/** Sort a failure into retryable (RetryableError) or final (CarepipeError SOURCE_FAILED). 401 is left to the caller. */
export function classify(err: unknown, what: string, timeout?: AbortSignal, signal?: AbortSignal): Error {
  if (signal?.aborted) return interruptedError();
  if (err instanceof RetryableError || err instanceof CarepipeError) return err;
  const failure = failureOf(err);
  if (!failure) {
    if (timeout?.aborted) return new RetryableError('timeout');
    const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
    return new RetryableError(`network error: ${cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err)}`);
  }
  const { status } = failure;
  if (isRetryableStatus(status)) return new RetryableError(`HTTP ${status}`, status, parseRetryAfter(failure.headers?.get('retry-after') ?? null));
  return new CarepipeError('SOURCE_FAILED', `${what} answered HTTP ${status}${describeBody(bodyText(failure.body))}`, { url: what.replace(/^\w+ /, ''), status });
}

/** The run was stopped (SIGINT/SIGTERM) while a request or a wait was under way (the HTTP layer's error). */
export function interruptedError(): CarepipeError {
  return httpInterrupted('the FHIR server');
}

/**
 * Run one server call with retries. `call` gets the Authorization header (or undefined) and an abort
 * signal covering one attempt. A 401 gets one token refresh, then counts as final.
 */
export async function serverCall<T>(
  method: string,
  url: string,
  options: ServerCallOptions,
  call: (authorization: string | undefined, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const what = `${method} ${maskUrl(url)}`;
  const stats = options.stats;
  try {
    return await withAttempts(
      what,
      {
        ...options.retry,
        timeoutMs: options.timeoutMs ?? 30_000,
        signal: options.signal,
        onRetry: (event) => {
          if (stats) stats.retries++;
          options.onRetry?.(event);
        },
      },
      async ({ signal, timeout }) => {
        let refreshed = false;
        for (;;) {
          if (stats) stats.requests++;
          try {
            return await call(await options.auth.header(), signal);
          } catch (err) {
            const failure = failureOf(err);
            if (failure?.status === 401 && !refreshed && (await options.auth.refresh())) {
              refreshed = true;
              if (stats) stats.tokenRefreshes++;
              continue;
            }
            throw classify(err, what, timeout, options.signal);
          }
        }
      },
    );
  } catch (err) {
    // Stopped by SIGINT/SIGTERM during a request or a wait: a typed interruption, not a failure.
    throw options.signal?.aborted ? interruptedError() : err;
  }
}
