import { Command } from 'commander';
import type { CommonFlags } from '../../config.js';
import { runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';

interface IngestFhirFlags extends CommonFlags {
  view: string[];
  fullRefresh?: boolean;
  batchSize?: number;
  workers?: number;
  queue?: string;
  lease?: number;
}

export function registerIngestFhir(program: Command, state: CliState): void {
  withCommonOptions(
    program
      .command('ingest-fhir')
      .description('load FHIR R4 files (Bundles, Bulk Data ndjson, single resources; .gz too) into fhir_resources and flat tables')
      .argument('<paths...>', 'files, folders (recursive), globs, or - for stdin')
      .option('--view <file>', 'a ViewDefinition whose table to fill too (repeatable; its table is created on first use)', (v: string, all: string[]) => [...all, v], [])
      .option('--full-refresh', 'reload every file, even those loaded before and unchanged')
      .option('--batch-size <n>', 'resources per transaction, at most (default 5000; a batch also ends at 16 MB of JSON)', wholeNumber('--batch-size'))
      .option('--workers <n>', 'worker processes sharing the files through a queue in the database (needs a Postgres server)', wholeNumber('--workers'))
      .option('--queue <name>', 'join a shared work queue of this name (run the same command on several hosts)')
      .option('--lease <seconds>', 'how long a worker holds a file without renewing its claim (default 120)', wholeNumber('--lease')),
  ).action(async (paths: string[], flags: IngestFhirFlags, command: Command) => {
    // The command line as typed, for the ledger (runCommand redacts secrets from it).
    const argv = (command.parent as unknown as { rawArgs?: string[] } | null)?.rawArgs ?? ['ingest-fhir', ...paths];
    const shared = (flags.workers ?? 0) > 1 || flags.queue !== undefined;
    await runCommand(state, flags, { name: 'ingest-fhir', argv, lock: !shared }, async ({ db, ledger, reporter, signal, io, settings }) => {
      const [{ runIngestFhir }, { DEFAULT_LEASE_SECONDS }] = await Promise.all([import('../../fhir/ingest-run.js'), import('../../fhir/ingest-queue.js')]);
      const leaseSeconds = flags.lease || DEFAULT_LEASE_SECONDS;
      if ((flags.workers ?? 0) > 1 && !settings.dryRun) {
        const { defaultQueueName, runWorkers } = await import('../../fhir/ingest-workers.js');
        const queue = flags.queue ?? defaultQueueName(paths, io.cwd);
        return runWorkers({ workers: flags.workers!, queue, args: [...argv] }, { db, ledger, reporter, signal, env: io.env, cwd: io.cwd });
      }
      return runIngestFhir(
        {
          inputs: paths,
          viewFiles: flags.view,
          fullRefresh: flags.fullRefresh ?? false,
          batchSize: flags.batchSize || undefined,
          dryRun: settings.dryRun,
          queue: flags.queue ? { queue: flags.queue, leaseSeconds, fullRefresh: flags.fullRefresh ?? false } : undefined,
        },
        { db, ledger, reporter, signal, cwd: io.cwd, stdin: io.stdin },
      );
    });
  });
}
