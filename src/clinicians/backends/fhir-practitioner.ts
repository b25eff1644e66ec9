/**
 * Clinicians from a FHIR R4 server through fhir-kit-client: `Practitioner` searched page by page with
 * `_revinclude=PractitionerRole:practitioner`, so each page carries the roles (clinic, specialty,
 * contacts) of its own practitioners and nothing has to be held across pages. The search returns every
 * practitioner, so the listing is complete: one no longer returned is marked inactive by the importer.
 *
 * The clinician key is the Practitioner's logical id. NPI comes from the identifier with system
 * `http://hl7.org/fhir/sid/us-npi`, RPPS from `urn:oid:1.2.250.1.71.4.2.1` (or an identifier typed
 * `RPPS`). Authentication is optional: with a token URL, an OAuth 2 client-credentials token (client id
 * and secret sent as HTTP Basic) is obtained, stored and sent as `Authorization: Bearer`.
 */
import type { Bundle, ContactPoint, HumanName, Identifier, Practitioner, PractitionerRole } from 'fhir/r4.js';
import { CarepipeError } from '../../errors.js';
import { describeBody, isRetryableStatus, parseJsonBody, safeUrl } from '../../http/client.js';
import { parseRetryAfter, RetryableError } from '../../http/retry.js';
import { text, TokenRejectedError, type BackendConfig, type ClinicianBackend, type MappedClinician } from '../types.js';

export const NPI_SYSTEM = 'http://hl7.org/fhir/sid/us-npi';
export const RPPS_SYSTEM = 'urn:oid:1.2.250.1.71.4.2.1';

/** One practitioner with the roles that point at it, as found on one search page. */
export interface PractitionerWithRoles {
  practitioner: Practitioner;
  roles: PractitionerRole[];
}

function baseUrl(config: BackendConfig): string {
  return config.baseUrl!.replace(/\/+$/, '');
}

/** A fhir-kit-client failure sorted into retryable, token refused, or final. */
function classify(err: unknown, what: string): Error {
  const failure = err as { response?: { status?: number; data?: unknown }; config?: { headers?: Headers }; cause?: { code?: string; message?: string } };
  const status = failure.response?.status;
  if (typeof status === 'number') {
    if (status === 401) return new TokenRejectedError('HTTP 401', 401);
    // fhir-kit-client reports a body it cannot parse as an error carrying the (successful) status.
    if (status >= 200 && status < 300) return new RetryableError('malformed JSON body', status);
    if (isRetryableStatus(status)) {
      return new RetryableError(`HTTP ${status}`, status, parseRetryAfter(failure.config?.headers?.get?.('retry-after') ?? null));
    }
    const data = failure.response?.data;
    return new CarepipeError('SOURCE_FAILED', `${what} answered HTTP ${status}${describeBody(typeof data === 'string' ? data : JSON.stringify(data ?? ''))}`, {
      url: what.split(' ')[1],
      status,
    });
  }
  if (err instanceof TypeError) return new RetryableError(`network error: ${failure.cause?.code ?? failure.cause?.message ?? err.message}`);
  return err as Error;
}

function pickName(names: HumanName[] | undefined): HumanName | undefined {
  if (!names?.length) return undefined;
  return names.find((n) => n.use === 'official') ?? names.find((n) => n.use === 'usual') ?? names[0];
}

function identifierValue(identifiers: Identifier[] | undefined, system: string, typeCode?: string): string | null {
  const found = identifiers?.find((i) => i.system === system || (typeCode && i.type?.coding?.some((c) => c.code === typeCode)));
  return text(found?.value);
}

function contact(telecoms: (ContactPoint[] | undefined)[], system: 'phone' | 'email'): string | null {
  const all = telecoms.flatMap((t) => t ?? []).filter((t) => t.system === system && text(t.value));
  const chosen = all.find((t) => t.use === 'work') ?? all[0];
  return text(chosen?.value);
}

