/**
 * The CLI entry: builds the commander program, runs it, and maps what happened to an exit code. Only
 * bin/carepipe calls process.exit; tests call `main(argv, io)` in-process.
 */
import { Command, CommanderError } from 'commander';
import { ExitCode, formatLocation, isCarepipeError } from '../errors.js';
import { maskText } from '../http/mask.js';
import type { CliState } from './common.js';
import { processIO, type CliIO } from './io.js';
import { commands } from './commands/index.js';
import { limitHeapGrowth } from './heap.js';

export function buildProgram(state: CliState): Command {
  const program = new Command('carepipe')
    .description('ETL for healthcare data: FHIR, clinicians, directories and appointments into Postgres and CSV')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => state.io.stdout.write(text),
      writeErr: (text) => state.io.stderr.write(text),
    });
  for (const register of commands) register(program, state);
  // Subcommands inherit the override and output, so usage errors come back here as exceptions.
  for (const sub of program.commands) inherit(sub, program);
  return program;
}

function inherit(command: Command, parent: Command): void {
  command.exitOverride().configureOutput(parent.configureOutput());
  for (const sub of command.commands) inherit(sub, command);
}

export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  // Known before parsing, so that a failure before the command starts (a bad flag value, a bad
  // config) still prints its one JSON object; the resolved settings refine it later.
  const state: CliState = { io, exitCode: ExitCode.OK, json: jsonAsked(argv, io.env) };
  const program = buildProgram(state);
  try {
    limitHeapGrowth(io.env);
    await program.parseAsync([...argv], { from: 'user' });
    return state.exitCode;
  } catch (err) {
    return reportError(err, state);
  }
}

/** `--json` among the options (not after `--`), or CAREPIPE_JSON set true. */
function jsonAsked(argv: readonly string[], env: CliIO['env']): boolean {
  const end = argv.indexOf('--');
  if ((end < 0 ? argv : argv.slice(0, end)).includes('--json')) return true;
  return ['1', 'true', 'yes', 'on'].includes((env.CAREPIPE_JSON ?? '').toLowerCase());
}

function failedJson(state: CliState, exitCode: number, error: Record<string, unknown>): void {
  if (state.json && !state.jsonPrinted) {
    state.io.stdout.write(`${JSON.stringify({ status: 'failed', exit_code: exitCode, error })}\n`);
  }
}

function reportError(err: unknown, state: CliState): number {
  const { io } = state;
  if (err instanceof CommanderError) {
    // commander already printed the message (or the help).
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return ExitCode.OK;
    if (err.exitCode === 0) return ExitCode.OK;
    failedJson(state, ExitCode.USAGE, { code: 'USAGE', message: maskText(err.message.replace(/^error: /, '')) });
    return ExitCode.USAGE;
  }
  // Messages are built from what the user gave (URLs, flag values): masked once here, whatever raised them.
  if (isCarepipeError(err)) {
    const where = maskText(formatLocation(err.context));
    const message = maskText(err.message);
    io.stderr.write(`carepipe: ${message}${where && !message.includes(where) ? ` (${where})` : ''}\n`);
    // A SQL error's position and SQLSTATE help a program point at the statement's mistake.
    const sql = err.code === 'SQL_ERROR' ? { position: err.context.position, sqlstate: err.context.sqlstate } : {};
    failedJson(state, err.exitCode, { code: err.code, message, ...sql });
    return err.exitCode;
  }
  io.stderr.write(`carepipe: internal error, please report it with the text below\n${maskText((err as Error)?.stack ?? String(err))}\n`);
  failedJson(state, ExitCode.INTERNAL, { code: 'INTERNAL', message: maskText(String((err as Error)?.message ?? err)) });
  return ExitCode.INTERNAL;
}
