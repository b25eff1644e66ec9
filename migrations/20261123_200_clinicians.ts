import type { Knex } from 'knex';

/**
 * Clinicians from provider backends (`import-clinicians`), keyed by provider and the backend's
 * clinician key, and the one stored token per provider site.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('clinicians', (t) => {
    t.text('provider').notNullable();
    // the provider's id, or a key the backend derives from the fields it has (see its documentation)
    t.text('clinician_key').notNullable();
    t.text('given_name');
    t.text('family_name');
    t.text('title');
    t.text('clinic');
    t.text('npi');
    t.text('rpps');
    t.text('specialty');
    t.text('phone');
    t.text('email');
    t.boolean('active').notNullable().defaultTo(true);
    // the day the provider stopped listing the clinician (after a complete listing) or marked them inactive
    t.date('inactive_since');
    t.timestamp('first_seen', { useTz: true }).notNullable();
    t.timestamp('last_seen', { useTz: true }).notNullable();
    // the run that last changed the row
    t.bigInteger('source_run').references('runs.id').onDelete('SET NULL');
    t.primary(['provider', 'clinician_key']);
    t.index(['provider', 'last_seen']);
  });

  await knex.schema.createTable('provider_tokens', (t) => {
    // the provider site the token is for: one token per site
    t.text('site_url').primary();
    t.text('provider').notNullable();
    t.text('token').notNullable();
    t.timestamp('obtained_at', { useTz: true }).notNullable();
    // null: the provider does not say; the token is used until the provider refuses it
    t.timestamp('expires_at', { useTz: true });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('provider_tokens');
  await knex.schema.dropTable('clinicians');
}
