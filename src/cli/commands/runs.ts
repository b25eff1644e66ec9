import { Command } from 'commander';
import type { CommonFlags } from '../../config.js';
import { runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';
import { formatTable } from '../output.js';

interface RunsFlags extends CommonFlags {
  limit: number;
  command?: string;
}

export function registerRuns(program: Command, state: CliState): void {
  withCommonOptions(
    program
      .command('runs')
      .description('list recent runs from the ledger: who, when, what, how many rows, outcome')
      .option('-n, --limit <n>', 'how many runs', wholeNumber('--limit'), 20)
      .option('--command <name>', 'only runs of this command'),
  ).action(async (flags: RunsFlags) => {
    await runCommand(state, flags, { name: 'runs', argv: [], mode: 'read' }, async ({ db }) => {
      const { listRuns } = await import('../../db/ledger.js');
      const runs = await listRuns(db.knex, { limit: flags.limit, command: flags.command });
      const human = formatTable(
        ['id', 'command', 'user', 'started', 'secs', 'status', 'read', 'written', 'unchanged', 'rejected', 'exit'],
        runs.map((r) => [
          r.id,
          r.target ? `${r.command} ${r.target}` : r.command,
          r.os_user,
          r.started_at.toISOString().replace(/\.\d+Z$/, 'Z'),
          r.finished_at ? ((r.finished_at.getTime() - r.started_at.getTime()) / 1000).toFixed(1) : '',
          r.status,
          r.read_count,
          r.written_count,
          r.unchanged_count,
          r.rejected_count,
          r.exit_code,
        ]),
      );
      return { human, summary: { runs } };
    });
  });
}
