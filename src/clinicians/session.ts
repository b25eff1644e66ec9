/**
 * A backend's connection to its provider for one run: the token (stored and still valid, or newly
 * obtained and stored at once), one re-authentication when the provider refuses the token, and the
 * totals the run summary reports. Retries, timeouts, Retry-After and interruption are the one HTTP
 * wrapper's (src/http/client.ts `withAttempts`). Tokens and auth headers stay here: nothing they
 * contain is logged.
 */
import { CarepipeError } from '../errors.js';
import { requestOnce, withAttempts, type Attempt } from '../http/client.js';
import { maskUrl } from '../http/mask.js';
import type { HttpPolicy } from '../http/policy.js';
import { RetryableError, type RetryEvent } from '../http/retry.js';
import type { TokenStore } from './tokens.js';
import {
  TokenRejectedError,
  type AttemptOptions,
  type BackendConfig,
  type BackendContext,
  type ClinicianBackend,
  type HttpAnswer,
  type HttpCall,
  type ProviderHttp,
  type ProviderToken,
} from './types.js';

/** Figures for the run summary (`ledger.details.http`). */
export interface HttpTotals {
  /** HTTP attempts made, including those that failed. */
  requests: number;
  failed_attempts: number;
  /** Failed attempts by reason: `HTTP 500`, `timeout after 10000 ms`, `malformed JSON body`, … */
  failures: Record<string, number>;
  /** Tokens obtained from the provider in this run. */
  auth_calls: number;
  /** `stored`: a stored valid token was reused; `obtained`: a new one was fetched; `none`: the provider needs none. */
  token: 'stored' | 'obtained' | 'none' | 'unused';
  /** Times the provider refused the token and a new one was obtained. */
  reauthentications: number;
}

export interface SessionOptions {
  backend: ClinicianBackend;
  config: BackendConfig;
  tokens?: TokenStore;
  /** Where the figures go (default: a new object, `session.totals`). */
  totals?: HttpTotals;
  maxRetries: number;
  baseDelayMs: number;
  timeoutMs: number;
  /** The run's origin rule and size cap, applied to every call of the backend. */
  policy?: HttpPolicy;
  signal: AbortSignal;
  now: () => Date;
  /** Each failed attempt that will be retried: attempt number, status or error, wait. */
  onRetry: (event: RetryEvent) => void;
  /** Token events, for the log: `token_reused`, `token_obtained`, `token_refused`. */
  onEvent: (event: string, fields: Record<string, string | number>) => void;
}

export function emptyHttpTotals(): HttpTotals {
  return { requests: 0, failed_attempts: 0, failures: {}, auth_calls: 0, token: 'unused', reauthentications: 0 };
}

export class ProviderSession implements ProviderHttp {
  readonly totals: HttpTotals;
  readonly context: BackendContext;
  private readonly site: string;
  /** undefined: not looked up yet; null: the provider needs none. */
  private token: ProviderToken | null | undefined;

  constructor(private readonly options: SessionOptions) {
    this.totals = options.totals ?? emptyHttpTotals();
    this.site = options.backend.siteUrl(options.config);
    this.context = { config: options.config, http: this, signal: options.signal };
  }

  request<T>(call: HttpCall & { headers?: Record<string, string>; body?: string | (() => Promise<string>) }, parse: (response: HttpAnswer) => T): Promise<T> {
    return this.retrying(call, (attempt) => this.httpAttempt(call, call.headers ?? {}, parse, [], attempt));
  }

  authorized<T>(call: HttpCall & { headers?: Record<string, string> }, parse: (response: HttpAnswer) => T): Promise<T> {
    const rejected = this.options.backend.tokenRejectedStatuses ?? [401];
    return this.withToken(call, (auth) => this.retrying(call, (attempt) => this.httpAttempt(call, { ...call.headers, ...auth }, parse, rejected, attempt)));
  }

  authorizedAttempt<T>(call: HttpCall, attempt: (headers: Record<string, string>, options: AttemptOptions) => Promise<T>): Promise<T> {
    return this.withToken(call, (auth) =>
      this.retrying(call, ({ signal, timeoutMs }) => attempt(auth, { signal, timeoutMs, policy: this.options.policy })),
    );
  }

