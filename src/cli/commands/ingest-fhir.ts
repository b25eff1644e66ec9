import { Command } from 'commander';
import type { CommonFlags } from '../../config.js';
import { CarepipeError } from '../../errors.js';
import { resolveFhirAuth, type FhirAuthFlags } from '../../fhir/read/server.js';

import { runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';
import { allowedOrigins, withHttpOptions, type HttpFlags } from '../http-options.js';
import { maskUrl } from '../../http/mask.js';

interface IngestFhirFlags extends CommonFlags, FhirAuthFlags, HttpFlags {
  view: string[];
  fullRefresh?: boolean;
  batchSize?: number;
  workers?: number;
  queue?: string;
  lease?: number;
  server?: string;
  type: string[];
  since?: string;
  bulk?: boolean;
  pageSize?: number;
  maxRetries?: number;
}

export function registerIngestFhir(program: Command, state: CliState): void {
  withHttpOptions(withCommonOptions(
    program
      .command('ingest-fhir')
      .description('load FHIR R4 files (Bundles, Bulk Data ndjson, single resources; .gz too) into fhir_resources and flat tables')
      .argument('[paths...]', 'files, folders (recursive), globs, or - for stdin')
      .option('--view <file>', 'a ViewDefinition whose table to fill too (repeatable; its table is created on first use)', (v: string, all: string[]) => [...all, v], [])
      .option('--full-refresh', 'reload every file, even those loaded before and unchanged')
      .option('--batch-size <n>', 'resources per transaction, at most (default 5000; a batch also ends at 16 MB of JSON)', wholeNumber('--batch-size'))
      .option('--workers <n>', 'worker processes sharing the files through a queue in the database (needs a Postgres server)', wholeNumber('--workers'))
      .option('--queue <name>', 'join a shared work queue of this name (run the same command on several hosts)')
      .option('--lease <seconds>', 'how long a worker holds a file without renewing its claim (default 120)', wholeNumber('--lease'))
      .option('--server <url>', 'pull from a FHIR server (base URL) instead of files: FHIR search, incremental')
      .option('--type <types>', 'resource types to pull from the server, comma-separated (repeatable)', (v: string, all: string[]) => [...all, ...v.split(',')], [])
      .option('--since <instant>', 'only resources changed after this instant (overrides the stored cursor)')
      .option('--bulk', 'use the Bulk Data $export flow instead of search')
      .option('--page-size <n>', 'search page size, _count (default 100)', wholeNumber('--page-size'))
      .option('--max-retries <n>', 'retries of a request on 429, 5xx, timeouts and network errors (default 5)', wholeNumber('--max-retries'))
      .option('--token <token>', 'bearer token (env CAREPIPE_FHIR_TOKEN)')
      .option('--basic-user <user>', 'basic authentication user (env CAREPIPE_FHIR_USER); password in CAREPIPE_FHIR_PASSWORD')
      .option('--basic-password <password>', 'basic authentication password (prefer env CAREPIPE_FHIR_PASSWORD)')
      .option('--smart-client-id <id>', 'SMART Backend Services client id (env CAREPIPE_FHIR_SMART_CLIENT_ID)')
      .option('--smart-key <file>', 'SMART private key file, PEM or JWK (env CAREPIPE_FHIR_SMART_KEY)')
      .option('--smart-token-url <url>', 'token endpoint (default: from .well-known/smart-configuration)')
      .option('--smart-scope <scope>', 'scope to ask (default system/*.read)'),
    { dryRun: true },
  )).action(async (paths: string[], flags: IngestFhirFlags, command: Command) => {
    // The command line as typed, for the ledger (runCommand redacts secrets from it).
    const argv = (command.parent as unknown as { rawArgs?: string[] } | null)?.rawArgs ?? ['ingest-fhir', ...paths];
    if (flags.server && paths.length > 0) throw new CarepipeError('USAGE', 'give either paths or --server, not both');
    if (!flags.server && paths.length === 0) throw new CarepipeError('USAGE', 'ingest-fhir needs paths (files, folders, globs, -) or --server URL');
    const serverOnly = { type: flags.type.length > 0, since: flags.since, bulk: flags.bulk, 'page-size': flags.pageSize, 'max-retries': flags.maxRetries };
    const stray = Object.entries(serverOnly).find(([, v]) => v !== undefined && v !== false);
    if (!flags.server && stray) throw new CarepipeError('USAGE', `--${stray[0]} goes with --server`);
    if (flags.server && (flags.workers !== undefined || flags.queue !== undefined)) throw new CarepipeError('USAGE', '--workers and --queue share files, not a server pull');
    const shared = (flags.workers ?? 0) > 1 || flags.queue !== undefined;
    // Runs on different servers may overlap; two runs on one server may not.
    const target = flags.server ? maskUrl(flags.server).replace(/\/+$/, '') : undefined;
    await runCommand(state, flags, { name: 'ingest-fhir', argv, target, lock: !shared }, async ({ db, ledger, reporter, signal, io, settings }) => {
      const [{ runIngestFhir }, { DEFAULT_LEASE_SECONDS }] = await Promise.all([import('../../fhir/command.js'), import('../../fhir/read/queue.js')]);
      const leaseSeconds = flags.lease || DEFAULT_LEASE_SECONDS;
      if ((flags.workers ?? 0) > 1 && !settings.dryRun) {
        const { defaultQueueName, runWorkers } = await import('../../fhir/ingest-workers.js');
        const queue = flags.queue ?? defaultQueueName(paths, io.cwd);
        return runWorkers({ workers: flags.workers!, queue, args: [...argv] }, { db, ledger, reporter, signal, env: io.env, cwd: io.cwd });
      }
      const server = flags.server
        ? {
            server: flags.server,
            types: flags.type,
            since: flags.since,
            bulk: flags.bulk ?? false,
            count: flags.pageSize || undefined,
            maxRetries: flags.maxRetries,
            auth: resolveFhirAuth(flags, settings.env, io.cwd),
            allowOrigins: allowedOrigins(settings, flags),
            maxResponseMb: settings.maxResponseMb,
          }
        : undefined;
      return runIngestFhir(
        {
          inputs: paths,
          server,
          viewFiles: flags.view,
          fullRefresh: flags.fullRefresh ?? false,
          batchSize: flags.batchSize || undefined,
          dryRun: settings.dryRun,
          queue: flags.queue ? { queue: flags.queue, leaseSeconds, fullRefresh: flags.fullRefresh ?? false } : undefined,
        },
        { db, ledger, reporter, signal, cwd: io.cwd, stdin: io.stdin, maxStdinBytes: settings.maxResponseMb * 1024 * 1024 },
      );
    });
  });
}
