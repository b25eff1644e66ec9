/**
 * FHIR search reader: for each resource type, a search with `_count` (and `_lastUpdated=gt{cursor}` when
 * incremental) through the shared search paging (src/fhir/client/search.ts), following `Bundle.link[next]`
 * to the end. After each page it yields a checkpoint carrying the cursor (the highest meta.lastUpdated
 * seen) and the next-page URL, so that the pipeline commits the page's rows and the cursor together and
 * an interrupted run resumes at the first uncommitted page. Knows nothing of the database: the stored
 * states come in as a map.
 */
import type { Bundle, FhirResource } from 'fhir/r4.js';
import { CarepipeError } from '../../errors.js';
import { fetchBundleOnce, searchPages, searchUrl } from '../client/search.js';
import type { FhirItem } from './item.js';
import { emptyServerStats, HttpStatusError, serverCall, type ServerCallOptions, type ServerReadStats } from '../client/call.js';
import { maskUrl } from '../../http/mask.js';
import { RejectReasons as ReasonCodes } from '../../pipeline/reasons.js';
import { exceedsJsonDepth, tooDeepMessage } from '../../io/json-limits.js';

/** What is remembered per server and type between runs (table fhir_sync_state). */
export interface SearchState {
  /** The highest meta.lastUpdated committed: the next run asks `_lastUpdated=gt` this. */
  lastUpdated: string | null;
  /** The page to fetch next when the last run stopped mid-pull; null when it reached the end. */
  nextUrl: string | null;
}

export interface SearchReaderOptions extends Omit<ServerCallOptions, 'stats'> {
  /** The server's base URL, e.g. https://fhir.example.org/R4. */
  baseUrl: string;
  types: string[];
  /** Page size asked of the server (default 100). */
  count?: number;
  /** Only resources changed after this instant; overrides the stored cursor. */
  since?: string;
  /** Ignore stored cursors and pages: read everything (or everything after `since`). */
  fullRefresh?: boolean;
  /** Stored states by checkpoint key (see `searchCheckpointKey`). */
  states?: ReadonlyMap<string, SearchState>;
  stats?: ServerReadStats;
}

/** Checkpoint key of one server and type: `server:{url}:{type}`. */
export function searchCheckpointKey(baseUrl: string, type: string): string {
  return `server:${normalizeBaseUrl(baseUrl)}:${type}`;
}

/** The base URL without trailing slash, credentials or query (the form stored in the state table). */
export function normalizeBaseUrl(baseUrl: string): string {
  const url = new URL(baseUrl);
  url.username = '';
  url.password = '';
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/+$/, '');
}

function later(a: string | null, b: string | undefined): string | null {
  if (!b) return a;
  if (!a) return b;
  return Date.parse(b) > Date.parse(a) ? b : a;
}

/** Yield every resource of every type, with a checkpoint after each page. */
export async function* readFhirSearch(options: SearchReaderOptions): AsyncGenerator<FhirItem> {
  const baseUrl = normalizeBaseUrl(options.baseUrl);
  const stats = options.stats ?? emptyServerStats();
  const call = { ...options, stats };
  if (options.since !== undefined && Number.isNaN(Date.parse(options.since))) {
    throw new CarepipeError('USAGE', `--since ${JSON.stringify(options.since)} is not a date or instant (e.g. 2024-01-01T00:00:00Z)`, { field: 'since' });
  }

  for (const type of options.types) {
    const key = searchCheckpointKey(baseUrl, type);
    const stored = options.fullRefresh ? undefined : options.states?.get(key);
    // --since overrides the cursor; a stored next page wins over both (the pass it belongs to is unfinished).
    const since = options.since ?? stored?.lastUpdated ?? undefined;
    let cursor: string | null = options.fullRefresh ? (options.since ?? null) : later(stored?.lastUpdated ?? null, options.since);
    const searchParams: Record<string, string> = { _count: String(options.count ?? 100), _sort: '_lastUpdated' };
    if (since) searchParams._lastUpdated = `gt${since}`;
    const firstUrl = searchUrl(baseUrl, type, searchParams);
    let resumeUrl: string | undefined = options.since === undefined ? (stored?.nextUrl ?? undefined) : undefined;

    for (;;) {
      let pagesRead = 0;
      try {
        for await (const { url, bundle, next } of searchPages(resumeUrl ?? firstUrl, (url) => getBundle(url, call))) {
          pagesRead++;
          stats.pages++;
          const source = maskUrl(url);
          const entries = bundle.entry ?? [];
          for (let i = 0; i < entries.length; i++) {
            const entry = entries[i];
            if (entry.search?.mode && entry.search.mode !== 'match') continue;
            const resource = entry.resource;
            if (exceedsJsonDepth(resource)) {
              yield { kind: 'invalid', source, entry: i, reasonCode: ReasonCodes.TOO_DEEP, message: tooDeepMessage(), field: 'entry.resource' };
              continue;
            }
            if (!resource || typeof resource !== 'object' || !resource.resourceType || typeof resource.id !== 'string' || !resource.id) {
              yield { kind: 'invalid', source, entry: i, reasonCode: 'RESOURCE_INVALID', message: 'search entry without a resource with resourceType and id', field: 'entry.resource', raw: JSON.stringify(entry).slice(0, 10_000) };
              continue;
            }
            cursor = later(cursor, resource.meta?.lastUpdated);
            yield { kind: 'resource', source, entry: i, resource: resource as FhirResource & { id: string } };
          }
          yield { kind: 'checkpoint', source, key, state: { lastUpdated: cursor, nextUrl: next === url ? null : (next ?? null) } satisfies SearchState };
        }
        break;
      } catch (err) {
        // Servers let paging links expire: start the pass again from the committed cursor.
        const status = err instanceof CarepipeError ? err.context.status : undefined;
        if (resumeUrl && pagesRead === 0 && (status === 404 || status === 410)) {
          resumeUrl = undefined;
          continue;
        }
        throw err;
      }
    }
  }
}

/** One page through the server call discipline (retries, token refresh on 401, the run's HTTP policy). */
function getBundle(url: string, call: ServerCallOptions): Promise<Bundle> {
  return serverCall('GET', url, call, async (authorization, signal) => {
    const { response, bundle } = await fetchBundleOnce(url, {
      headers: authorization ? { authorization } : {},
      signal,
      timeoutMs: call.timeoutMs ?? 30_000,
      policy: call.policy,
      passStatuses: [401],
    });
    if (!bundle) throw new HttpStatusError({ status: response.status, headers: response.headers, body: response.text }, url);
    return bundle;
  });
}
