/**
 * What a run's HTTP may do, decided once at the boundary and enforced by the one client
 * (src/http/client.ts) for every reader and backend: which origins requests may go to, and how large
 * an answer may be. Credentials are sent with requests, so a request to another origin is never made:
 * a `next` link, a stored next page, a Bulk Data status or file URL on another host stops the run,
 * unless the user listed that origin with `--allow-origin`.
 */
import { CarepipeError } from '../errors.js';
import { maskUrl } from './mask.js';

export interface HttpPolicy {
  /**
   * The configured base URL's origin, named when a request elsewhere is refused. Empty when no base URL
   * is known (a backend module whose site is not a URL): the first request's origin is then taken.
   */
  home: string;
  /** Origins requests may go to: the base URL's and those given with --allow-origin. */
  readonly origins: Set<string>;
  /** Largest answer read into memory, in bytes (--max-response-mb). */
  readonly maxResponseBytes: number;
}

export const DEFAULT_MAX_RESPONSE_MB = 512;

/** `https://host:port` of a URL; a usage error naming `what` when it is not an http(s) URL. */
export function originOf(url: string, what = 'URL'): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CarepipeError('USAGE', `${what} ${JSON.stringify(maskUrl(url))} is not an http(s) URL`, { field: what.replace(/^--/, '') });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new CarepipeError('USAGE', `${what} ${JSON.stringify(maskUrl(url))} is not an http(s) URL`, { field: what.replace(/^--/, '') });
  }
  return parsed.origin;
}

/** The policy of a run against `baseUrl` (see `home` for none): its origin, the allowed others, the size cap. */
export function httpPolicy(baseUrl: string | undefined, options: { allowOrigins?: readonly string[]; maxResponseMb?: number } = {}): HttpPolicy {
  const home = baseUrl === undefined ? '' : originOf(baseUrl);
  const origins = new Set([...(home ? [home] : []), ...(options.allowOrigins ?? []).map((o) => originOf(o, '--allow-origin'))]);
  const mb = options.maxResponseMb ?? DEFAULT_MAX_RESPONSE_MB;
  return { home, origins, maxResponseBytes: Math.floor(mb * 1024 * 1024) };
}

/** Throws (exit 4) when `url` is on an origin the policy does not allow; names both origins. */
export function checkOrigin(policy: HttpPolicy | undefined, url: string): void {
  if (!policy) return;
  let origin: string;
  try {
    origin = new URL(url).origin;
  } catch {
    throw new CarepipeError('SOURCE_FAILED', `refusing to request ${JSON.stringify(maskUrl(url))}: not a URL`, { url: maskUrl(url) });
  }
  if (!policy.home) {
    policy.home = origin;
    policy.origins.add(origin);
  }
  if (policy.origins.has(origin)) return;
  throw new CarepipeError(
    'SOURCE_FAILED',
    `refusing to send a request (and its credentials) to ${origin}: the configured server is ${policy.home}, and a link pointed to ${maskUrl(url)}; ` +
      `if ${origin} is trusted, pass --allow-origin ${origin}`,
    { url: maskUrl(url), origin, allowed: policy.home },
  );
}

/** The error of an answer larger than the cap (exit 4). */
export function tooLarge(policy: HttpPolicy, method: string, url: string): CarepipeError {
  const mb = Number((policy.maxResponseBytes / 1024 / 1024).toPrecision(3));
  return new CarepipeError('SOURCE_FAILED', `${method} ${maskUrl(url)} answered more than ${mb} MB: stopped reading (raise --max-response-mb if the answer is expected)`, {
    url: maskUrl(url),
  });
}

/** The `--allow-origin` flags of a command (repeatable). */
export interface HttpFlags {
  allowOrigin?: string[];
}

/**
 * The origins allowed besides the configured server's: the flags, else CAREPIPE_ALLOW_ORIGIN
 * (comma-separated), else `allowOrigins` in the config file; each must be an http(s) origin.
 */
export function allowedOrigins(settings: { env: Record<string, string | undefined>; file: Record<string, unknown> }, flags: HttpFlags): string[] {
  const fromFile = settings.file.allowOrigins;
  const given = flags.allowOrigin?.length
    ? flags.allowOrigin
    : settings.env.CAREPIPE_ALLOW_ORIGIN
      ? settings.env.CAREPIPE_ALLOW_ORIGIN.split(',')
      : Array.isArray(fromFile)
        ? fromFile.map(String)
        : typeof fromFile === 'string'
          ? [fromFile]
          : [];
  return given.map((o) => o.trim()).filter(Boolean).map((o) => originOf(o, '--allow-origin'));
}
