/**
 * The embedded database over the Postgres wire protocol, for psql, DBeaver or Metabase, through
 * PGlite's own socket server (@electric-sql/pglite-socket). PGlite is one session: the server queues
 * the clients' queries and keeps a client's transaction to itself until it ends, so several clients
 * may connect but share the session's settings (search_path included).
 */
import type { PGlite } from '@electric-sql/pglite';
import { CarepipeError } from '../errors.js';
import type { Database } from './connection.js';

export interface ServeOptions {
  host: string;
  port: number;
  /** Clients connected at once; more are refused until one leaves. */
  maxConnections: number;
  /** Aborted (SIGINT/SIGTERM): stop accepting, close the clients, return. */
  signal: AbortSignal;
  /** Called once listening, with the address clients connect to. */
  onListening(address: { host: string; port: number }): void;
}

export interface ServeSummary {
  host: string;
  port: number;
  /** Clients that connected while serving. */
  connections: number;
}

/** Serves `db` (the embedded database) until `signal` aborts. */
export async function serveEmbedded(db: Database, options: ServeOptions): Promise<ServeSummary> {
  if (db.kind !== 'pglite') {
    throw new CarepipeError('USAGE', 'db serve shares the embedded database; a Postgres server already takes connections: connect to it directly');
  }
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const pglite = (db.knex.client as { config: { connection: { pglite: PGlite } } }).config.connection.pglite;
  const server = new PGLiteSocketServer({ db: pglite, host: options.host, port: options.port, maxConnections: options.maxConnections });
  let connections = 0;
  server.addEventListener('connection', () => (connections += 1));
  try {
    await server.start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new CarepipeError('USAGE', `cannot listen on ${options.host}:${options.port} (${code}): choose another --port or --host`, {}, { cause: err });
    }
    throw err;
  }
  // getServerConn() is "host:port", the port being the one bound (useful with --port 0).
  const port = Number(server.getServerConn().split(':').pop());
  try {
    options.onListening({ host: options.host, port });
    if (!options.signal.aborted) {
      await new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
  } finally {
    await server.stop();
  }
  return { host: options.host, port, connections };
}
