/**
 * What a clinician provider backend is: a module that authenticates, builds the auth header, gives its
 * listing (the read stage: every clinician record, all pages) and maps the provider's fields to ours
 * (the map stage: a pure function answering the engine's MapResult). `import-clinicians` runs one on
 * the engine (src/pipeline/run.ts) and upserts the result; the backend knows nothing of the database.
 */
import type { HttpPolicy } from '../http/policy.js';
import type { MapResult } from '../pipeline/run.js';

/** A clinician in our own field names: one row of the `clinicians` table (less the bookkeeping). */
export interface Clinician {
  /** The provider's id, or a stable key the backend derives from the fields it has. */
  key: string;
  givenName: string | null;
  familyName: string | null;
  title: string | null;
  clinic: string | null;
  npi: string | null;
  rpps: string | null;
  specialty: string | null;
  phone: string | null;
  email: string | null;
  /** What the provider says; a clinician the provider stops listing is marked inactive by the importer. */
  active: boolean;
}

/**
 * A backend's answer for one record: `{ ok: true, value: clinician, key: clinician.key }`, or
 * `{ ok: false, reason, message, field?, key? }` with a reason from the closed list
 * (src/pipeline/reasons.ts). A reject that still names a clinician carries its `key`, so that the
 * clinician is not taken as gone from a complete listing.
 */
export type MappedClinician = MapResult<Clinician>;

/** One record as the provider sent it, with where it came from (for rejects). */
export interface SourceRecord<Raw = unknown> {
  raw: Raw;
  /** The URL of the page it came from (no secrets). */
  source: string;
  /** Its position in that page, from 0. */
  entry?: number;
}

export interface ProviderToken {
  value: string;
  /** Null when the provider does not say: used until the provider refuses it. */
  expiresAt: Date | null;
}

/** A setting a backend needs, resolved from flag, environment, config file, then default. */
export interface BackendSetting {
  /** Key in the resolved config object and in the config file section `backends.<backend>.<name>`. */
  name: string;
  /** One of the flags of `import-clinicians` (`--base-url`, `--client-id`, …), when one fits. */
  flag?: CredentialFlag;
  /** Environment variable; default `<BACKEND>_<NAME>` (NOTEWORTH_BASE_URL). */
  env?: string;
  description: string;
  required?: boolean;
  /** Never printed, logged or recorded. */
  secret?: boolean;
  default?: string;
}

export const CREDENTIAL_FLAGS = ['--base-url', '--token-url', '--client-id', '--private-key', '--scope'] as const;
export type CredentialFlag = (typeof CREDENTIAL_FLAGS)[number];

export type BackendConfig = Readonly<Record<string, string | undefined>>;

export interface HttpCall {
  method: string;
  url: string;
  /** A token endpoint (configured, or named by the server): exempt from the origin rule. */
  tokenEndpoint?: boolean;
}

/** A failure of one attempt worth another, with its HTTP status and the server's Retry-After. */
export interface AttemptOptions {
  /** Abort signal of this attempt (the per-attempt timeout and the run's interruption). */
  signal: AbortSignal;
  timeoutMs: number;
  /** The run's origin rule and size cap, for a client that makes its own request (src/http/client.ts). */
  policy?: HttpPolicy;
}

/**
 * HTTP for backends. Every call goes through the retry layer (src/http/retry.ts): bounded attempts,
 * backoff with jitter, Retry-After, each failed attempt logged; `authorized` also adds the auth header
 * and, when the provider refuses the token, re-authenticates once and tries again.
 */
export interface ProviderHttp {
  /**
   * A request without the auth header (for example the token endpoint); `parse` may throw RetryableError.
   * A body given as a function is built again for each attempt (a signed assertion is good only once).
   */
  request<T>(call: HttpCall & { headers?: Record<string, string>; body?: string | (() => Promise<string>) }, parse: (response: HttpAnswer) => T): Promise<T>;
  /** A request with the auth header; statuses in `tokenRejectedStatuses` trigger one re-authentication. */
  authorized<T>(call: HttpCall & { headers?: Record<string, string> }, parse: (response: HttpAnswer) => T): Promise<T>;
  /**
   * The same for a call that makes its own request (the shared FHIR search paging): `attempt` gets the
   * auth headers, the attempt's signal and the run's HTTP policy, and throws RetryableError,
   * TokenRejectedError, or a final error.
   */
  authorizedAttempt<T>(call: HttpCall, attempt: (headers: Record<string, string>, options: AttemptOptions) => Promise<T>): Promise<T>;
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  url: string;
}

export interface BackendContext {
  config: BackendConfig;
  http: ProviderHttp;
  signal: AbortSignal;
}

/** The interface every backend satisfies; the registry refuses one that does not, naming what is missing. */
export interface ClinicianBackend<Raw = unknown> {
  /** What users type: `carepipe import-clinicians NAME`; also the `provider` column. */
  name: string;
  /** One line for `--help`. */
  description: string;
  /**
   * True when one run's listing holds every clinician the provider has: only then may the importer mark
   * the clinicians it no longer returns as inactive.
   */
  completeListing: boolean;
  settings: BackendSetting[];
  /** HTTP statuses meaning "this token is no longer good" (default [401]). */
  tokenRejectedStatuses?: number[];
  /** The site a token belongs to (the `provider_tokens` key), from the resolved settings. */
  siteUrl(config: BackendConfig): string;
  /** Obtain a new token, or null when the provider needs none. */
  authenticate(ctx: BackendContext): Promise<ProviderToken | null>;
  /** The headers that authenticate one call. */
  authHeader(token: ProviderToken, call: HttpCall): Record<string, string>;
  /** Every clinician record of one listing, all pages, in the provider's own shape (the read stage). */
  fetchClinicians(ctx: BackendContext): AsyncIterable<SourceRecord<Raw>>;
  /** Provider fields to ours; a pure function (the map stage). */
  mapToClinician(raw: Raw): MappedClinician;
}

/** Thrown by a parse or an attempt when the provider refuses the token (the session re-authenticates once). */
export class TokenRejectedError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'TokenRejectedError';
  }
}

/** Trimmed text, or null when absent or blank. */
export function text(value: unknown): string | null {
  if (typeof value === 'string') {
    const trimmed = value.trim().replace(/\s+/g, ' ');
    return trimmed === '' ? null : trimmed;
  }
  if (typeof value === 'number') return String(value);
  return null;
}
