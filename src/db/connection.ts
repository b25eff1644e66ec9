/**
 * One way to open the database, whichever it is: the embedded PGlite in a data folder (the default)
 * or a Postgres server named by a URL. Both come back as a knex instance with the same type parsing,
 * so the rest of carepipe never asks which one it has.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import { maskUrl, type Settings } from '../config.js';
import { schemaLayout, searchPath, type SchemaLayout } from './schemas.js';
import { holdPrivateUmask, PRIVATE_DIR_MODE, tightenFolder } from '../io/private-mode.js';

export type DatabaseKind = 'pglite' | 'postgres';

export interface Database {
  knex: Knex;
  kind: DatabaseKind;
  /** Where the data lives, with any password masked: safe to print. */
  where: string;
  /** The base schema: `--db-schema NAME`, else public. */
  schema: string;
  /** This open created the embedded database (its folder held none): the CLI says where. */
  created?: boolean;
  /** The schema of each source and of carepipe's bookkeeping (see schemas.ts). */
  schemas: SchemaLayout;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Wait for another process holding the embedded database instead of failing with exit 3. */
  wait?: boolean;
  /**
   * false: a folder without an embedded database is an error (DATABASE_NOT_FOUND) instead of a new
   * empty database, so that a read-only command run from the wrong folder says so.
   */
  create?: boolean;
  /** Told when an embedded database folder had to be made private (files others could read). */
  onWarning?: (message: string) => void;
}

/** In-memory embedded database, for tests and `--data-dir memory://`. */
export const MEMORY = 'memory://';

// Same parsing on both back ends: int8 as a JS number (counts, ids), date as its 'YYYY-MM-DD' text
// (a Date would shift it by the local timezone), numeric kept as text so precision survives.
const INT8 = 20;
const DATE = 1082;
const NUMERIC = 1700;
const parsers: Record<number, (value: string) => unknown> = {
  [INT8]: (value) => Number(value),
  [DATE]: (value) => value,
  [NUMERIC]: (value) => value,
};

// knex prints pool errors to the console itself; ours reach the user once, as a CarepipeError.
const quietLog = { warn: () => undefined, error: () => undefined, deprecate: () => undefined, debug: () => undefined };

/** libpq falls back to the operating-system user when the URL names none; pg needs it said. */
function withDefaultUser(url: string): string {
  const parsed = new URL(url);
  if (parsed.username) return url;
  try {
    parsed.username = os.userInfo().username;
  } catch {
    return url;
  }
  return parsed.toString();
}

export async function openDatabase(settings: Settings, options: OpenOptions = {}): Promise<Database> {
  return settings.databaseUrl
    ? openServer(settings.databaseUrl, settings.dbSchema)
    : openEmbedded(settings.dataDir, settings.dbSchema, options);
}

async function openServer(url: string, schema: string | undefined): Promise<Database> {
  const schemas = schemaLayout(schema ?? 'public');
  const pg = await import('pg');
  const types = {
    getTypeParser: (oid: number, format?: string) =>
      parsers[oid] ?? pg.default.types.getTypeParser(oid, format as 'text'),
  };
  const knex = knexFactory({
    client: 'pg',
    connection: { connectionString: withDefaultUser(url), types, application_name: 'carepipe' } as Knex.PgConnectionConfig,
    log: quietLog,
    pool: { min: 0, max: 4 },
    searchPath: searchPath(schemas),
  });
  try {
    // the sources' schemas are the migrations' to create: a database not yet migrated has none
    if (schema) await knex.raw('create schema if not exists ??', [schema]);
    // reached now, so that an unreachable server fails here as DB_UNREACHABLE (exit 4)
    else await knex.raw('select 1');
    return {
      knex,
      kind: 'postgres',
      where: maskUrl(url),
      schema: schemas.base,
      schemas,
      close: () => knex.destroy(),
    };
  } catch (err) {
    await knex.destroy().catch(() => undefined);
    throw new CarepipeError('DB_UNREACHABLE', `cannot reach the database at ${maskUrl(url)}: ${(err as Error).message}`, {
      url: maskUrl(url),
    }, { cause: err });
  }
}