  /** The token to use: the one in hand, a stored one still valid, or a new one. */
  private async currentToken(): Promise<ProviderToken | null> {
    if (this.token !== undefined) return this.token;
    const stored = await this.options.tokens?.valid(this.site, this.options.now());
    if (stored) {
      this.token = stored;
      this.totals.token = 'stored';
      this.options.onEvent('token_reused', { site: maskUrl(this.site) });
      return stored;
    }
    return this.authenticate();
  }

  private async authenticate(): Promise<ProviderToken | null> {
    const token = await this.options.backend.authenticate(this.context);
    this.token = token;
    if (token === null) {
      this.totals.token = 'none';
      return null;
    }
    this.totals.auth_calls += 1;
    this.totals.token = 'obtained';
    // Stored at once, outside any batch: a run that fails later still saves the next run an /auth call.
    await this.options.tokens?.save(this.site, this.options.backend.name, token, this.options.now());
    this.options.onEvent('token_obtained', {
      site: maskUrl(this.site),
      ...(token.expiresAt ? { expires_at: token.expiresAt.toISOString() } : {}),
    });
    return token;
  }

  /** Run `call` with the auth headers; when the provider refuses the token, obtain a new one once and retry. */
  private async withToken<T>(call: HttpCall, run: (auth: Record<string, string>) => Promise<T>): Promise<T> {
    for (let round = 0; ; round++) {
      const token = await this.currentToken();
      const auth = token ? this.options.backend.authHeader(token, call) : {};
      try {
        return await run(auth);
      } catch (err) {
        if (!(err instanceof TokenRejectedError)) throw err;
        const what = `${call.method} ${maskUrl(call.url)}`;
        if (round >= 1) {
          throw new CarepipeError('SOURCE_FAILED', `${what} refused a newly obtained token (${err.message})`, {
            url: maskUrl(call.url),
            status: err.status,
          });
        }
        this.options.onEvent('token_refused', { call: what, reason: err.message });
        this.totals.reauthentications += 1;
        await this.options.tokens?.discard(this.site);
        this.token = undefined;
        await this.authenticate();
      }
    }
  }

  private async httpAttempt<T>(
    call: HttpCall & { body?: string | (() => Promise<string>) },
    headers: Record<string, string>,
    parse: (response: HttpAnswer) => T,
    rejected: number[],
    attempt: Attempt,
  ): Promise<T> {
    const response = await requestOnce(call.url, {
      method: call.method,
      headers,
      body: typeof call.body === 'function' ? await call.body() : call.body,
      timeoutMs: attempt.timeoutMs,
      signal: attempt.signal,
      passStatuses: rejected,
      policy: this.options.policy,
      tokenEndpoint: call.tokenEndpoint,
    });
    if (rejected.includes(response.status)) throw new TokenRejectedError(`HTTP ${response.status}`, response.status);
    return parse(response);
  }

  /** Every call of the session in the one retry wrapper; each attempt counted, each failure counted by reason. */
  private retrying<T>(call: HttpCall, attempt: (attempt: Attempt) => Promise<T>): Promise<T> {
    return withAttempts(
      `${call.method} ${maskUrl(call.url)}`,
      {
        maxRetries: this.options.maxRetries,
        baseDelayMs: this.options.baseDelayMs,
        timeoutMs: this.options.timeoutMs,
        signal: this.options.signal,
        onRetry: this.options.onRetry,
        onAttempt: () => void (this.totals.requests += 1),
        onFailure: (err) => {
          if (err instanceof RetryableError) this.recordFailure(err.message);
          else if (err instanceof TokenRejectedError) this.recordFailure(`token refused (${err.message})`);
        },
      },
      attempt,
    );
  }

  private recordFailure(reason: string): void {
    this.totals.failed_attempts += 1;
    this.totals.failures[reason] = (this.totals.failures[reason] ?? 0) + 1;
  }
}
