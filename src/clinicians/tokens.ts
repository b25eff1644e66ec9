/**
 * One stored token per provider site (`provider_tokens`). A run reuses a token that is still valid,
 * which saves an authentication call; the token itself never leaves this table and the request headers.
 */
import type { Knex } from 'knex';
import type { ProviderToken } from './types.js';

/** A token expiring within this margin is treated as expired, so it does not lapse mid-run. */
const EXPIRY_MARGIN_MS = 30_000;

export class TokenStore {
  constructor(
    private readonly knex: Knex | Knex.Transaction,
    /** With --dry-run the store is read, never written. */
    private readonly readOnly = false,
  ) {}

  /** The stored token for `siteUrl` when it is still valid at `now`. */
  async valid(siteUrl: string, now: Date): Promise<ProviderToken | undefined> {
    const row = (await this.knex('provider_tokens').where({ site_url: siteUrl }).first()) as
      | { token: string; expires_at: Date | string | null }
      | undefined;
    if (!row) return undefined;
    const expiresAt = row.expires_at === null ? null : new Date(row.expires_at);
    if (expiresAt && expiresAt.getTime() - EXPIRY_MARGIN_MS <= now.getTime()) return undefined;
    return { value: row.token, expiresAt };
  }

  /** Keep a newly obtained token: it replaces the site's previous one. Committed at once, outside any batch. */
  async save(siteUrl: string, provider: string, token: ProviderToken, obtainedAt: Date): Promise<void> {
    if (this.readOnly) return;
    await this.knex('provider_tokens')
      .insert({ site_url: siteUrl, provider, token: token.value, obtained_at: obtainedAt, expires_at: token.expiresAt })
      .onConflict('site_url')
      .merge(['provider', 'token', 'obtained_at', 'expires_at']);
  }

  /** Forget a token the provider refused. */
  async discard(siteUrl: string): Promise<void> {
    if (this.readOnly) return;
    await this.knex('provider_tokens').where({ site_url: siteUrl }).delete();
  }
}
