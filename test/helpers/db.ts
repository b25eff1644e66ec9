/**
 * A fresh, migrated database for each test, on either back end:
 * - pglite: a copy of the migrated template folder made by global-setup (its own data folder);
 * - postgres: schemas of its own on the test server (`--db-schema t_…` and the t_…_fhir, … named
 *   after it), dropped afterwards.
 * `flags` and `env` point the CLI (in-process or spawned) at the same database.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach } from 'vitest';
import type { CommonFlags } from '../../src/config.js';
import { resolveSettings } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/connection.js';
import { migrateLatest } from '../../src/db/migrations.js';
import { schemasToDrop } from '../../src/db/schemas.js';
import { testDatabaseUrl } from './env.js';

export type Backend = 'pglite' | 'postgres';
export const BACKENDS: Backend[] = ['pglite', 'postgres'];

export interface TestDatabase {
  backend: Backend;
  /** Flags for `main(argv)` in-process: pass as `--data-dir`/`--database-url`/`--db-schema`. */
  args: string[];
  /** Environment for a spawned `carepipe`. */
  env: Record<string, string>;
  flags: CommonFlags;
  /** A scratch folder for this test (inputs, outputs). */
  tmp: string;
  /** Open the database (the caller closes it; close before running the CLI on PGlite). */
  connect(): Promise<Database>;
  cleanup(): Promise<void>;
}

export async function createTestDatabase(backend: Backend): Promise<TestDatabase> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-test-'));
  if (backend === 'pglite') {
    const template = process.env.CAREPIPE_TEST_TEMPLATE;
    if (!template) throw new Error('CAREPIPE_TEST_TEMPLATE is not set: run the tests through vitest (test/global-setup.ts)');
    const dataDir = path.join(tmp, 'db');
    cpSync(template, dataDir, { recursive: true });
    const flags: CommonFlags = { dataDir };
    return {
      backend,
      args: ['--data-dir', dataDir],
      env: { CAREPIPE_DATA_DIR: dataDir },
      flags,
      tmp,
      connect: () => openDatabase(resolveSettings(flags, {}, tmp)),
      cleanup: async () => rmSync(tmp, { recursive: true, force: true }),
    };
  }
  const url = testDatabaseUrl();
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const flags: CommonFlags = { databaseUrl: url, dbSchema: schema };
  const setup = await openDatabase(resolveSettings(flags, {}, tmp));
  try {
    await migrateLatest(setup);
  } finally {
    await setup.close();
  }
  return {
    backend,
    args: ['--database-url', url, '--db-schema', schema],
    env: { DATABASE_URL: url, CAREPIPE_DB_SCHEMA: schema },
    flags,
    tmp,
    connect: () => openDatabase(resolveSettings(flags, {}, tmp)),
    cleanup: async () => {
      const db = await openDatabase(resolveSettings({ databaseUrl: url }, {}, tmp));
      try {
        // the base schema and the source and bookkeeping schemas named after it (src/db/schemas.ts)
        for (const name of schemasToDrop(schema)) await db.knex.raw('drop schema if exists ?? cascade', [name]);
      } finally {
        await db.close();
        rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}

/**
 * In a describe block: a fresh database before each test, open as `ctx.db`, cleaned after.
 * Tests that run the CLI against it call `ctx.release()` first on PGlite (one process at a time).
 */
export function useTestDatabase(backend: Backend) {
  const ctx = {} as { test: TestDatabase; db: Database; release: () => Promise<void> };
  let open: Database | undefined;
  beforeEach(async () => {
    ctx.test = await createTestDatabase(backend);
    open = await ctx.test.connect();
    ctx.db = open;
    ctx.release = async () => {
      await open?.close();
      open = undefined;
    };
  });
  afterEach(async () => {
    await open?.close();
    open = undefined;
    await ctx.test.cleanup();
  });
  return ctx;
}
