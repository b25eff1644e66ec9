import { Command } from 'commander';
import type { CommonFlags } from '../../config.js';
import { runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';

interface RefreshFlags extends CommonFlags {
  view: string[];
  table?: string;
  batchSize?: number;
}

/** `carepipe views …`: the flat tables the ViewDefinitions make in the database. */
export function registerViews(program: Command, state: CliState): void {
  const group = program.command('views').description('the flat tables ViewDefinitions make in the database');
  withCommonOptions(
    group
      .command('refresh')
      .description('rebuild flat tables from fhir_resources with their views (after editing a ViewDefinition, or an upgrade)')
      .option('--view <file>', "a user's ViewDefinition: rebuild its table (repeatable)", (v: string, all: string[]) => [...all, v], [])
      .option('--table <name>', 'only this table')
      .option('--batch-size <n>', 'resources per batch (default 2000)', wholeNumber('--batch-size')),
    { dryRun: true },
  ).action(async (flags: RefreshFlags, command: Command) => {
    const argv = (command.parent?.parent as unknown as { rawArgs?: string[] } | null)?.rawArgs ?? ['views', 'refresh'];
    // the lock ingest-fhir takes: a table is not rebuilt while a load writes into it
    await runCommand(state, flags, { name: 'views refresh', argv, lockName: 'ingest-fhir' }, async ({ db, ledger, reporter, signal, settings }) => {
      const { runViewsRefresh } = await import('../../fhir/refresh-run.js');
      return runViewsRefresh(
        { viewFiles: flags.view, table: flags.table, batchSize: flags.batchSize || undefined, dryRun: settings.dryRun },
        { db, ledger, reporter, signal },
      );
    });
  });
}
