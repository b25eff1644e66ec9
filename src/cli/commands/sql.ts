import { Command, Option } from 'commander';
import type { CommonFlags } from '../../config.js';
import { runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';
import type { SqlFormat } from '../sql.js';

interface SqlFlags extends CommonFlags {
  file?: string;
  format: SqlFormat;
  write?: boolean;
  formulaGuard: boolean;
  batchSize?: number;
}

export function registerSql(program: Command, state: CliState): void {
  withCommonOptions(
    program
      .command('sql')
      .description('run one SQL statement on the database, read-only unless --write; rows as a table, CSV or JSON')
      .argument('[statement]', 'the statement, e.g. "select count(*) from fhir_resources"; - reads it from stdin')
      .option('--file <file>', 'read the statement from this file')
      .addOption(new Option('--format <format>', 'table, csv or json (an array of row objects)').choices(['table', 'csv', 'json']).default('table'))
      .option('--write', 'let the statement change data: committed, and recorded in the run ledger')
      .option('--no-formula-guard', "CSV: do not prefix ' to text cells starting with = + - @ tab CR")
      .addOption(new Option('--batch-size <n>', 'rows per cursor fetch').argParser(wholeNumber('--batch-size')).hideHelp()),
  ).action(async (argument: string | undefined, flags: SqlFlags) => {
    const { readStatement, runSqlCommand, sqlLedgerArgs } = await import('../sql.js');
    const statement = await readStatement(argument, flags.file, state.io.stdin, state.io.cwd);
    const write = flags.write ?? false;
    await runCommand(
      state,
      flags,
      { name: 'sql', argv: sqlLedgerArgs(argument, flags.file, flags.format), mode: write ? 'write' : 'read', create: false },
      (ctx) => runSqlCommand({ statement, format: flags.format, write, formulaGuard: flags.formulaGuard, batchSize: flags.batchSize || undefined }, ctx, state),
    );
  });
}
