/**
 * Secret masking, the one implementation: URLs (a password in the userinfo, secret query parameters),
 * free text that may hold such URLs or `api_key=…` pairs (error messages, log lines, the ledger), and
 * settings objects whose keys name a secret. Applied where errors are printed and recorded, so that a
 * message built anywhere below cannot leak what the user put in a URL.
 */

/** The mask that replaces a secret. */
export const MASK = '****';

/**
 * Query parameter names that carry secrets: `api_key`, `apikey`, `token`, `access_token`, `key`,
 * `password`, `secret`, `client_secret`, `signature`, `sig` (signed storage URLs), `code` (OAuth).
 */
const SECRET_PARAM = /token|secret|key|passw(or)?d|pwd|signature|^sig$|credential|^code$|^auth/i;

/** Settings keys whose values are secrets (narrower than query names: `keyId` is not a secret). */
const SECRET_SETTING = /(token|secret|password|passwd|credential|apikey|api_key|private|pseudonym.?key|^key$|signature)/i;

/** True when a query parameter or flag of this name carries a secret. */
export function isSecretName(name: string): boolean {
  return SECRET_PARAM.test(name);
}

/** True when a settings key of this name holds a secret. */
export function isSecretSetting(name: string): boolean {
  return SECRET_SETTING.test(name);
}

/** A URL as it may be shown: the userinfo password and secret query values replaced with `****`. */
export function maskUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = MASK;
    for (const name of [...new Set(parsed.searchParams.keys())]) {
      if (isSecretName(name)) parsed.searchParams.set(name, MASK);
    }
    // URLSearchParams encodes `*`: keep the mask readable.
    return parsed.toString().replaceAll('%2A%2A%2A%2A', MASK);
  } catch {
    return maskText(url);
  }
}

// `scheme://user:password@` anywhere in a text.
const USERINFO = /([a-z][a-z0-9+.-]*:\/\/[^\s/:@"'<>\\]*):([^\s/@"'<>\\]*)@/gi;
// `name=value` pairs whose name is a secret, in a query string or in prose.
// A backslash ends a value too, so that masking JSON text leaves its escapes whole.
const SECRET_PAIR = /(^|[?&;,\s"'(])([a-z_][a-z0-9_.-]*)=([^&\s"'<>),;\\]+)/gi;

/** Free text with every secret-looking URL part and `secret=value` pair masked. */
export function maskText(text: string): string {
  return text
    .replace(USERINFO, (_, head: string, password: string) => (password ? `${head}:${MASK}@` : `${head}:@`))
    .replace(SECRET_PAIR, (whole, lead: string, name: string, value: string) => (isSecretName(name) && value !== MASK ? `${lead}${name}=${MASK}` : whole));
}

/** A deep copy with every secret setting masked and every string run through maskText. */
export function maskSecrets(value: unknown, key = ''): unknown {
  if (isSecretSetting(key) && value !== undefined && value !== null && value !== '') return MASK;
  if (typeof value === 'string') return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? maskUrl(value) : maskText(value);
  if (Array.isArray(value)) return value.map((item) => maskSecrets(item));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskSecrets(v, k)]));
  }
  return value;
}
