/**
 * The retry layer every remote source goes through (provider backends, the directory, FHIR servers).
 * p-retry counts the attempts; the wait between them is ours, so that it can honour Retry-After and be
 * logged exactly: `Retry-After` when the server sent one, else exponential backoff with full jitter.
 */
import pRetry, { AbortError } from 'p-retry';
import { CarepipeError } from '../errors.js';

export interface RetryEvent {
  /** What was being done, e.g. `GET http://host/providers` (no query secrets, no headers). */
  what: string;
  /** The attempt that failed, from 1. */
  attempt: number;
  status?: number;
  /** Short description of the failure: `HTTP 503`, `timeout after 5000 ms`, `malformed JSON`. */
  reason: string;
  /** How long we wait before the next attempt. */
  waitMs: number;
  retriesLeft: number;
}

export interface RetryOptions {
  /** Retries after the first attempt (so at most maxRetries + 1 attempts). */
  maxRetries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** A Retry-After longer than this is cut to it. */
  maxRetryAfterMs?: number;
  signal?: AbortSignal;
  onRetry?: (event: RetryEvent) => void;
  /** Used in messages: `GET https://…/providers`. */
  what: string;
  /** For tests: the sleep function. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** A failure worth another attempt: 408, 429, 5xx, network errors, timeouts, cut or malformed bodies. */
export class RetryableError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RetryableError';
  }
}

export const DEFAULT_RETRY = { maxRetries: 5, baseDelayMs: 500, maxDelayMs: 30_000, maxRetryAfterMs: 120_000 };

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The run's signal fired during a request or a wait between attempts: the run stops, it did not fail
 * (exit 130 through the ledger's `interrupted`, never a stack trace).
 */
export function interruptedError(what: string, signal?: AbortSignal): CarepipeError {
  return new CarepipeError(
    'INTERRUPTED',
    `interrupted while waiting for ${what}; every committed batch is kept, run the same command again to finish`,
    {},
    { cause: signal?.reason },
  );
}

/** Backoff for the n-th retry (1-based): full jitter in [0, min(max, base·2^(n-1))], at least 10 ms. */
export function backoffMs(retry: number, baseDelayMs: number, maxDelayMs: number, random = Math.random): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (retry - 1));
  return Math.max(10, Math.round(random() * ceiling));
}

/**
 * Run `operation` until it succeeds, throws a non-retryable error, or retries run out. Throw
 * RetryableError from the operation for failures worth another attempt; anything else is final.
 */
export async function withRetry<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const maxRetries = options.maxRetries ?? DEFAULT_RETRY.maxRetries;
  const baseDelayMs = options.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs;
  const maxDelayMs = options.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs;
  const maxRetryAfterMs = options.maxRetryAfterMs ?? DEFAULT_RETRY.maxRetryAfterMs;
  const sleep = options.sleep ?? defaultSleep;
  let lastRetryable: RetryableError | undefined;
  try {
    return await pRetry(
      async (attempt) => {
        try {
          return await operation(attempt);
        } catch (err) {
          if (err instanceof RetryableError) throw err;
          // Final failures stop p-retry at once.
          throw new AbortError(err as Error);
        }
      },
      {
        retries: maxRetries,
        minTimeout: 0,
        maxTimeout: 0,
        randomize: false,
        signal: options.signal,
        onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
          const failure = error as RetryableError;
          lastRetryable = failure;
          if (retriesLeft <= 0) return;
          const waitMs =
            failure.retryAfterMs !== undefined
              ? Math.min(failure.retryAfterMs, maxRetryAfterMs)
              : backoffMs(attemptNumber, baseDelayMs, maxDelayMs);
          options.onRetry?.({
            what: options.what,
            attempt: attemptNumber,
            status: failure.status,
            reason: failure.message,
            waitMs,
            retriesLeft,
          });
          await sleep(waitMs, options.signal);
        },
      },
    );
  } catch (err) {
    if (options.signal?.aborted) throw interruptedError(options.what, options.signal);
    if (err instanceof RetryableError) {
      throw new CarepipeError(
        'RETRIES_EXHAUSTED',
        `${options.what} failed after ${maxRetries + 1} attempts: ${err.message}`,
        { url: options.what, status: err.status },
        { cause: err },
      );
    }
    throw err;
  }
  // unreachable: pRetry either returns or throws
  void lastRetryable;
}

/** Parse a Retry-After header (seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
