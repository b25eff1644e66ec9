/**
 * knex migrations from the top-level `migrations/` folder. The source lists the folder itself and
 * imports each file, so the same code runs the TypeScript files under vitest and the compiled ones in
 * `dist/` — and migration names carry no extension, so both record the same names.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import type { Database } from './connection.js';

/** `migrations/` beside `src/` (TypeScript) or beside `dist/src/` (compiled). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

interface MigrationFile {
  name: string;
  file: string;
}

export class FolderMigrationSource implements Knex.MigrationSource<MigrationFile> {
  constructor(private readonly dir: string = MIGRATIONS_DIR) {}

  async getMigrations(): Promise<MigrationFile[]> {
    return readdirSync(this.dir)
      .filter((file) => /\.(ts|js|mjs)$/.test(file) && !file.endsWith('.d.ts'))
      .sort()
      .map((file) => ({ name: file.replace(/\.(ts|js|mjs)$/, ''), file: path.join(this.dir, file) }));
  }

  getMigrationName(migration: MigrationFile): string {
    return migration.name;
  }

  async getMigration(migration: MigrationFile): Promise<Knex.Migration> {
    return (await import(pathToFileURL(migration.file).href)) as Knex.Migration;
  }
}

export const migrationConfig: Knex.MigratorConfig = {
  migrationSource: new FolderMigrationSource(),
  tableName: 'knex_migrations',
};

export interface MigrationStatus {
  applied: string[];
  pending: string[];
}

export async function migrationStatus(db: Database): Promise<MigrationStatus> {
  const [applied, pending] = (await db.knex.migrate.list(migrationConfig)) as [{ name: string }[], MigrationFile[]];
  return { applied: applied.map((m) => m.name), pending: pending.map((m) => m.name) };
}

/** Bring the schema up to date. Returns the names of the migrations that ran (empty when current). */
export async function migrateLatest(db: Database): Promise<{ batch: number; ran: string[] }> {
  const [batch, ran] = (await db.knex.migrate.latest(migrationConfig)) as [number, string[]];
  return { batch, ran };
}

export async function migrateRollback(db: Database): Promise<{ batch: number; ran: string[] }> {
  const [batch, ran] = (await db.knex.migrate.rollback(migrationConfig)) as [number, string[]];
  return { batch, ran };
}

/**
 * The embedded database is the user's own: bring it up to date quietly. A server is shared, so a
 * command never changes its schema on the side; it stops and says to run `carepipe migrate`.
 */
export async function ensureSchemaCurrent(db: Database): Promise<void> {
  if (db.kind === 'pglite') {
    await migrateLatest(db);
    return;
  }
  const { pending } = await migrationStatus(db);
  if (pending.length > 0) {
    throw new CarepipeError(
      'SCHEMA_BEHIND',
      `the database schema is behind (${pending.length} migration${pending.length === 1 ? '' : 's'} pending): run \`carepipe migrate\` first`,
    );
  }
}
