/**
 * Clinicians from a FHIR R4 server through fhir-kit-client. Two searches, each followed page by page:
 * first `PractitionerRole` (the clinic, specialty and contacts of each practitioner; one role kept per
 * practitioner, the first active one), then `Practitioner`, each joined with its role as it streams by.
 * Only standard search (`_count` and `next` links) is used, so any server serves. The search returns
 * every practitioner, so the listing is complete: one no longer returned is marked inactive.
 *
 * The clinician key is the Practitioner's logical id. NPI comes from the identifier with system
 * `http://hl7.org/fhir/sid/us-npi`, RPPS from `urn:oid:1.2.250.1.71.4.2.1` (or an identifier typed
 * `RPPS`). Authentication is optional: with a client id, SMART Backend Services (client_credentials
 * with a private_key_jwt assertion signed by the client's key; token endpoint from --token-url or the
 * server's .well-known/smart-configuration), the token stored and sent as `Authorization: Bearer`.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Bundle, ContactPoint, HumanName, Identifier, Practitioner, PractitionerRole } from 'fhir/r4.js';
import { CarepipeError } from '../../errors.js';
import { describeBody, isRetryableStatus, parseJsonBody } from '../../http/client.js';
import { parseRetryAfter, RetryableError } from '../../http/retry.js';
import { text, TokenRejectedError, type BackendConfig, type BackendContext, type ClinicianBackend, type MappedClinician } from '../types.js';
import { maskUrl } from '../../http/mask.js';

export const NPI_SYSTEM = 'http://hl7.org/fhir/sid/us-npi';
export const RPPS_SYSTEM = 'urn:oid:1.2.250.1.71.4.2.1';

/** One practitioner with its role (the first active PractitionerRole that points at it), if any. */
export interface PractitionerWithRoles {
  practitioner: Practitioner;
  roles: PractitionerRole[];
}

function baseUrl(config: BackendConfig): string {
  return config.baseUrl!.replace(/\/+$/, '');
}

async function discoverTokenUrl(ctx: BackendContext): Promise<string> {
  const url = `${baseUrl(ctx.config)}/.well-known/smart-configuration`;
  const config = await ctx.http.request({ method: 'GET', url, headers: { accept: 'application/json' } }, (r) => parseJsonBody<{ token_endpoint?: unknown }>(r));
  if (typeof config.token_endpoint !== 'string') {
    throw new CarepipeError('SOURCE_FAILED', `GET ${maskUrl(url)} names no token_endpoint: give --token-url`, { url: maskUrl(url) });
  }
  return config.token_endpoint;
}

type FhirClient = InstanceType<typeof import('fhir-kit-client').Client>;

