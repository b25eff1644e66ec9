/**
 * How carepipe authenticates to a FHIR server: none, a bearer token, basic credentials, or SMART Backend
 * Services (OAuth client_credentials with a private-key JWT assertion signed with jose), which is how
 * production servers are reached machine to machine. Credentials live only in memory: never logged,
 * never in the ledger, never in an error message.
 */
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { CarepipeError } from '../errors.js';
import { describeBody, parseJsonBody, request, requestOnce } from '../http/client.js';
import { withRetry, type RetryOptions } from '../http/retry.js';
import { maskUrl } from '../http/mask.js';

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
export function createFhirAuth(config: FhirAuthConfig, baseUrl: string, retry: RetrySettings = {}): FhirAuth {
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
      return new SmartBackendAuth(config, baseUrl, retry);
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

class SmartBackendAuth implements FhirAuth {
  readonly mode = 'smart' as const;
  tokensRequested = 0;
  private accessToken?: string;
  private expiresAt = 0;
  private tokenUrl?: string;
  private readonly key: KeyObject;
  private readonly kid?: string;
  private readonly alg: string;
  private pending?: Promise<string>;

  constructor(
    private readonly config: Extract<FhirAuthConfig, { mode: 'smart' }>,
    private readonly baseUrl: string,
    private readonly retry: RetrySettings,
  ) {
    const { key, kid } = parsePrivateKey(config.privateKey);
    this.key = key;
    this.kid = kid;
    this.alg = algorithmFor(key);
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
    const url = `${this.baseUrl.replace(/\/$/, '')}/.well-known/smart-configuration`;
    const config = await request(url, { ...this.retry, headers: { accept: 'application/json' }, parse: (r) => parseJsonBody<{ token_endpoint?: string }>(r) });
    if (typeof config.token_endpoint !== 'string') {
      throw new CarepipeError('SOURCE_FAILED', `${maskUrl(url)} names no token_endpoint: pass --smart-token-url`, { url: maskUrl(url) });
    }
    this.tokenUrl = config.token_endpoint;
    return this.tokenUrl;
  }

  private async requestToken(): Promise<string> {
    const tokenUrl = await this.discover();
    const body = async () => {
      const header: { alg: string; typ: string; kid?: string } = { alg: this.alg, typ: 'JWT' };
      if (this.kid) header.kid = this.kid;
      const assertion = await new SignJWT({})
        .setProtectedHeader(header)
        .setIssuer(this.config.clientId)
        .setSubject(this.config.clientId)
        .setAudience(tokenUrl)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(this.key);
      return new URLSearchParams({
        grant_type: 'client_credentials',
        scope: this.config.scope ?? 'system/*.read',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      }).toString();
    };
    this.tokensRequested++;
    // Each attempt signs a new assertion: a jti must not be reused.
    const response = await withRetry(
      async () =>
        requestOnce(tokenUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: await body(),
          passStatuses: [400, 401, 403],
          signal: this.retry.signal,
        }),
      { ...this.retry, what: `POST ${maskUrl(tokenUrl)}` },
    );
    if (response.status !== 200) {
      throw new CarepipeError(
        'SOURCE_FAILED',
        `SMART token request to ${maskUrl(tokenUrl)} refused (HTTP ${response.status})${describeBody(response.text).replace(/eyJ[\w-]+\.[\w-]+\.[\w-]+/g, '****')}`,
        { url: maskUrl(tokenUrl), status: response.status },
      );
    }
    const token = parseJsonBody<{ access_token?: string; expires_in?: number }>(response);
    if (typeof token.access_token !== 'string') throw new CarepipeError('SOURCE_FAILED', `SMART token endpoint ${maskUrl(tokenUrl)} sent no access_token`, { url: maskUrl(tokenUrl) });
    this.accessToken = token.access_token;
    this.expiresAt = Date.now() + (typeof token.expires_in === 'number' ? token.expires_in : 300) * 1000;
    return this.accessToken;
  }
}
