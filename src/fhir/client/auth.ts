/**
 * How carepipe authenticates to a FHIR server: none, a bearer token, basic credentials, or SMART Backend
 * Services (OAuth client_credentials with a private-key JWT assertion signed with jose), which is how
 * production servers are reached machine to machine. The SMART pieces (signer, discovery, token request
 * and answer) are exported for the fhir-practitioner clinician backend, which stores its tokens itself.
 * Credentials live only in memory: never logged, never in the ledger, never in an error message.
 */
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { CarepipeError } from '../../errors.js';
import { describeBody, parseJsonBody, request, requestOnce, type HttpResponse } from '../../http/client.js';
import type { HttpPolicy } from '../../http/policy.js';
import { withRetry, type RetryOptions } from '../../http/retry.js';
import { maskUrl } from '../../http/mask.js';

export type FhirAuthConfig =
  | { mode: 'none' }
  | { mode: 'bearer'; token: string }
  | { mode: 'basic'; username: string; password: string }
  | {
      mode: 'smart';
      clientId: string;
      /** The private key: PEM (PKCS#8 or PKCS#1/SEC1) or a JWK / JWKS JSON text holding `d`. */
      privateKey: string;
      /** Token endpoint; discovered from `{base}/.well-known/smart-configuration` when absent. */
      tokenUrl?: string;
      scope?: string;
    };

/** The credential source of one FHIR server connection. */
export interface FhirAuth {
  readonly mode: FhirAuthConfig['mode'];
  /** The Authorization header value, or undefined without authentication. */
  header(): Promise<string | undefined>;
  /** Get a fresh credential after a 401; false when there is nothing to refresh (static credentials). */
  refresh(): Promise<boolean>;
  /** Tokens requested from the SMART token endpoint so far. */
  readonly tokensRequested: number;
}

type RetrySettings = Omit<RetryOptions, 'what'>;

/** Build the auth of a server from its configuration; SMART keys are parsed at once so a bad key fails early. */
export function createFhirAuth(config: FhirAuthConfig, baseUrl: string, retry: RetrySettings = {}, policy?: HttpPolicy): FhirAuth {
  switch (config.mode) {
    case 'none':
      return { mode: 'none', header: async () => undefined, refresh: async () => false, tokensRequested: 0 };
    case 'bearer':
      return { mode: 'bearer', header: async () => `Bearer ${config.token}`, refresh: async () => false, tokensRequested: 0 };
    case 'basic': {
      const value = 'Basic ' + Buffer.from(`${config.username}:${config.password}`, 'utf8').toString('base64');
      return { mode: 'basic', header: async () => value, refresh: async () => false, tokensRequested: 0 };
    }
    case 'smart':
      return new SmartBackendAuth(config, baseUrl, retry, policy);
  }
}

/** Signing algorithm for a key, as SMART Backend Services asks (RS384 or ES384). */
function algorithmFor(key: KeyObject): string {
  if (key.asymmetricKeyType === 'rsa') return 'RS384';
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return curve === 'prime256v1' ? 'ES256' : curve === 'secp521r1' ? 'ES512' : 'ES384';
  }
  throw new CarepipeError('CONFIG_INVALID', `SMART private key: ${key.asymmetricKeyType} keys are not supported (use RSA or EC)`, {});
}

