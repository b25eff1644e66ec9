import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { CommonFlags } from '../../config.js';
import { CarepipeError } from '../../errors.js';
import { parseFileMode } from '../../io/output-file.js';
import { prepare, runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';

interface ExportCsvFlags extends CommonFlags {
  list?: boolean;
  view?: string;
  output?: string;
  where: string[];
  since?: string;
  columns?: string;
  profile: 'clinical' | 'research';
  birthDate?: 'year' | 'shift';
  delimiter: string;
  bom?: boolean;
  eol: 'crlf' | 'lf';
  formulaGuard: boolean;
  timezone: string;
  by?: string;
  period?: string;
  from?: string;
  to?: string;
  chart?: string;
  fileMode?: number;
  batchSize?: number;
}

function fileMode(value: string): number {
  const mode = parseFileMode(value);
  if (mode === undefined) throw new InvalidArgumentError('--file-mode must be octal permission bits such as 600 or 640');
  return mode;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function oneCharacter(value: string): string {
  const resolved = value === '\\t' || value === 'tab' ? '\t' : value;
  if ([...resolved].length !== 1 || /["\r\n]/.test(resolved)) throw new InvalidArgumentError('--delimiter must be one character other than a quote or a line break');
  return resolved;
}

/** The command line for the ledger: --where values may be patient identifiers, so only their columns are kept. */
function ledgerArgs(source: string | undefined, flags: ExportCsvFlags): string[] {
  const args = ['export-csv'];
  if (source) args.push(source);
  if (flags.view) args.push('--view', flags.view);
  if (flags.output) args.push('-o', flags.output);
  args.push('--profile', flags.profile);
  if (flags.birthDate) args.push('--birth-date', flags.birthDate);
  for (const where of flags.where) {
    const column = /^(\s*[^\s=!<>]+\s*(?:>=|<=|!=|<>|=|<|>))/s.exec(where);
    // Without an operator there is no telling column from value: keep none of it.
    args.push('--where', column ? `${column[1]}****` : '****');
  }
  if (flags.since) args.push('--since', flags.since);
  if (flags.columns) args.push('--columns', flags.columns);
  for (const key of ['by', 'period', 'from', 'to', 'chart'] as const) if (flags[key]) args.push(`--${key}`, flags[key]!);
  return args;
}

export function registerExportCsv(program: Command, state: CliState): void {
  withCommonOptions(
    program
      .command('export-csv')
      .description('stream a table, view, computed source or ViewDefinition to CSV (clinical or de-identified research profile)')
      .argument('[source]', 'a source name (see --list)')
      .option('--list', 'list the sources with their columns and research treatments')
      .option('--view <file>', 'a ViewDefinition JSON file, evaluated over the stored FHIR resources')
      .option('-o, --output <file>', 'write to this file (atomically: it appears complete or not at all); default stdout')
      .option('--where <condition>', 'COLUMN=VALUE (or !=, <, <=, >, >=), repeatable; values are bound, never pasted into SQL', collect, [])
      .option('--since <time>', 'only rows whose last-updated column is at or after this time')
      .option('--columns <a,b,c>', 'choose and order the columns')
      .addOption(new Option('--profile <profile>', 'clinical: every column; research: de-identified per declared treatment').choices(['clinical', 'research']).default('clinical'))
      .addOption(
        new Option('--birth-date <treatment>', 'research profile: birth dates cut to the year, or shifted like the patient\'s other dates').choices([
          'year',
          'shift',
        ]),
      )
      .option('--delimiter <char>', 'field delimiter (\\t or tab for a tab)', oneCharacter, ',')
      .option('--bom', 'start with a UTF-8 byte order mark (Excel)')
      .addOption(new Option('--eol <eol>', 'record separator').choices(['crlf', 'lf']).default('crlf'))
      .option('--no-formula-guard', "do not prefix ' to text cells starting with = + - @ tab CR")
      .option('--timezone <tz>', 'time zone of timestamps written', 'UTC')
      .option('--by <group>', 'computed sources: group by (e.g. clinician, department)')
      .option('--period <period>', 'computed sources: week or month')
      .option('--from <date>', 'computed sources: from this date')
      .option('--to <date>', 'computed sources: up to this date')
      .option('--chart <file>', 'computed sources: also draw a chart (.svg or .png)')
      .option('--file-mode <octal>', 'permissions of files written (-o, --chart), e.g. 640; default 600, and a replaced file keeps its mode', fileMode)
      .addOption(new Option('--batch-size <n>', 'rows per cursor fetch').argParser(wholeNumber('--batch-size')).hideHelp()),
    { dryRun: true },
  ).action(async (source: string | undefined, flags: ExportCsvFlags) => {
    if (flags.list) {
      const { settings, reporter } = prepare(state, flags);
      const { listSources } = await import('../../export/list.js');
      const listing = await listSources();
      reporter.result(listing.human, settings.json ? listing.json : undefined);
      return;
    }
    if (!source === !flags.view) {
      throw new CarepipeError('USAGE', 'export-csv needs a SOURCE name or --view FILE (one of them); --list shows the sources');
    }
    if (flags.birthDate && flags.profile !== 'research') {
      throw new CarepipeError('USAGE', '--birth-date applies to the research profile (--profile research)');
    }
    if (flags.json && !flags.output) {
      throw new CarepipeError('USAGE', '--json prints its summary on stdout, where the CSV goes: add -o FILE');
    }
    const columns = flags.columns?.split(',').map((c) => c.trim()).filter(Boolean);
    const outputTarget = flags.output ? `file:${path.resolve(state.io.cwd, flags.output)}` : `stdout:${process.pid}`;
    await runCommand(
      state,
      flags,
      { name: 'export-csv', target: source ?? flags.view, argv: ledgerArgs(source, flags), lockName: `export-csv:${outputTarget}`, create: false },
      async ({ db, reporter, ledger, io, signal, now, settings }) => {
        const { runExportCsv } = await import('../../export/export-csv.js');
        const { plainTableName } = await import('../../db/schemas.js');
        const result = await runExportCsv(
          {
            // sources go by plain name: `fhir.patient` is `patient`
            source: source && (await plainTableName(db.knex, source, db.schemas)),
            view: flags.view,
            output: flags.output,
            where: flags.where,
            since: flags.since,
            columns,
            profile: flags.profile,
            pseudonymKey: settings.env.CAREPIPE_PSEUDONYM_KEY || undefined,
            birthDate: flags.birthDate,
            format: { delimiter: flags.delimiter, bom: flags.bom, eol: flags.eol === 'lf' ? '\n' : '\r\n' },
            formulaGuard: flags.formulaGuard,
            timezone: flags.timezone,
            params: { by: flags.by, period: flags.period, from: flags.from, to: flags.to },
            chart: flags.chart,
            fileMode: flags.fileMode,
            batchSize: flags.batchSize || undefined,
          },
          { knex: db.knex, reporter, ledger, stdout: io.stdout, signal, cwd: io.cwd, now, dryRun: settings.dryRun },
        );
        const human = settings.dryRun
          ? `dry run: ${result.rows} rows of ${result.source} (${result.profile}) would be written${flags.output ? ` to ${flags.output}` : ''}`
          : flags.output
          ? `${result.rows} rows of ${result.source} (${result.profile}) written to ${result.output}${result.chart ? `; chart ${result.chart}` : ''}`
          : undefined;
        return { human, summary: { source: result.source, profile: result.profile, rows: result.rows, output: result.output, columns: result.columns } };
      },
    );
  });
}
