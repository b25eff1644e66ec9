/**
 * Once per test run: check that the Postgres server is reachable (the suite fails rather than skip
 * it), and build a migrated embedded-database folder that each PGlite test copies instead of paying
 * for initdb every time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { testDatabaseUrl } from './helpers/env.js';

export default async function setup(): Promise<() => Promise<void>> {
  const url = testDatabaseUrl();
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (err) {
    throw new Error(
      `the test Postgres server at ${url} is not reachable (${(err as Error).message}). ` +
        'Start it (see .ci/run) or set TEST_DATABASE_URL; the server tests are never skipped.',
    );
  } finally {
    await client.end().catch(() => undefined);
  }

  const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-template-'));
  const templateDir = path.join(dir, 'db');
  // Migrate through the same code the CLI uses.
  const { openDatabase } = await import('../src/db/connection.js');
  const { migrateLatest } = await import('../src/db/migrations.js');
  const { resolveSettings } = await import('../src/config.js');
  const db = await openDatabase(resolveSettings({ dataDir: templateDir }, {}, dir));
  await migrateLatest(db);
  await db.close();
  void PGlite;
  process.env.CAREPIPE_TEST_TEMPLATE = templateDir;
  return async () => {
    rmSync(dir, { recursive: true, force: true });
  };
}
