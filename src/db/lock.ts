/**
 * No overlapping runs. On a server, a session-level advisory lock per command and target, held on a
 * connection of its own: Postgres releases it when the session ends, so a killed process cannot leave
 * it behind. The embedded database is already held by one process at a time (see connection.ts).
 */
import { CarepipeError } from '../errors.js';
import type { Database } from './connection.js';

export type Release = () => Promise<void>;

export async function acquireRunLock(db: Database, name: string, options: { wait?: boolean } = {}): Promise<Release> {
  if (db.kind === 'pglite') return async () => undefined;
  const client = db.knex.client as {
    acquireConnection(): Promise<unknown>;
    releaseConnection(connection: unknown): Promise<void>;
  };
  const connection = await client.acquireConnection();
  // current_schema() in the key: two schemas on one server (tests, tenants) do not block each other.
  const key = `hashtext(current_schema() || ':' || ?)`;
  try {
    if (options.wait) {
      await db.knex.raw(`select pg_advisory_lock(${key})`, [name]).connection(connection);
    } else {
      const result = await db.knex.raw<{ rows: { locked: boolean }[] }>(`select pg_try_advisory_lock(${key}) as locked`, [name]).connection(connection);
      if (!result.rows[0]?.locked) {
        throw new CarepipeError('LOCKED', `another '${name}' run holds the lock; try again later or pass --wait`);
      }
    }
  } catch (err) {
    await client.releaseConnection(connection);
    throw err;
  }
  return async () => {
    try {
      await db.knex.raw(`select pg_advisory_unlock(${key})`, [name]).connection(connection);
    } finally {
      await client.releaseConnection(connection);
    }
  };
}
