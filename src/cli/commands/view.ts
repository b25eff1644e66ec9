import { Command, InvalidArgumentError } from 'commander';
import type { CommonFlags } from '../../config.js';
import { formatLocation } from '../../errors.js';
import { prepare, withCommonOptions, type CliState } from '../common.js';

interface ViewRunFlags extends CommonFlags {
  view: string;
  format?: 'ndjson' | 'csv' | 'table';
}

function rowFormat(value: string): 'ndjson' | 'csv' | 'table' {
  if (value === 'ndjson' || value === 'csv' || value === 'table') return value;
  throw new InvalidArgumentError('--format must be ndjson, csv or table');
}

export function registerView(program: Command, state: CliState): void {
  const view = program.command('view').description('work with SQL on FHIR ViewDefinitions without a database');
  withCommonOptions(
    view
      .command('run')
      .description('evaluate a ViewDefinition over FHIR files (Bundles, ndjson, resources, folders, globs, - for stdin) and print the rows')
      .argument('<files...>', 'FHIR files, folders or globs; - reads stdin')
      .requiredOption('--view <file>', 'ViewDefinition JSON file')
      .option('--format <format>', 'ndjson, csv or table (default: table on a terminal, else ndjson)', rowFormat),
  ).action(async (files: string[], flags: ViewRunFlags) => {
    const { reporter, settings } = prepare(state, flags);
    const { io } = state;
    const [{ loadViewFile }, { runViewOverFiles }, { rowWriter }] = await Promise.all([
      import('../../fhir/view/index.js'),
      import('../../fhir/view/run.js'),
      import('../../io/rows.js'),
    ]);
    const compiled = loadViewFile(flags.view);
    const format = flags.format ?? (io.stdoutIsTTY ? 'table' : 'ndjson');
    // A reader of stdout that goes away (`| head`) ends the run quietly.
    const stdoutGone = new AbortController();
    const onStdoutError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') stdoutGone.abort(err);
    };
    io.stdout.on('error', onStdoutError);
    try {
      const counts = await runViewOverFiles({
        view: compiled,
        inputs: files,
        cwd: io.cwd,
        stdin: io.stdin,
        signal: stdoutGone.signal,
        writer: rowWriter(format, compiled.columns, io.stdout, { signal: stdoutGone.signal }),
        maxStdinBytes: settings.maxResponseMb * 1024 * 1024,
        onWarning: (message) => reporter.warn('input_skipped', { message }),
        onReject: (r) =>
          reporter.warn('rejected', {
            message: `${formatLocation({ file: r.source, line: r.line, entry: r.entry, field: r.field })}: ${r.message}`,
            reason: r.reasonCode,
          }),
      });
      reporter.info('done', {
        message: `${counts.rows} rows from ${counts.matched} ${compiled.resource} resources (${counts.resources} read in ${counts.files} files), ${counts.rejected} rejected`,
        files: counts.files,
        resources: counts.resources,
        rows: counts.rows,
        rejected: counts.rejected,
      });
      state.exitCode = counts.rejected > 0 ? 1 : 0;
    } catch (err) {
      if (!stdoutGone.signal.aborted) throw err;
    } finally {
      io.stdout.off('error', onStdoutError);
    }
  });
}