export const fhirPractitioner: ClinicianBackend<PractitionerWithRoles> = {
  name: 'fhir-practitioner',
  description: 'FHIR R4 server: Practitioner with their PractitionerRole (clinic, specialty), complete listing (missing ones marked inactive)',
  completeListing: true,
  settings: [
    { name: 'baseUrl', flag: '--base-url', env: 'FHIR_PRACTITIONER_BASE_URL', description: 'FHIR base URL, e.g. https://fhir.example/r4', required: true },
    { name: 'tokenUrl', flag: '--token-url', env: 'FHIR_PRACTITIONER_TOKEN_URL', description: 'OAuth 2 token endpoint (client credentials); none: no authentication' },
    { name: 'clientId', flag: '--client-id', env: 'FHIR_PRACTITIONER_CLIENT_ID', description: 'OAuth 2 client id' },
    { name: 'clientSecret', flag: '--client-secret', env: 'FHIR_PRACTITIONER_CLIENT_SECRET', description: 'OAuth 2 client secret', secret: true },
    { name: 'scope', flag: '--scope', env: 'FHIR_PRACTITIONER_SCOPE', description: 'OAuth 2 scope (default system/Practitioner.read system/PractitionerRole.read)' },
    { name: 'pageSize', env: 'FHIR_PRACTITIONER_PAGE_SIZE', description: 'practitioners per search page', default: '100' },
  ],

  siteUrl: (config) => baseUrl(config),

  async authenticate(ctx) {
    const { tokenUrl, clientId, clientSecret } = ctx.config;
    if (!tokenUrl) return null;
    if (!clientId || !clientSecret) {
      throw new CarepipeError('CONFIG_INVALID', 'fhir-practitioner: a token URL needs --client-id and --client-secret (or FHIR_PRACTITIONER_CLIENT_ID/_SECRET)');
    }
    const scope = ctx.config.scope ?? 'system/Practitioner.read system/PractitionerRole.read';
    const body = new URLSearchParams({ grant_type: 'client_credentials', scope }).toString();
    const answer = await ctx.http.request(
      {
        method: 'POST',
        url: tokenUrl,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
          authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`,
        },
        body,
      },
      (response) => parseJsonBody<{ access_token?: unknown; expires_in?: unknown }>(response),
    );
    if (typeof answer.access_token !== 'string' || answer.access_token === '') {
      throw new CarepipeError('SOURCE_FAILED', `POST ${safeUrl(tokenUrl)} answered without an access_token`, { url: safeUrl(tokenUrl) });
    }
    const seconds = Number(answer.expires_in);
    return { value: answer.access_token, expiresAt: Number.isFinite(seconds) && seconds > 0 ? new Date(Date.now() + seconds * 1000) : null };
  },

  authHeader(token) {
    return { Authorization: `Bearer ${token.value}` };
  },

  async *fetchClinicians(ctx) {
    const base = baseUrl(ctx.config);
    // Loaded here so that listing the backends (--help) does not load the FHIR client.
    const { Client } = await import('fhir-kit-client');
    const client = new Client({ baseUrl: base });
    const pageSize = Number(ctx.config.pageSize ?? 100);
    let url = `${base}/Practitioner?_count=${pageSize}&_revinclude=PractitionerRole:practitioner`;
    let bundle: Bundle | undefined = await ctx.http.authorizedAttempt({ method: 'GET', url }, async (headers, { signal }) => {
      try {
        return (await client.search({
          resourceType: 'Practitioner',
          searchParams: { _count: pageSize, _revinclude: 'PractitionerRole:practitioner' },
          options: { headers, signal },
        })) as unknown as Bundle;
      } catch (err) {
        throw classify(err, `GET ${safeUrl(url)}`);
      }
    });
    while (bundle) {
      if (bundle.resourceType !== 'Bundle') {
        throw new CarepipeError('SOURCE_FAILED', `GET ${safeUrl(url)} did not answer a Bundle`, { url: safeUrl(url) });
      }
      const entries = bundle.entry ?? [];
      const roles = new Map<string, PractitionerRole[]>();
      for (const e of entries) {
        const r = e.resource as PractitionerRole | undefined;
        const ref = r?.resourceType === 'PractitionerRole' ? r.practitioner?.reference : undefined;
        if (!ref) continue;
        const id = ref.split('/').pop()!;
        roles.set(id, [...(roles.get(id) ?? []), r!]);
      }
      let index = 0;
      for (const e of entries) {
        const entry = index++;
        const resource = e.resource as Practitioner | undefined;
        if (resource?.resourceType !== 'Practitioner') continue;
        yield { raw: { practitioner: resource, roles: roles.get(resource.id ?? '') ?? [] }, source: safeUrl(url), entry };
      }
      const next: string | undefined = bundle.link?.find((l) => l.relation === 'next')?.url;
      if (!next) break;
      const current: Bundle = bundle;
      url = next;
      bundle = await ctx.http.authorizedAttempt({ method: 'GET', url: next }, async (headers, { signal }): Promise<Bundle | undefined> => {
        try {
          return (await client.nextPage({ bundle: current as never, options: { headers, signal } })) as unknown as Bundle | undefined;
        } catch (err) {
          throw classify(err, `GET ${safeUrl(next)}`);
        }
      });
    }
  },

  mapToClinician({ practitioner, roles }): MappedClinician {
    const key = text(practitioner.id);
    if (!key) return { problem: { reasonCode: 'ID_MISSING', field: 'Practitioner.id', message: 'a Practitioner without an id cannot be keyed' } };
    const name = pickName(practitioner.name);
    const givenName = text(name?.given?.join(' '));
    const familyName = text(name?.family);
    if (!givenName && !familyName) {
      return { problem: { reasonCode: 'NAME_MISSING', field: 'Practitioner.name', message: 'the Practitioner has no given or family name', key } };
    }
    const role = roles.find((r) => r.active !== false) ?? roles[0];
    const specialty = role?.specialty?.[0];
    return {
      clinician: {
        key,
        givenName,
        familyName,
        title: text(name?.prefix?.join(' ')),
        clinic: text(role?.organization?.display) ?? text(role?.location?.[0]?.display),
        npi: identifierValue(practitioner.identifier, NPI_SYSTEM),
        rpps: identifierValue(practitioner.identifier, RPPS_SYSTEM, 'RPPS'),
        specialty: text(specialty?.text) ?? text(specialty?.coding?.[0]?.display) ?? text(specialty?.coding?.[0]?.code),
        phone: contact([...roles.map((r) => r.telecom), practitioner.telecom], 'phone'),
        email: contact([...roles.map((r) => r.telecom), practitioner.telecom], 'email'),
        active: practitioner.active !== false && (roles.length === 0 || roles.some((r) => r.active !== false)),
      },
    };
  },
};
