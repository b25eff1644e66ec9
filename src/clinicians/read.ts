/**
 * The read stage of `import-clinicians`: one backend's listing (`fetchClinicians`, every page over
 * HTTP) through the provider session of the run, each record yielded with where it came from (the
 * page's URL, no secrets, and its position in the page). The session's tokens are read and written
 * through the stage's `ctx.q`, and never written in a dry run, so a dry run keeps no token.
 */
import type { HttpPolicy } from '../http/policy.js';
import type { RetryEvent } from '../http/retry.js';
import type { ReadItem, StageContext } from '../pipeline/run.js';
import { ProviderSession, type HttpTotals } from './session.js';
import { TokenStore } from './tokens.js';
import type { BackendConfig, ClinicianBackend } from './types.js';

export interface ListingOptions {
  backend: ClinicianBackend;
  config: BackendConfig;
  maxRetries: number;
  baseDelayMs: number;
  timeoutMs: number;
  policy: HttpPolicy;
  now: () => Date;
  /** The run's HTTP figures, filled as calls are made. */
  totals: HttpTotals;
  onRetry: (event: RetryEvent) => void;
  onEvent: (event: string, fields: Record<string, string | number>) => void;
}

/** The reader of a backend's listing: the provider's records as they are, for the backend's mapping. */
export function readListing(options: ListingOptions): (ctx: StageContext) => AsyncIterable<ReadItem<unknown>> {
  return async function* read(ctx) {
    const session = new ProviderSession({
      ...options,
      // A real run stores a new token at once (ctx.q is the database); a dry run only reads the stored one.
      tokens: new TokenStore(ctx.q, ctx.dryRun),
      signal: ctx.signal,
    });
    for await (const record of options.backend.fetchClinicians(session.context)) {
      yield { kind: 'record', record: record.raw, at: { source: record.source, entry: record.entry } };
    }
  };
}
