/**
 * What every command shares: the common flags (from this one factory) and `runCommand`, which opens
 * the database, brings or checks its schema, takes the run lock, records the run in the ledger, calls
 * the command's logic and maps the outcome to an exit code. Command files only wire flags to logic.
 */
import { Command, InvalidArgumentError } from 'commander';
import { osUser, redactArgs, resolveSettings, type CommonFlags, type Settings } from '../config.js';
import { ExitCode, isCarepipeError } from '../errors.js';
import type { Database } from '../db/connection.js';
import type { RunLedger } from '../db/ledger.js';
import type { CliIO } from './io.js';
import { Reporter } from './output.js';

/** Flags only some commands take: each is offered where it means something. */
export interface OptionalFlags {
  /** `--dry-run`: for commands that write data. */
  dryRun?: boolean;
  /** `--lang`: for commands whose messages are translated. */
  lang?: boolean;
}

/** Adds the flags every command takes, plus `--dry-run` and `--lang` where they are asked for. */
export function withCommonOptions(command: Command, optional: OptionalFlags = {}): Command {
  command
    .option('--database-url <url>', 'Postgres server to use instead of the embedded database (env DATABASE_URL)')
    .option('--data-dir <dir>', 'folder of the embedded database (env CAREPIPE_DATA_DIR; default $CAREPIPE_HOME/db, else the nearest .carepipe/db here or above, else ./.carepipe/db)')
    .option('--db-schema <name>', 'schema to work in, created if missing (env CAREPIPE_DB_SCHEMA)')
    .option('--config <file>', 'config file (default ./carepipe.config.json when present)')
    .option('--json', 'machine output: one JSON summary on stdout, JSON log lines on stderr')
    .option('--quiet', 'print only warnings and errors (for cron)');
  if (optional.dryRun) command.option('--dry-run', 'read and map, report, write nothing');
  command.option('--wait', 'wait for another run holding the lock instead of exiting with code 3');
  if (optional.lang) command.option('--lang <lang>', 'language of messages: en or fr (env LANG)');
  return command;
}

/** Shared state of one CLI invocation: the exit code that `main` returns. */
export interface CliState {
  io: CliIO;
  exitCode: number;
  /** --json asked for (from the command line at first, then the resolved settings): errors print one JSON object. */
  json?: boolean;
  /** The command already wrote its one JSON object (a streamed result): errors add none. */
  jsonPrinted?: boolean;
}

export interface CommandContext {
  settings: Settings;
  io: CliIO;
  reporter: Reporter;
  db: Database;
  ledger: RunLedger;
  /** Aborted on SIGINT/SIGTERM: long loops stop between batches, leaving no half-written batch. */
  signal: AbortSignal;
  now: () => Date;
}

export interface CommandOutcome {
  /** Text for people on stdout (not with --json or --quiet). */
  human?: string;
  /** Extra fields for the --json summary. */
  summary?: Record<string, unknown>;
  /** Override the exit code derived from the counts. */
  exitCode?: number;
  /** The command wrote its result itself (streamed rows): no summary is printed after it. */
  printed?: boolean;
}

export interface CommandSpec {
  /** Name in the ledger, e.g. 'ingest-fhir'. */
  name: string;
  /** What the run is about, e.g. a backend or a server URL: part of the lock name. */
  target?: string;
  /** The command line as typed, for the ledger (secrets are redacted here). */
  argv: readonly string[];
  /** 'write' (default) takes the lock and records a run; 'read' only opens the database. */
  mode?: 'write' | 'read';
  /** Lock name when it is not `name[:target]`. */
  lockName?: string;
  /** false: cooperating runs that coordinate through a work queue instead of the command's lock. */
  lock?: boolean;
  /** Create the embedded database when missing; default: only commands in 'write' mode do. */
  create?: boolean;
}

