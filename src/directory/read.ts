/**
 * The directory reader: one CloudSearch search per call, through the shared HTTP retry layer
 * (503/429/timeouts/malformed bodies retried, Retry-After honoured), and the hits an import reads (one
 * picked hit, one hit by its keys, or every page of a search, each page's end a checkpoint). Knows
 * nothing of Postgres.
 */
import { CarepipeError, isCarepipeError } from '../errors.js';
import { parseJsonBody, request, type HttpResponse } from '../http/client.js';
import type { HttpPolicy } from '../http/policy.js';
import type { RetryEvent } from '../http/retry.js';
import type { ReadItem } from '../pipeline/run.js';
import { displayFields, type DirectoryHit } from './map.js';
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

/** What an import reads: the hit numbered N in the search table, the hit with these keys, or every hit. */
export type ImportMode = { pick: number } | { rpps: string; finess: string } | { all: true };

/** The end of a page of hits: closes the batch, so a page is written whole or not at all. */
export interface PageEnd {
  /** The page's URL, safe to print. */
  url: string;
  /** Hits the search has in all. */
  found: number;
  /** Hits on this page. */
  entries: number;
  /** The number (from 1) of the page's last hit. */
  throughEntry: number;
}

/**
 * The hits an import reads, each with where it came from (the page's URL and its number in the search),
 * then the page's end. A usage error when --pick or --rpps/--finess name no hit.
 */
export async function* readImportHits(
  client: DirectoryClient,
  mode: ImportMode,
  search: SearchOptions,
): AsyncGenerator<ReadItem<DirectoryHit, PageEnd>> {
  if ('all' in mode) {
    let entry = 0;
    for await (const page of client.pages(search)) {
      for (const hit of page.hits) yield { kind: 'record', record: hit, at: { source: page.url, entry: ++entry } };
      yield { kind: 'checkpoint', state: { url: page.url, found: page.found, entries: page.hits.length, throughEntry: entry } };
    }
    return;
  }
  const { page, hit, entry } = 'pick' in mode ? await pickHit(client, mode.pick, search) : await hitByKeys(client, mode, search);
  yield { kind: 'record', record: hit, at: { source: page.url, entry } };
  yield { kind: 'checkpoint', state: { url: page.url, found: page.found, entries: 1, throughEntry: entry } };
}

async function pickHit(client: DirectoryClient, pick: number, search: SearchOptions): Promise<{ page: SearchPage; hit: DirectoryHit; entry: number }> {
  if (!Number.isInteger(pick) || pick < 1) throw new CarepipeError('USAGE', '--pick must be a number from the search table (1, 2, …)');
  let page: SearchPage;
  let hit: DirectoryHit | undefined;
  if (search.cursor !== undefined) {
    // A cursor page has no absolute offset: N counts from its first row.
    page = await client.search(search);
    hit = page.hits[pick - 1];
  } else {
    page = await client.search({ ...search, start: pick - 1, size: 1, return: undefined });
    hit = page.hits[0];
  }
  if (!hit) throw new CarepipeError('USAGE', `--pick ${pick}: the search has ${page.found} hit${page.found === 1 ? '' : 's'}`);
  return { page, hit, entry: pick };
}

async function hitByKeys(
  client: DirectoryClient,
  keys: { rpps: string; finess: string },
  search: SearchOptions,
): Promise<{ page: SearchPage; hit: DirectoryHit; entry: number }> {
  const page = await client.search({ ...search, rpps: keys.rpps, finess: keys.finess, start: undefined, cursor: undefined, size: 10, return: undefined });
  // The filter is exact, but an analysed field could match loosely: keep the hit with these keys.
  const hit = page.hits.find((h) => {
    const f = displayFields(h);
    return f.rpps_number === keys.rpps && f.finess?.toUpperCase() === keys.finess.toUpperCase();
  });
  if (!hit) throw new CarepipeError('USAGE', `no directory entry for rpps_number ${keys.rpps} at finess ${keys.finess}`);
  return { page, hit, entry: 1 };
}
