/**
 * The noteworth provider (contract: ../shared/providers/README.md). `GET /auth` hands out a token in
 * the `Super-Secure-Token` header; `GET /providers` wants `X-Request-Checksum: sha256(token + path)` and
 * answers a random sample of its clinicians as JSON sent as text/html. 401 (no checksum) and 403 (a
 * replaced token) both mean "get a new token". A listing is a sample, so it is not complete: clinicians
 * accumulate across runs and none is ever marked inactive from a noteworth listing.
 *
 * The provider gives no id. The clinician key is derived from `name_given`, `name_family` and `clinic`
 * (not `title`, so a PA who becomes Dr. stays the same clinician): each trimmed, inner spaces collapsed,
 * Unicode NFKC, lower-cased, joined with U+001F, SHA-256, the first 24 hex digits. Two clinicians with
 * the same name in the same clinic would share a key; the provider gives nothing to tell them apart.
 */
import { createHash } from 'node:crypto';
import { CarepipeError } from '../../errors.js';
import { RetryableError } from '../../http/retry.js';
import { text, TokenRejectedError, type BackendConfig, type ClinicianBackend, type MappedClinician } from '../types.js';

/** A clinician as the noteworth provider sends it. */
export interface NoteworthProvider {
  name_given?: unknown;
  name_family?: unknown;
  title?: unknown;
  clinic?: unknown;
}

function baseUrl(config: BackendConfig): string {
  return config.baseUrl!.replace(/\/+$/, '');
}

/** The stable key of a noteworth clinician (see the module comment for the fields). */
export function noteworthKey(given: string, family: string, clinic: string | null): string {
  const norm = (value: string | null) => (value ?? '').normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();
  return createHash('sha256').update([norm(given), norm(family), norm(clinic)].join('\u001f')).digest('hex').slice(0, 24);
}

export function checksum(token: string, path: string): string {
  return createHash('sha256').update(token + path).digest('hex');
}

export const noteworth: ClinicianBackend<NoteworthProvider> = {
  name: 'noteworth',
  description: 'noteworth provider API: token from /auth, a random sample of clinicians from /providers (not complete: clinicians accumulate)',
  completeListing: false,
  tokenRejectedStatuses: [401, 403],
  settings: [{ name: 'baseUrl', flag: '--base-url', env: 'NOTEWORTH_BASE_URL', description: 'the provider API, e.g. https://api.noteworth.example', required: true }],

  siteUrl: (config) => baseUrl(config),

  async authenticate(ctx) {
    const url = `${baseUrl(ctx.config)}/auth`;
    return ctx.http.request({ method: 'GET', url }, (response) => {
      const value = response.headers.get('super-secure-token');
      if (!value) {
        throw new CarepipeError('SOURCE_FAILED', `GET ${url} answered ${response.status} without a Super-Secure-Token header`, { url });
      }
      // The provider does not say when a token expires: it is used until it is refused.
      return { value, expiresAt: null };
    });
  },

  authHeader(token, call) {
    return { 'X-Request-Checksum': checksum(token.value, new URL(call.url).pathname) };
  },

  async *fetchClinicians(ctx) {
    const url = `${baseUrl(ctx.config)}/providers`;
    const providers = await ctx.http.authorized({ method: 'GET', url }, (response) => {
      const body = response.text.trim();
      if (body.startsWith('Error: No token created')) throw new TokenRejectedError('the provider has no current token');
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        // The provider cuts bodies in half on purpose: a failed attempt, never data.
        throw new RetryableError('malformed JSON body', response.status);
      }
      const list = (parsed as { providers?: unknown } | null)?.providers;
      if (!Array.isArray(list)) throw new CarepipeError('SOURCE_FAILED', `GET ${url} answered JSON without a providers list`, { url });
      return list as unknown[];
    });
    let entry = 0;
    for (const raw of providers) yield { raw: raw as NoteworthProvider, source: url, entry: entry++ };
  },

  mapToClinician(raw): MappedClinician {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      return { ok: false, reason: 'RECORD_INVALID', message: 'a provider entry must be a JSON object' };
    }
    const givenName = text(raw.name_given);
    const familyName = text(raw.name_family);
    if (!givenName || !familyName) {
      const field = !givenName ? 'name_given' : 'name_family';
      return { ok: false, reason: 'NAME_MISSING', field, message: `${field} is missing or empty: no clinician without a name` };
    }
    const clinic = text(raw.clinic);
    const key = noteworthKey(givenName, familyName, clinic);
    return {
      ok: true,
      key,
      value: {
        key,
        givenName,
        familyName,
        title: text(raw.title),
        clinic,
        npi: null,
        rpps: null,
        specialty: null,
        phone: null,
        email: null,
        active: true,
      },
    };
  },
};
