/**
 * FHIR search paging, the one implementation: the first search URL, one page fetched as a searchset
 * Bundle through the HTTP client (src/http/client.ts: origin rule, size cap, timeout), and the walk
 * along `Bundle.link[next]`. Used by `ingest-fhir --server` (src/fhir/read/search.ts) and by the
 * `fhir-practitioner` clinician backend; each wraps a page fetch in its own retry and token handling.
 */
import type { Bundle } from 'fhir/r4.js';
import { CarepipeError } from '../../errors.js';
import { requestOnce, type HttpResponse, type RequestOptions } from '../../http/client.js';
import { maskUrl } from '../../http/mask.js';
import { RetryableError } from '../../http/retry.js';

/** `{base}/{type}?{params}`: the first page of a search. */
export function searchUrl(baseUrl: string, resourceType: string, params: Record<string, string>): string {
  return `${baseUrl.replace(/\/+$/, '')}/${resourceType}?${new URLSearchParams(params)}`;
}

/** The URL of the page after `bundle`, or undefined at the last page. */
export function nextPageUrl(bundle: Bundle): string | undefined {
  return bundle.link?.find((l) => l.relation === 'next')?.url;
}

/**
 * One attempt at one page: GET with `Accept: application/fhir+json`. A cut or malformed body is
 * retryable; JSON that is not a Bundle is a final failure. Statuses in `passStatuses` (401) come back
 * as a response without a bundle, for the caller's token handling.
 */
export async function fetchBundleOnce(
  url: string,
  options: Pick<RequestOptions, 'headers' | 'signal' | 'timeoutMs' | 'policy' | 'passStatuses'>,
): Promise<{ response: HttpResponse; bundle?: Bundle }> {
  const response = await requestOnce(url, { ...options, method: 'GET', headers: { accept: 'application/fhir+json', ...options.headers } });
  if (options.passStatuses?.includes(response.status)) return { response };
  let body: { resourceType?: unknown };
  try {
    body = JSON.parse(response.text) as typeof body;
  } catch {
    throw new RetryableError('malformed JSON body', response.status);
  }
  if (body?.resourceType !== 'Bundle') {
    const source = maskUrl(url);
    throw new CarepipeError('SOURCE_FAILED', `${source} answered a ${String(body?.resourceType ?? 'non-FHIR body')} where a searchset Bundle was expected`, { url: source });
  }
  return { response, bundle: body as Bundle };
}

/**
 * Every page of a search from `firstUrl`, following `next` links; `getPage` fetches one page (with
 * the caller's retries and authentication). A server that links a page to itself ends the walk.
 */
export async function* searchPages(firstUrl: string, getPage: (url: string) => Promise<Bundle>): AsyncGenerator<{ url: string; bundle: Bundle; next?: string }> {
  let url: string | undefined = firstUrl;
  while (url) {
    const bundle = await getPage(url);
    const next = nextPageUrl(bundle);
    yield { url, bundle, next };
    url = next === url ? undefined : next;
  }
}
