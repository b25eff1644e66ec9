import { Command } from 'commander';
import type { CommonFlags } from '../../config.js';
import { runCommand, withCommonOptions, type CliState } from '../common.js';

export function registerHistory(program: Command, state: CliState): void {
  withCommonOptions(
    program
      .command('history')
      .description('the changes of one row, oldest first, with the run (command, user, time) behind each')
      .argument('<table>', 'a table with row history, e.g. fhir_resources, patient or fhir.patient, clinicians')
      .argument('<key>', "the row's key, its key columns' values joined by '/', e.g. Patient/123"),
  ).action(async (given: string, key: string, flags: CommonFlags) => {
    await runCommand(state, flags, { name: 'history', argv: [], mode: 'read' }, async ({ db, settings, io }) => {
      const { recordedKeyColumns, diffRow } = await import('../../db/history.js');
      const { tableRowHistory } = await import('../../fhir/derived-history.js');
      const { formatChanges } = await import('../history-format.js');
      const { plainTableName } = await import('../../db/schemas.js');
      // row history records tables by plain name: `fhir.patient` and `patient` are the same table
      const table = await plainTableName(db.knex, given, db.schemas);
      const changes = await tableRowHistory(db.knex, table, key);
      const human = changes.length === 0
        ? `no recorded changes for ${table} ${key}`
        : formatChanges(changes, { color: io.stdoutIsTTY && settings.color });
      return {
        human,
        summary: {
          table,
          key,
          key_columns: await recordedKeyColumns(db.knex, table),
          changes: changes.map((c) => ({
            operation: c.operation,
            changed_at: c.changed_at,
            db_user: c.db_user,
            run: c.run_id === null ? null : { id: c.run_id, command: c.run_command, arguments: c.run_arguments, user: c.run_user, started_at: c.run_started_at },
            before: c.before,
            after: c.after,
            fields: diffRow(c.before, c.after),
          })),
        },
      };
    });
  });
}