/** Settings plus a reporter, for commands that need no database (config, view run). */
export function prepare(state: CliState, flags: CommonFlags): { settings: Settings; reporter: Reporter } {
  const settings = resolveSettings(flags, state.io.env, state.io.cwd);
  state.json = settings.json;
  const reporter = new Reporter(state.io, { json: settings.json, quiet: settings.quiet, color: settings.color });
  return { settings, reporter };
}

export async function runCommand(
  state: CliState,
  flags: CommonFlags,
  spec: CommandSpec,
  body: (ctx: CommandContext) => Promise<CommandOutcome>,
): Promise<void> {
  const { settings, reporter } = prepare(state, flags);
  const [{ openDatabase }, { ensureSchemaCurrent }, { acquireRunLock }, { RunLedger }] = await Promise.all([
    import('../db/connection.js'),
    import('../db/migrations.js'),
    import('../db/lock.js'),
    import('../db/ledger.js'),
  ]);
  const write = (spec.mode ?? 'write') === 'write';
  const db = await openDatabase(settings, { wait: settings.wait, create: spec.create ?? write, onWarning: (message) => reporter.warn('data_dir', { message }) });
  announceCreated(db, settings, reporter);
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    reporter.warn('interrupted', { signal, message: `${signal}: stopping after the current batch` });
    controller.abort(new Error(`interrupted by ${signal}`));
    // A second signal ends the process the ordinary way.
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let release: (() => Promise<void>) | undefined;
  try {
    await ensureSchemaCurrent(db);
    if (write && !settings.dryRun && spec.lock !== false) {
      release = await acquireRunLock(db, spec.lockName ?? (spec.target ? `${spec.name}:${spec.target}` : spec.name), {
        wait: settings.wait,
      });
    }
    const ledger = await RunLedger.start(db.knex, {
      command: spec.name,
      target: spec.target,
      args: redactArgs(spec.argv),
      user: osUser(state.io.env),
      dryRun: settings.dryRun || !write,
    });
    let outcome: CommandOutcome;
    try {
      outcome = await body({ settings, io: state.io, reporter, db, ledger, signal: controller.signal, now: () => new Date() });
    } catch (err) {
      reporter.stop(false);
      const code = isCarepipeError(err) ? err.exitCode : ExitCode.INTERNAL;
      // An error may carry a message fit for the ledger when its own could quote patient data.
      const ledgerMessage = isCarepipeError(err) && typeof err.context.ledgerMessage === 'string' ? err.context.ledgerMessage : (err as Error).message;
      await ledger.finish(code === ExitCode.INTERRUPTED ? 'interrupted' : 'failed', code, ledgerMessage).catch(() => undefined);
      throw err;
    }
    const rejected = ledger.counts.rejected;
    const exitCode = outcome.exitCode ?? (rejected > 0 ? ExitCode.REJECTS : ExitCode.OK);
    const status = exitCode === ExitCode.OK ? 'succeeded' : exitCode === ExitCode.REJECTS ? 'partial' : 'failed';
    await ledger.finish(status, exitCode);
    reporter.stop(exitCode === ExitCode.OK);
    state.exitCode = exitCode;
    if (!outcome.printed) reporter.result(outcome.human, {
      command: spec.name,
      run_id: write && !settings.dryRun ? ledger.id : null,
      status,
      exit_code: exitCode,
      dry_run: settings.dryRun,
      counts: ledger.counts,
      ...ledger.details,
      ...outcome.summary,
    });
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await release?.().catch(() => undefined);
    await db.close().catch(() => undefined);
  }
}

/** One stderr line when opening the embedded database created it, so a wrong folder shows at once. */
export function announceCreated(db: Database, settings: Settings, reporter: Reporter): void {
  if (db.created) reporter.info('database_created', { message: `created a new embedded database in ${settings.dataDir}` });
}

/** Parse a non-negative integer flag, or fail with a usage error naming the flag. */
export function wholeNumber(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number`);
    return n;
  };
}
