import { Command } from 'commander';
import type { CommonFlags } from '../../config.js';
import { runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';

interface IngestFhirFlags extends CommonFlags {
  view: string[];
  fullRefresh?: boolean;
  batchSize?: number;
}

export function registerIngestFhir(program: Command, state: CliState): void {
  withCommonOptions(
    program
      .command('ingest-fhir')
      .description('load FHIR R4 files (Bundles, Bulk Data ndjson, single resources; .gz too) into fhir_resources and flat tables')
      .argument('<paths...>', 'files, folders (recursive), globs, or - for stdin')
      .option('--view <file>', 'a ViewDefinition whose table to fill too (repeatable; its table is created on first use)', (v: string, all: string[]) => [...all, v], [])
      .option('--full-refresh', 'reload every file, even those loaded before and unchanged')
      .option('--batch-size <n>', 'resources per transaction, at most (default 5000; a batch also ends at 16 MB of JSON)', wholeNumber('--batch-size')),
  ).action(async (paths: string[], flags: IngestFhirFlags, command: Command) => {
    // The command line as typed, for the ledger (runCommand redacts secrets from it).
    const argv = (command.parent as unknown as { rawArgs?: string[] } | null)?.rawArgs ?? ['ingest-fhir', ...paths];
    await runCommand(state, flags, { name: 'ingest-fhir', argv }, async ({ db, ledger, reporter, signal, io, settings }) => {
      const { runIngestFhir } = await import('../../fhir/ingest-run.js');
      return runIngestFhir(
        { inputs: paths, viewFiles: flags.view, fullRefresh: flags.fullRefresh ?? false, batchSize: flags.batchSize || undefined, dryRun: settings.dryRun },
        { db, ledger, reporter, signal, cwd: io.cwd, stdin: io.stdin },
      );
    });
  });
}
