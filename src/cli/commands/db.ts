import { Command, InvalidArgumentError } from 'commander';
import type { CommonFlags } from '../../config.js';
import { CarepipeError } from '../../errors.js';
import { prepare, runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';

interface ServeFlags extends CommonFlags {
  host: string;
  port: number;
  maxConnections: number;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('--port must be a port number, 0 to 65535 (0: any free port)');
  return n;
}

/** `carepipe db …`: the embedded database itself. */
export function registerDb(program: Command, state: CliState): void {
  const group = program.command('db').description('the embedded database itself');
  withCommonOptions(
    group
      .command('serve')
      .description('let psql, DBeaver or Metabase connect to the embedded database over the Postgres protocol, until Ctrl-C or SIGTERM (exit 0)')
      .option('--port <port>', 'port to listen on (0: any free port)', port, 5433)
      .option('--host <host>', 'address to listen on; 127.0.0.1 keeps it to this machine', '127.0.0.1')
      .option('--max-connections <n>', 'clients at once (they share one session)', wholeNumber('--max-connections'), 8),
  ).action(async (flags: ServeFlags) => {
    if (prepare(state, flags).settings.databaseUrl) {
      throw new CarepipeError('USAGE', 'db serve shares the embedded database; with DATABASE_URL or --database-url, connect to that server directly');
    }
    await runCommand(state, flags, { name: 'db serve', argv: [], mode: 'read', create: false }, async ({ db, reporter, signal, settings }) => {
      const { serveEmbedded } = await import('../../db/serve.js');
      const served = await serveEmbedded(db, {
        host: flags.host,
        port: flags.port,
        maxConnections: Math.max(1, flags.maxConnections),
        signal,
        onListening: ({ host, port }) => {
          const url = `postgresql://postgres@${host.includes(':') ? `[${host}]` : host}:${port}/postgres`;
          reporter.info('listening', { message: `serving the embedded database in ${settings.dataDir} at ${url} (stop with Ctrl-C)`, url });
          // The socket server asks no password: beyond this machine, anyone who reaches the port reads patient data.
          if (!LOOPBACK.has(host)) reporter.warn('open_to_network', { message: `${host}:${port} takes connections from other machines without a password` });
        },
      });
      // Stopping is how a server ends: a signal here is success (exit 0), not an interrupted run.
      return {
        human: `stopped serving ${settings.dataDir}: ${served.connections} connection${served.connections === 1 ? '' : 's'} served`,
        summary: { host: served.host, port: served.port, connections: served.connections },
        exitCode: 0,
      };
    });
  });
}
