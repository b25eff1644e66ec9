/**
 * For people who prefer the knex CLI (`npx knex --knexfile knexfile.ts migrate:latest`, with a
 * TypeScript loader such as tsx). Uses DATABASE_URL; the same migration source as `carepipe migrate`,
 * so both record the same migration names. carepipe itself does not read this file.
 */
import type { Knex } from 'knex';
import { FolderMigrationSource } from './src/db/migrations.js';

const config: Knex.Config = {
  client: 'pg',
  connection: process.env.DATABASE_URL,
  migrations: { migrationSource: new FolderMigrationSource(), tableName: 'knex_migrations' },
};

export default config;
