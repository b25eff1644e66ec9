/**
 * The one HTTP client: a request with a timeout, the origin rule and the body size cap of the run's
 * policy (src/http/policy.ts), its failure sorted into retryable or final, and the one retry wrapper
 * ({@link withAttempts}) every remote source runs its calls in: bounded attempts with backoff and
 * Retry-After (src/http/retry.ts), a timeout per attempt, each failed attempt told, and the run's
 * interruption (SIGINT/SIGTERM) during a request or a wait turned into `INTERRUPTED` (exit 130), never a
 * generic failure. Provider sessions and FHIR server calls add authentication and parsing on top.
 */
import { CarepipeError } from '../errors.js';
import { exceedsJsonDepth, tooDeepMessage } from '../io/json-limits.js';
import { maskUrl } from './mask.js';
import { checkOrigin, tooLarge, type HttpPolicy } from './policy.js';
import { interruptedError, parseRetryAfter, RetryableError, withRetry, type RetryOptions } from './retry.js';

export interface HttpResponse {
  status: number;
  headers: Headers;
  text: string;
  url: string;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Abort the attempt after this long without a complete response (default 10 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Statuses handed back to the caller instead of thrown (for example 401 for re-authentication). */
  passStatuses?: number[];
  /** The run's origin rule and size cap; without one, any origin and any size (tests of the layer itself). */
  policy?: HttpPolicy;
  /**
   * A SMART token endpoint: configured by the user or named by the server's own configuration, so it
   * is exempt from the origin rule (the size cap still holds).
   */
  tokenEndpoint?: boolean;
}

/** Status codes worth another attempt. 401 is the caller's business (refresh the token). */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** A signal aborted by a timeout (AbortSignal.timeout), not by the run's interruption. */
function isTimeout(reason: unknown): boolean {
  return (reason as { name?: unknown } | undefined)?.name === 'TimeoutError';
}

/**
 * One attempt. Throws RetryableError, a final CarepipeError (SOURCE_FAILED / SOURCE_UNREACHABLE), or
 * INTERRUPTED when `options.signal` was aborted by the run (an aborted timeout signal is a timeout).
 */
export async function requestOnce(url: string, options: RequestOptions = {}): Promise<HttpResponse> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  if (!options.tokenEndpoint) checkOrigin(options.policy, url);
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, { method: options.method ?? 'GET', headers: options.headers, body: options.body, signal });
    text = await readText(response, options.policy, options.method ?? 'GET', url);
  } catch (err) {
    if (err instanceof CarepipeError) throw err;
    if (options.signal?.aborted && !isTimeout(options.signal.reason)) throw interruptedError(`${options.method ?? 'GET'} ${maskUrl(url)}`);
    if (timeout.aborted || options.signal?.aborted) throw new RetryableError(`timeout after ${timeoutMs} ms`);
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new RetryableError(`network error: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
  const result: HttpResponse = { status: response.status, headers: response.headers, text, url };
  if (response.ok || options.passStatuses?.includes(response.status)) return result;
  if (isRetryableStatus(response.status)) {
    throw new RetryableError(`HTTP ${response.status}`, response.status, parseRetryAfter(response.headers.get('retry-after')));
  }
  throw new CarepipeError(
    'SOURCE_FAILED',
    `${options.method ?? 'GET'} ${maskUrl(url)} answered HTTP ${response.status}${describeBody(text)}`,
    { url: maskUrl(url), status: response.status },
  );
}

/**
 * The body as text, read chunk by chunk so that an answer over the policy's cap is stopped before it
 * fills memory (a Content-Length over the cap is refused before reading at all).
 */
export async function readText(response: Response, policy: HttpPolicy | undefined, method: string, url: string): Promise<string> {
  if (!policy) return response.text();
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > policy.maxResponseBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw tooLarge(policy, method, url);
  }
  if (!response.body) return '';
  const decoder = new TextDecoder();
  const parts: string[] = [];
  let bytes = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += chunk.byteLength;
    if (bytes > policy.maxResponseBytes) {
      await response.body.cancel().catch(() => undefined);
      throw tooLarge(policy, method, url);
    }
    parts.push(decoder.decode(chunk, { stream: true }));
  }
  parts.push(decoder.decode());
  return parts.join('');
}

/** The server's own words for an error: an OperationOutcome's diagnostics, a JSON message, or short text. */
export function describeBody(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return '';
  try {
    const body = JSON.parse(trimmed) as Record<string, unknown>;
    if (body.resourceType === 'OperationOutcome' && Array.isArray(body.issue)) {
      const issues = (body.issue as { diagnostics?: string; details?: { text?: string }; code?: string }[])
        .map((i) => i.diagnostics ?? i.details?.text ?? i.code)
        .filter(Boolean);
      if (issues.length) return `: ${issues.join('; ')}`;
    }
    const message = (body.message ?? (body.error as { message?: string } | undefined)?.message ?? body.error) as unknown;
    if (typeof message === 'string') return `: ${message}`;
  } catch {
    // not JSON: fall through to the text itself
  }
  return `: ${trimmed.slice(0, 200)}`;
}

/** What one attempt of {@link withAttempts} gets. */
export interface Attempt {
  /** The run's interruption and this attempt's timeout: give it to the request. */
  signal: AbortSignal;
  /** This attempt's timeout alone (aborted: the attempt timed out). */
  timeout: AbortSignal;
  timeoutMs: number;
  /** From 1. */
  number: number;
}

export interface CallOptions extends Omit<RetryOptions, 'what'> {
  /** Give up one attempt after this long (default 10 s); a timed-out attempt is retried. */
  timeoutMs?: number;
  /** Called as each attempt starts (for a count of requests). */
  onAttempt?: () => void;
  /** Each failed attempt's error, sorted (RetryableError, CarepipeError or the caller's own), retried or not. */
  onFailure?: (error: Error) => void;
}

export const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * The one retry wrapper: runs `attempt` until it succeeds, throws a final error, or retries run out
 * (RETRIES_EXHAUSTED naming `what`). Each attempt gets a signal that fires on its timeout or on the
 * run's interruption; an attempt that ends because of its timeout is a RetryableError
 * (`timeout after N ms`). When the run's signal fires during an attempt or the wait before the next,
 * the call ends with INTERRUPTED. `what` is shown in messages and retry events: mask it (maskUrl).
 */
export async function withAttempts<T>(what: string, options: CallOptions, attempt: (a: Attempt) => Promise<T>): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { signal } = options;
  try {
    return await withRetry(
      async (number) => {
        if (signal?.aborted) throw interruptedError(what);
        const timeout = AbortSignal.timeout(timeoutMs);
        options.onAttempt?.();
        try {
          return await attempt({ signal: signal ? AbortSignal.any([signal, timeout]) : timeout, timeout, timeoutMs, number });
        } catch (err) {
          const sorted = signal?.aborted
            ? interruptedError(what)
            : timeout.aborted && !(err instanceof RetryableError) && !(err instanceof CarepipeError)
              ? new RetryableError(`timeout after ${timeoutMs} ms`)
              : (err as Error);
          if (!(sorted instanceof CarepipeError && sorted.code === 'INTERRUPTED')) options.onFailure?.(sorted);
          throw sorted;
        }
      },
      { ...options, what },
    );
  } catch (err) {
    // Stopped during a request or the wait before the next attempt: an interruption, not a failure.
    if (signal?.aborted) throw err instanceof CarepipeError && err.code === 'INTERRUPTED' ? err : interruptedError(what);
    throw err;
  }
}

/** A request with retries; `parse` turns the body into data and throws RetryableError for a cut body. */
export async function request<T = HttpResponse>(
  url: string,
  options: RequestOptions & CallOptions & { parse?: (response: HttpResponse) => T },
): Promise<T> {
  return withAttempts(`${options.method ?? 'GET'} ${maskUrl(url)}`, options, async ({ signal, timeoutMs }) => {
    const response = await requestOnce(url, { ...options, signal, timeoutMs });
    return options.parse ? options.parse(response) : (response as unknown as T);
  });
}

/** Parse a JSON body; a cut or malformed body is a retryable failure, never data. */
export function parseJsonBody<T = unknown>(response: HttpResponse): T {
  let body: unknown;
  try {
    body = JSON.parse(response.text);
  } catch {
    throw new RetryableError('malformed JSON body', response.status);
  }
  // What reads the body next may recurse: the readers' depth limit holds for every source.
  if (exceedsJsonDepth(body)) {
    throw new CarepipeError('SOURCE_FAILED', `${maskUrl(response.url)} answered ${tooDeepMessage()}`, { url: maskUrl(response.url) });
  }
  return body as T;
}