/** Read a private key from PEM or JWK/JWKS text. */
export function parsePrivateKey(text: string): { key: KeyObject; kid?: string } {
  const trimmed = text.trim();
  try {
    if (trimmed.startsWith('{')) {
      const json = JSON.parse(trimmed) as { keys?: Record<string, unknown>[]; d?: string; kid?: string };
      const jwk = json.keys ? json.keys.find((k) => typeof k.d === 'string') : json;
      if (!jwk || typeof jwk.d !== 'string') throw new Error('the JWK has no private part (d)');
      return { key: createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' }), kid: typeof jwk.kid === 'string' ? jwk.kid : undefined };
    }
    return { key: createPrivateKey(trimmed) };
  } catch (err) {
    // Never echo the key text.
    throw new CarepipeError('CONFIG_INVALID', `SMART private key cannot be read: ${(err as Error).message.split('\n')[0]}`, {});
  }
}

/** What a SMART Backend Services client signs its token requests with. */
export interface SmartSigner {
  clientId: string;
  key: KeyObject;
  alg: string;
  kid?: string;
}

/**
 * The signer of a client: its private key (PEM or JWK text) and the algorithm, the key's own unless
 * the configuration names one (RS384, ES384, …); `kid` from the JWK unless given.
 */
export function smartSigner(clientId: string, privateKey: string, overrides: { alg?: string; kid?: string } = {}): SmartSigner {
  const { key, kid } = parsePrivateKey(privateKey);
  return { clientId, key, alg: overrides.alg ?? algorithmFor(key), kid: overrides.kid ?? kid };
}

/** `{base}/.well-known/smart-configuration`, where a server names its token endpoint. */
export function smartConfigurationUrl(baseUrl: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/.well-known/smart-configuration`;
}

/** The token endpoint named by a smart-configuration answer; `flag` is what the user can pass instead. */
export function tokenEndpointOf(configuration: { token_endpoint?: unknown }, url: string, flag: string): string {
  if (typeof configuration.token_endpoint !== 'string' || configuration.token_endpoint === '') {
    throw new CarepipeError('SOURCE_FAILED', `${maskUrl(url)} names no token_endpoint: pass ${flag}`, { url: maskUrl(url) });
  }
  return configuration.token_endpoint;
}

/** The form body of one token request, with a newly signed assertion (a jti must not be reused). */
export async function tokenRequestBody(signer: SmartSigner, tokenUrl: string, scope: string): Promise<string> {
  const header: { alg: string; typ: string; kid?: string } = { alg: signer.alg, typ: 'JWT' };
  if (signer.kid) header.kid = signer.kid;
  let assertion: string;
  try {
    assertion = await new SignJWT({})
      .setProtectedHeader(header)
      .setIssuer(signer.clientId)
      .setSubject(signer.clientId)
      .setAudience(tokenUrl)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(signer.key);
  } catch (err) {
    throw new CarepipeError('CONFIG_INVALID', `SMART private key cannot sign with ${signer.alg}: ${(err as Error).message.split('\n')[0]}`, {});
  }
  return new URLSearchParams({
    grant_type: 'client_credentials',
    scope,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  }).toString();
}

/** Headers of a token request. */
export const TOKEN_REQUEST_HEADERS = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' } as const;

/** The access token of a token endpoint's answer, or a final error in the server's words (assertions masked). */
export function accessTokenOf(response: HttpResponse, tokenUrl: string): { accessToken: string; expiresInSeconds: number | undefined } {
  if (response.status !== 200) {
    throw new CarepipeError(
      'SOURCE_FAILED',
      `SMART token request to ${maskUrl(tokenUrl)} refused (HTTP ${response.status})${describeBody(response.text).replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '****')}`,
      { url: maskUrl(tokenUrl), status: response.status },
    );
  }
  const token = parseJsonBody<{ access_token?: unknown; expires_in?: unknown }>(response);
  if (typeof token.access_token !== 'string' || token.access_token === '') {
    throw new CarepipeError('SOURCE_FAILED', `SMART token endpoint ${maskUrl(tokenUrl)} sent no access_token`, { url: maskUrl(tokenUrl) });
  }
  const seconds = Number(token.expires_in);
  return { accessToken: token.access_token, expiresInSeconds: Number.isFinite(seconds) && seconds > 0 ? seconds : undefined };
}

class SmartBackendAuth implements FhirAuth {
  readonly mode = 'smart' as const;
  tokensRequested = 0;
  private accessToken?: string;
  private expiresAt = 0;
  private tokenUrl?: string;
  private readonly signer: SmartSigner;
  private pending?: Promise<string>;

  constructor(
    private readonly config: Extract<FhirAuthConfig, { mode: 'smart' }>,
    private readonly baseUrl: string,
    private readonly retry: RetrySettings,
    private readonly policy?: HttpPolicy,
  ) {
    this.signer = smartSigner(config.clientId, config.privateKey);
    this.tokenUrl = config.tokenUrl;
  }

  async header(): Promise<string> {
    // Renew a little before expiry rather than collect a 401.
    if (!this.accessToken || Date.now() > this.expiresAt - 10_000) await this.obtain();
    return `Bearer ${this.accessToken}`;
  }

  async refresh(): Promise<boolean> {
    this.accessToken = undefined;
    await this.obtain();
    return true;
  }

  private obtain(): Promise<string> {
    // One token request at a time, shared by concurrent callers.
    this.pending ??= this.requestToken().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async discover(): Promise<string> {
    if (this.tokenUrl) return this.tokenUrl;
    const url = smartConfigurationUrl(this.baseUrl);
    const configuration = await request(url, { ...this.retry, policy: this.policy, headers: { accept: 'application/json' }, parse: (r) => parseJsonBody<{ token_endpoint?: unknown }>(r) });
    this.tokenUrl = tokenEndpointOf(configuration, url, '--smart-token-url');
    return this.tokenUrl;
  }

  private async requestToken(): Promise<string> {
    const tokenUrl = await this.discover();
    this.tokensRequested++;
    const response = await withRetry(
      async () =>
        requestOnce(tokenUrl, {
          method: 'POST',
          headers: { ...TOKEN_REQUEST_HEADERS },
          body: await tokenRequestBody(this.signer, tokenUrl, this.config.scope ?? 'system/*.read'),
          passStatuses: [400, 401, 403],
          signal: this.retry.signal,
          policy: this.policy,
          tokenEndpoint: true,
        }),
      { ...this.retry, what: `POST ${maskUrl(tokenUrl)}` },
    );
    const token = accessTokenOf(response, tokenUrl);
    this.accessToken = token.accessToken;
    this.expiresAt = Date.now() + (token.expiresInSeconds ?? 300) * 1000;
    return this.accessToken;
  }
}
