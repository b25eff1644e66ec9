import { Command, Option } from 'commander';
import type { CommonFlags } from '../../config.js';
import { CarepipeError } from '../../errors.js';
import { prepare, runCommand, wholeNumber, withCommonOptions, type CliState, type OptionalFlags } from '../common.js';
import { withHttpOptions, type HttpFlags } from '../http-options.js';
import type { ListFormat } from '../../directory/command.js';
import type { ImportMode } from '../../directory/read.js';
import type { QueryParser, SearchOptions } from '../../directory/query.js';

interface DirectoryFlags extends CommonFlags, HttpFlags {
  baseUrl?: string;
  timeout?: number;
  retries?: number;
}

interface SearchFlags extends DirectoryFlags {
  city?: string;
  profession?: string;
  postcode?: string;
  fq?: string;
  size?: number;
  start?: number;
  cursor?: string;
  sort?: string;
  parser?: QueryParser;
  qOptions?: string;
  return?: string;
}

interface ImportFlags extends SearchFlags {
  pick?: number;
  rpps?: string;
  finess?: string;
  all?: boolean;
}

interface ListFlags extends CommonFlags {
  finess?: string;
  format?: ListFormat;
}

function withDirectoryOptions(command: Command, optional: OptionalFlags = {}): Command {
  return withHttpOptions(withCommonOptions(command, optional))
    .option('--base-url <url>', 'the directory gateway (env DIRECTORY_BASE_URL)')
    .option('--timeout <ms>', 'time allowed per request (env DIRECTORY_TIMEOUT_MS, default 10000)', wholeNumber('--timeout'))
    .option('--retries <n>', 'retries after a failed request (env DIRECTORY_RETRIES, default 5)', wholeNumber('--retries'));
}

function withSearchOptions(command: Command, paging: 'page' | 'batch'): Command {
  return command
    .option('--city <name>', "only this city (quoted for you: --city \"L'Île-Rousse\")")
    .option('--profession <name|code>', 'only this profession: a name (Pharmacien) or a code (21)')
    .option('--postcode <code>', 'only this postcode')
    .option('--fq <filter>', "a raw CloudSearch structured filter, ANDed with the above: \"(or city:'LYON' city:'PARIS')\"")
    .option('--size <n>', paging === 'page' ? 'hits per page (default 10)' : 'hits per request (default 100 with --all)', wholeNumber('--size'))
    .option('--start <n>', 'skip the first N hits', wholeNumber('--start'))
    .option('--cursor <cursor>', "page with a CloudSearch cursor ('initial' for the first page)")
    .option('--sort <expr>', "CloudSearch sort, e.g. 'last_name asc'")
    .addOption(new Option('--parser <parser>', 'q.parser').choices(['simple', 'structured', 'lucene', 'dismax']))
    .option('--q-options <json>', 'q.options as JSON, e.g. {"fields":["last_name^2","city"]}');
}

function searchOptions(term: string | undefined, flags: SearchFlags): SearchOptions {
  return {
    term,
    city: flags.city,
    profession: flags.profession,
    postcode: flags.postcode,
    fq: flags.fq,
    size: flags.size,
    start: flags.start,
    cursor: flags.cursor,
    sort: flags.sort,
    parser: flags.parser,
    qOptions: flags.qOptions,
    return: flags.return?.split(','),
  };
}

function importMode(flags: ImportFlags): ImportMode {
  const modes = [flags.pick !== undefined, flags.rpps !== undefined || flags.finess !== undefined, Boolean(flags.all)].filter(Boolean).length;
  if (modes !== 1) throw new CarepipeError('USAGE', 'import needs exactly one of --pick N, --rpps R --finess F, or --all');
  if (flags.pick !== undefined) return { pick: flags.pick };
  if (flags.all) return { all: true };
  if (!flags.rpps || !flags.finess) throw new CarepipeError('USAGE', '--rpps and --finess go together: a worker at one organization');
  return { rpps: flags.rpps, finess: flags.finess };
}

/** The command line as the user gave it (for the ledger; secrets are redacted there). */
function givenArgs(term: string | undefined, command: Command): string[] {
  const args = term !== undefined ? [term] : [];
  for (const [key, value] of Object.entries(command.opts())) {
    if (value === undefined || value === false) continue;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    args.push(value === true ? flag : `${flag}=${String(value)}`);
  }
  return args;
}

export function registerDirectoryLookup(program: Command, state: CliState): void {
  const group = program
    .command('directory-lookup')
    .description('search the healthcare-worker directory (CloudSearch), import entries as organizations and workers, list them');

  withSearchOptions(withDirectoryOptions(group.command('search [term]').description('search the directory: a numbered table, or JSON with --json')), 'page')
    .option('--return <fields>', 'comma-separated fields to return')
    .action(async (term: string | undefined, flags: SearchFlags) => {
      const { settings, reporter } = prepare(state, flags);
      const { resolveDirectory, runSearch } = await import('../../directory/command.js');
      const result = await runSearch(searchOptions(term, flags), resolveDirectory(settings, flags), reporter);
      reporter.result(result.human, { command: 'directory-lookup search', ...result.summary });
    });

  withSearchOptions(
    withDirectoryOptions(
      group
        .command('import [term]')
        .description('import one hit (--pick N from the search table, or --rpps R --finess F) or every hit (--all) of a search'),
      { dryRun: true },
    ),
    'batch',
  )
    .option('--pick <n>', 'the hit numbered N in the search table of the same options', wholeNumber('--pick'))
    .option('--rpps <number>', 'the worker (11-digit RPPS number), with --finess')
    .option('--finess <number>', 'the organization (9-character FINESS number), with --rpps')
    .option('--all', 'every hit of the search, page by page (for cron)')
    .action(async (term: string | undefined, flags: ImportFlags, command: Command) => {
      const mode = importMode(flags);
      const options = searchOptions(term, flags);
      const { settings } = prepare(state, flags);
      const { resolveDirectory, runImport } = await import('../../directory/command.js');
      const directory = resolveDirectory(settings, flags);
      await runCommand(
        state,
        flags,
        { name: 'directory-lookup import', target: new URL(directory.baseUrl).host, argv: givenArgs(term, command) },
        async ({ db, ledger, reporter, signal, now }) =>
          runImport(mode, options, directory, { knex: db.knex, ledger, reporter, dryRun: settings.dryRun, signal, now }),
      );
    });

  withCommonOptions(group.command('list').description('every imported organization with its workers'))
    .option('--finess <number>', 'only this organization')
    .addOption(new Option('--format <format>', 'table, json or csv').choices(['table', 'json', 'csv']).default('table'))
    .action(async (flags: ListFlags) => {
      await runCommand(state, flags, { name: 'directory-lookup list', argv: [], mode: 'read' }, async ({ db, io, settings }) => {
        const { runList, streamWriter, ReaderGone } = await import('../../directory/command.js');
        const format: ListFormat = settings.json ? 'json' : (flags.format ?? 'table');
        if (settings.json) {
          // --json: the listing inside the one summary object.
          let text = '';
          await runList(db.knex, { finess: flags.finess, format: 'json' }, (t) => {
            text += t;
          });
          return { summary: { organizations: JSON.parse(text) } };
        }
        try {
          await runList(db.knex, { finess: flags.finess, format }, streamWriter(io.stdout));
        } catch (err) {
          if (!(err instanceof ReaderGone)) throw err;
        }
        return {};
      });
    });
}
