/**
 * For people who prefer the knex CLI (`npx knex --knexfile knexfile.ts migrate:latest`, with a
 * TypeScript loader such as tsx). Uses DATABASE_URL; the same migration source as `carepipe migrate`,
 * so both record the same migration names. carepipe itself does not read this file.
 */
import type { Knex } from 'knex';
import { FolderMigrationSource } from './src/db/migrations.js';
import { schemaLayout, searchPath } from './src/db/schemas.js';

const config: Knex.Config = {
  client: 'pg',
  connection: process.env.DATABASE_URL,
  // carepipe's own search path (public, then carepipe, fhir, …): the history triggers keep the one
  // they are created with, and migration 950 finds the tables of earlier ones by plain name
  searchPath: searchPath(schemaLayout(process.env.CAREPIPE_DB_SCHEMA || 'public')),
  migrations: { migrationSource: new FolderMigrationSource(), tableName: 'knex_migrations' },
};

export default config;