/** Every resource of a search, page after page; each page one call through the retry layer. */
async function* searchPages<R extends { resourceType: string }>(
  ctx: BackendContext,
  client: FhirClient,
  resourceType: string,
  pageSize: number,
): AsyncGenerator<{ resource: R; source: string; entry: number }> {
  let url = `${baseUrl(ctx.config)}/${resourceType}?_count=${pageSize}`;
  let bundle: Bundle | undefined = await ctx.http.authorizedAttempt({ method: 'GET', url }, async (headers, { signal }) => {
    try {
      return (await client.search({ resourceType, searchParams: { _count: pageSize }, options: { headers, signal } })) as unknown as Bundle;
    } catch (err) {
      throw classify(err, `GET ${maskUrl(url)}`);
    }
  });
  while (bundle) {
    if (bundle.resourceType !== 'Bundle') throw new CarepipeError('SOURCE_FAILED', `GET ${maskUrl(url)} did not answer a Bundle`, { url: maskUrl(url) });
    const source = maskUrl(url);
    let entry = 0;
    for (const e of bundle.entry ?? []) {
      const index = entry++;
      if (e.resource?.resourceType === resourceType) yield { resource: e.resource as unknown as R, source, entry: index };
    }
    const next: string | undefined = bundle.link?.find((l) => l.relation === 'next')?.url;
    if (!next) return;
    const current: Bundle = bundle;
    url = next;
    bundle = await ctx.http.authorizedAttempt({ method: 'GET', url: next }, async (headers, { signal }): Promise<Bundle | undefined> => {
      try {
        return (await client.nextPage({ bundle: current as never, options: { headers, signal } })) as unknown as Bundle | undefined;
      } catch (err) {
        throw classify(err, `GET ${maskUrl(next)}`);
      }
    });
  }
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
  description: 'FHIR R4 server: Practitioner and PractitionerRole (clinic, specialty); complete listing, so missing ones are marked inactive',
  completeListing: true,
  settings: [
    { name: 'baseUrl', flag: '--base-url', env: 'FHIR_PRACTITIONER_BASE_URL', description: 'FHIR base URL, e.g. https://fhir.example/r4', required: true },
    { name: 'clientId', flag: '--client-id', env: 'FHIR_PRACTITIONER_CLIENT_ID', description: 'SMART backend services client id; none: no authentication' },
    { name: 'privateKey', flag: '--private-key', env: 'FHIR_PRACTITIONER_PRIVATE_KEY', description: 'PEM file (PKCS #8) of the client key', secret: true },
    { name: 'keyAlgorithm', env: 'FHIR_PRACTITIONER_KEY_ALGORITHM', description: 'signing algorithm of the client key: RS384 or ES384', default: 'RS384' },
    { name: 'keyId', env: 'FHIR_PRACTITIONER_KEY_ID', description: 'kid of the client key, when the server wants one' },
    { name: 'tokenUrl', flag: '--token-url', env: 'FHIR_PRACTITIONER_TOKEN_URL', description: 'token endpoint (default: from .well-known/smart-configuration)' },
    { name: 'scope', flag: '--scope', env: 'FHIR_PRACTITIONER_SCOPE', description: 'scope asked for', default: 'system/Practitioner.read system/PractitionerRole.read' },
    { name: 'pageSize', env: 'FHIR_PRACTITIONER_PAGE_SIZE', description: 'resources per search page', default: '100' },
  ],

  siteUrl: (config) => baseUrl(config),

  async authenticate(ctx) {
    const { clientId, privateKey } = ctx.config;
    if (!clientId) return null;
    if (!privateKey) {
      throw new CarepipeError('CONFIG_INVALID', 'fhir-practitioner: a client id needs --private-key FILE (or FHIR_PRACTITIONER_PRIVATE_KEY)');
    }
    let pem: string;
    try {
      pem = readFileSync(privateKey, 'utf8');
    } catch (err) {
      throw new CarepipeError('CONFIG_INVALID', `fhir-practitioner: cannot read the private key file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        file: privateKey,
      });
    }
    const { importPKCS8, SignJWT } = await import('jose');
    const alg = ctx.config.keyAlgorithm ?? 'RS384';
    const key = await importPKCS8(pem, alg).catch((err: Error) => {
      throw new CarepipeError('CONFIG_INVALID', `fhir-practitioner: the private key is not a PKCS #8 ${alg} key (${err.message})`, { file: privateKey });
    });
    const tokenUrl = ctx.config.tokenUrl ?? (await discoverTokenUrl(ctx));
    // A new assertion for every attempt: a server refuses a jti it has seen.
    const body = async () => {
      const assertion = await new SignJWT({})
        .setProtectedHeader({ alg, typ: 'JWT', ...(ctx.config.keyId ? { kid: ctx.config.keyId } : {}) })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(tokenUrl)
        .setJti(randomUUID())
        .setExpirationTime(Math.floor(Date.now() / 1000) + 240)
        .sign(key);
      return new URLSearchParams({
        grant_type: 'client_credentials',
        scope: ctx.config.scope ?? 'system/Practitioner.read system/PractitionerRole.read',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      }).toString();
    };
    const answer = await ctx.http.request(
      { method: 'POST', url: tokenUrl, headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, body },
      (response) => parseJsonBody<{ access_token?: unknown; expires_in?: unknown }>(response),
    );
    if (typeof answer.access_token !== 'string' || answer.access_token === '') {
      throw new CarepipeError('SOURCE_FAILED', `POST ${maskUrl(tokenUrl)} answered without an access_token`, { url: maskUrl(tokenUrl) });
    }
    const seconds = Number(answer.expires_in);
    return { value: answer.access_token, expiresAt: Number.isFinite(seconds) && seconds > 0 ? new Date(Date.now() + seconds * 1000) : null };
  },

  authHeader(token) {
    return { Authorization: `Bearer ${token.value}` };
  },

  async *fetchClinicians(ctx) {
    // Loaded here so that listing the backends (--help) does not load the FHIR client.
    const { Client } = await import('fhir-kit-client');
    const client = new Client({ baseUrl: baseUrl(ctx.config) });
    const pageSize = Number(ctx.config.pageSize ?? 100);
    // One role per practitioner (the first active one): small, and the join needs it before the practitioner.
    const roles = new Map<string, PractitionerRole>();
    for await (const { resource } of searchPages<PractitionerRole>(ctx, client, 'PractitionerRole', pageSize)) {
      const id = resource.practitioner?.reference?.split('/').pop();
      if (!id) continue;
      const kept = roles.get(id);
      if (!kept || (kept.active === false && resource.active !== false)) roles.set(id, resource);
    }
    for await (const { resource, source, entry } of searchPages<Practitioner>(ctx, client, 'Practitioner', pageSize)) {
      const role = roles.get(resource.id ?? '');
      yield { raw: { practitioner: resource, roles: role ? [role] : [] }, source, entry };
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
