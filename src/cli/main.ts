/**
 * The CLI entry: builds the commander program, runs it, and maps what happened to an exit code. Only
 * bin/carepipe calls process.exit; tests call `main(argv, io)` in-process.
 */
import { Command, CommanderError } from 'commander';
import { ExitCode, formatLocation, isCarepipeError } from '../errors.js';
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
  const state: CliState = { io, exitCode: ExitCode.OK };
  const program = buildProgram(state);
  try {
    limitHeapGrowth(io.env);
    await program.parseAsync([...argv], { from: 'user' });
    return state.exitCode;
  } catch (err) {
    return reportError(err, state);
  }
}

function reportError(err: unknown, state: CliState): number {
  const { io } = state;
  if (err instanceof CommanderError) {
    // commander already printed the message (or the help).
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return ExitCode.OK;
    return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  }
  if (isCarepipeError(err)) {
    const where = formatLocation(err.context);
    io.stderr.write(`carepipe: ${err.message}${where && !err.message.includes(where) ? ` (${where})` : ''}\n`);
    if (state.json) {
      io.stdout.write(`${JSON.stringify({ status: 'failed', exit_code: err.exitCode, error: { code: err.code, message: err.message } })}\n`);
    }
    return err.exitCode;
  }
  io.stderr.write(`carepipe: internal error, please report it with the text below\n${(err as Error)?.stack ?? String(err)}\n`);
  if (state.json) {
    io.stdout.write(`${JSON.stringify({ status: 'failed', exit_code: ExitCode.INTERNAL, error: { code: 'INTERNAL', message: String((err as Error)?.message ?? err) } })}\n`);
  }
  return ExitCode.INTERNAL;
}
