/**
 * Clinicians from a FHIR R4 server through the shared FHIR search paging (src/fhir/client/search.ts). Two searches, each followed page by page:
 * first `PractitionerRole` (the clinic, specialty and contacts of each practitioner; one role kept per
 * practitioner, the first active one), then `Practitioner`, each joined with its role as it streams by.
 * Only standard search (`_count` and `next` links) is used, so any server serves. The search returns
 * every practitioner, so the listing is complete: one no longer returned is marked inactive.
 *
 * The clinician key is the Practitioner's logical id. NPI comes from the identifier with system
 * `http://hl7.org/fhir/sid/us-npi`, RPPS from `urn:oid:1.2.250.1.71.4.2.1` (or an identifier typed
 * `RPPS`). Authentication is optional: with a client id, SMART Backend Services through the shared
 * SMART module (src/fhir/client/auth.ts: client_credentials with a private_key_jwt assertion; token
 * endpoint from --token-url or the server's .well-known/smart-configuration), the token stored and sent
 * as `Authorization: Bearer`.
 */
import { readFileSync } from 'node:fs';
import type { ContactPoint, HumanName, Identifier, Practitioner, PractitionerRole } from 'fhir/r4.js';
import { CarepipeError } from '../../errors.js';
import { parseJsonBody } from '../../http/client.js';
import { accessTokenOf, smartConfigurationUrl, smartSigner, tokenEndpointOf, tokenRequestBody, TOKEN_REQUEST_HEADERS } from '../../fhir/client/auth.js';
import { fetchBundleOnce, searchPages, searchUrl } from '../../fhir/client/search.js';
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

/** Every resource of a search, page after page (the shared paging); each page one call through the session. */
async function* searchResources<R extends { resourceType: string }>(
  ctx: BackendContext,
  resourceType: string,
  pageSize: number,
): AsyncGenerator<{ resource: R; source: string; entry: number }> {
  const first = searchUrl(baseUrl(ctx.config), resourceType, { _count: String(pageSize) });
  const getPage = (url: string) =>
    ctx.http.authorizedAttempt({ method: 'GET', url }, async (headers, { signal, timeoutMs, policy }) => {
      const { response, bundle } = await fetchBundleOnce(url, { headers, signal, timeoutMs, policy, passStatuses: [401] });
      if (!bundle) throw new TokenRejectedError(`HTTP ${response.status}`, response.status);
      return bundle;
    });
  for await (const { url, bundle } of searchPages(first, getPage)) {
    const source = maskUrl(url);
    let entry = 0;
    for (const e of bundle.entry ?? []) {
      const index = entry++;
      if (e.resource?.resourceType === resourceType) yield { resource: e.resource as unknown as R, source, entry: index };
    }
  }
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
    { name: 'privateKey', flag: '--private-key', env: 'FHIR_PRACTITIONER_PRIVATE_KEY', description: 'PEM (PKCS #8) or JWK file of the client key', secret: true },
    { name: 'keyAlgorithm', env: 'FHIR_PRACTITIONER_KEY_ALGORITHM', description: 'signing algorithm of the client key (default: from the key, RS384 for RSA, ES384 for P-384)' },
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
    const signer = smartSigner(clientId, pem, { alg: ctx.config.keyAlgorithm, kid: ctx.config.keyId });
    let tokenUrl = ctx.config.tokenUrl;
    if (!tokenUrl) {
      const url = smartConfigurationUrl(baseUrl(ctx.config));
      tokenUrl = tokenEndpointOf(await ctx.http.request({ method: 'GET', url, headers: { accept: 'application/json' } }, (r) => parseJsonBody<{ token_endpoint?: unknown }>(r)), url, '--token-url');
    }
    const endpoint = tokenUrl;
    const scope = ctx.config.scope ?? 'system/Practitioner.read system/PractitionerRole.read';
    // The body is built again for each attempt: a server refuses a jti it has seen.
    const token = await ctx.http.request(
      { method: 'POST', url: endpoint, tokenEndpoint: true, headers: { ...TOKEN_REQUEST_HEADERS }, body: () => tokenRequestBody(signer, endpoint, scope) },
      (response) => accessTokenOf(response, endpoint),
    );
    return { value: token.accessToken, expiresAt: token.expiresInSeconds ? new Date(Date.now() + token.expiresInSeconds * 1000) : null };
  },

  authHeader(token) {
    return { Authorization: `Bearer ${token.value}` };
  },

  async *fetchClinicians(ctx) {
    const pageSize = Number(ctx.config.pageSize ?? 100);
    // One role per practitioner (the first active one): small, and the join needs it before the practitioner.
    const roles = new Map<string, PractitionerRole>();
    for await (const { resource } of searchResources<PractitionerRole>(ctx, 'PractitionerRole', pageSize)) {
      const id = resource.practitioner?.reference?.split('/').pop();
      if (!id) continue;
      const kept = roles.get(id);
      if (!kept || (kept.active === false && resource.active !== false)) roles.set(id, resource);
    }
    for await (const { resource, source, entry } of searchResources<Practitioner>(ctx, 'Practitioner', pageSize)) {
      const role = roles.get(resource.id ?? '');
      yield { raw: { practitioner: resource, roles: role ? [role] : [] }, source, entry };
    }
  },

  mapToClinician({ practitioner, roles }): MappedClinician {
    const key = text(practitioner.id);
    if (!key) return { ok: false, reason: 'MISSING_ID', field: 'Practitioner.id', message: 'a Practitioner without an id cannot be keyed' };
    const name = pickName(practitioner.name);
    const givenName = text(name?.given?.join(' '));
    const familyName = text(name?.family);
    if (!givenName && !familyName) {
      return { ok: false, reason: 'NAME_MISSING', field: 'Practitioner.name', message: 'the Practitioner has no given or family name', key };
    }
    const role = roles.find((r) => r.active !== false) ?? roles[0];
    const specialty = role?.specialty?.[0];
    return {
      ok: true,
      key,
      value: {
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