async function openEmbedded(dataDir: string, schema: string | undefined, options: OpenOptions): Promise<Database> {
  const [{ PGlite }, { default: ClientPGLite }] = await Promise.all([import('@electric-sql/pglite'), import('knex-pglite')]);
  const memory = dataDir === MEMORY;
  let release: (() => Promise<void>) | undefined;
  // PG_VERSION is the first file initdb writes: without it the folder holds no database.
  const created = !memory && !existsSync(path.join(dataDir, 'PG_VERSION'));
  if (created && options.create === false) {
    throw new CarepipeError(
      'DATABASE_NOT_FOUND',
      `no embedded database in ${dataDir}; point at yours with --data-dir DIR, CAREPIPE_HOME (its db/ folder) or DATABASE_URL (a Postgres server), or run carepipe from the folder holding .carepipe/`,
      { file: dataDir },
    );
  }
  let releaseUmask: (() => void) | undefined;
  if (!memory) {
    // Held while the database is open: PGlite creates WAL segments and tables for as long as it runs.
    releaseUmask = holdPrivateUmask();
    try {
      await mkdir(dataDir, { recursive: true, mode: PRIVATE_DIR_MODE });
      const unlock = await lockDataDir(dataDir, options.wait ?? false);
      release = async () => {
        await unlock();
        releaseUmask?.();
      };
      // A database made by an older carepipe, or copied in with loose modes: tightened now, said once.
      const tightened = await tightenFolder(dataDir);
      if (tightened > 0) {
        options.onWarning?.(`the embedded database in ${dataDir} was open to other users: made ${tightened} files and folders private (0600, 0700)`);
      }
    } catch (err) {
      await release?.();
      releaseUmask();
      throw err;
    }
  }
  const schemas = schemaLayout(schema ?? 'public');
  try {
    const pglite = new PGlite(memory ? undefined : dataDir, { parsers });
    await pglite.waitReady;
    // A new database is unpacked with modes set explicitly (0666, which the umask does not narrow).
    if (!memory) await tightenFolder(dataDir);
    const knex = knexFactory({
      client: ClientPGLite as unknown as typeof Knex.Client,
      connection: { pglite } as unknown as Knex.StaticConnectionConfig,
      log: quietLog,
      searchPath: searchPath(schemas),
    });
    if (schema) await knex.raw('create schema if not exists ??', [schema]);
    return {
      knex,
      kind: 'pglite',
      where: memory ? 'embedded (in memory)' : `embedded (${dataDir})`,
      schema: schemas.base,
      schemas,
      created,
      close: async () => {
        await knex.destroy();
        // Whatever was created where the umask could not be held is tightened before it is left.
        if (!memory) await tightenFolder(dataDir).catch(() => undefined);
        await release?.();
      },
    };
  } catch (err) {
    await release?.();
    throw new CarepipeError('DB_UNREACHABLE', `cannot open the embedded database in ${dataDir}: ${(err as Error).message}`, {
      file: dataDir,
    }, { cause: err });
  }
}

/**
 * PGlite is one process's database: a second process opening the same folder would corrupt it. A lock
 * file beside the folder keeps it to one carepipe at a time; it is refreshed while held and counts as
 * stale after 30 s without refresh, so a killed process cannot leave it behind for long.
 */
async function lockDataDir(dataDir: string, wait: boolean): Promise<() => Promise<void>> {
  const lockfile = await import('proper-lockfile');
  const lockfilePath = path.join(path.dirname(dataDir), `${path.basename(dataDir)}.lock`);
  try {
    const releaseLock = await lockfile.lock(dataDir, {
      lockfilePath,
      realpath: false,
      stale: 30_000,
      update: 10_000,
      retries: wait ? { retries: 100_000, minTimeout: 200, maxTimeout: 2_000 } : 0,
      onCompromised: () => undefined,
    });
    // The lock is a folder (mkdir); it holds nothing but says who works on patient data.
    await chmod(lockfilePath, PRIVATE_DIR_MODE).catch(() => undefined);
    return async () => {
      await releaseLock().catch(() => undefined);
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new CarepipeError(
        'LOCKED',
        `another carepipe run is using the embedded database in ${dataDir}; try again later or pass --wait`,
        { file: dataDir },
      );
    }
    throw err;
  }
}
