/**
 * The directory reader: one CloudSearch search per call, through the shared HTTP retry layer
 * (503/429/timeouts/malformed bodies retried, Retry-After honoured). Knows nothing of Postgres.
 */
import { CarepipeError, isCarepipeError } from '../errors.js';
import { parseJsonBody, request, type HttpResponse } from '../http/client.js';
import type { HttpPolicy } from '../http/policy.js';
import type { RetryEvent } from '../http/retry.js';
import type { DirectoryHit } from './map.js';
import { buildSearchParams, searchUrl, type SearchOptions } from './query.js';
import { maskUrl } from '../http/mask.js';

export interface SearchPage {
  /** The request URL, safe to print. */
  url: string;
  found: number;
  start: number;
  /** The cursor of the next page when the search was made with one. */
  cursor?: string;
  hits: DirectoryHit[];
}

export interface DirectoryClientOptions {
  baseUrl: string;
  /** Per-attempt timeout. */
  timeoutMs?: number;
  maxRetries?: number;
  baseDelayMs?: number;
  signal?: AbortSignal;
  onRetry?: (event: RetryEvent) => void;
  /** The run's origin rule and size cap. */
  policy?: HttpPolicy;
}

/** Checks the CloudSearch shape; a body that is JSON but not a search result is a final failure. */
function parseSearchBody(response: HttpResponse): Omit<SearchPage, 'url'> {
  const body = parseJsonBody<Record<string, unknown>>(response);
  const hits = (body && typeof body === 'object' ? body.hits : undefined) as Record<string, unknown> | undefined;
  if (!hits || typeof hits !== 'object' || !Array.isArray(hits.hit)) {
    const message = (body?.error as { message?: string } | undefined)?.message ?? (body?.message as string | undefined);
    throw new CarepipeError(
      'SOURCE_FAILED',
      `the directory answered without search hits${message ? `: ${message}` : ''}`,
      { url: maskUrl(response.url) },
    );
  }
  const found = Number(hits.found ?? hits.hit.length);
  const start = Number(hits.start ?? 0);
  const out: Omit<SearchPage, 'url'> = {
    found: Number.isFinite(found) ? found : hits.hit.length,
    start: Number.isFinite(start) ? start : 0,
    hits: (hits.hit as unknown[]).map((h, i) => {
      const hit = (h ?? {}) as { id?: unknown; fields?: unknown };
      return {
        id: hit.id === undefined || hit.id === null ? `#${start + i + 1}` : String(hit.id),
        fields: hit.fields && typeof hit.fields === 'object' ? (hit.fields as Record<string, unknown>) : {},
      };
    }),
  };
  if (typeof hits.cursor === 'string' && hits.cursor !== '') out.cursor = hits.cursor;
  return out;
}

export class DirectoryClient {
  constructor(private readonly options: DirectoryClientOptions) {}

  /** One page of results. */
  async search(search: SearchOptions): Promise<SearchPage> {
    const url = searchUrl(this.options.baseUrl, buildSearchParams(search));
    try {
      const page = await request(url, {
        timeoutMs: this.options.timeoutMs,
        maxRetries: this.options.maxRetries,
        baseDelayMs: this.options.baseDelayMs,
        signal: this.options.signal,
        onRetry: this.options.onRetry,
        policy: this.options.policy,
        headers: { accept: 'application/json' },
        parse: parseSearchBody,
      });
      return { url: maskUrl(url), ...page };
    } catch (err) {
      // CloudSearch answers 400 to a query it cannot parse (a raw --fq, a bad sort): the user's to fix.
      if (isCarepipeError(err) && err.code === 'SOURCE_FAILED' && err.context.status === 400) {
        throw new CarepipeError('USAGE', `the directory refused the query: ${err.message.replace(/^.*answered HTTP 400:?\s*/, '')}`, err.context, {
          cause: err,
        });
      }
      throw err;
    }
  }

  /**
   * Every hit of a search, page by page (memory holds one page). Pages with a CloudSearch cursor, the
   * only way past 10,000 hits; falls back to `start` when the gateway passes no cursor back.
   */
  async *pages(search: SearchOptions): AsyncGenerator<SearchPage> {
    const size = search.size ?? 100;
    let next: SearchOptions = { ...search, size, start: undefined, cursor: search.cursor ?? (search.start ? undefined : 'initial') };
    if (search.start) next.start = search.start;
    let seen = search.start ?? 0;
    for (;;) {
      const page = await this.search(next);
      if (page.hits.length === 0) return;
      yield page;
      seen += page.hits.length;
      if (seen >= page.found) return;
      if (page.cursor && next.cursor !== undefined) {
        if (page.cursor === next.cursor) return;
        next = { ...next, cursor: page.cursor };
      } else {
        next = { ...next, cursor: undefined, start: seen };
      }
    }
  }
}
