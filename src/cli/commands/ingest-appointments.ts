import { Command } from 'commander';
import path from 'node:path';
import { setting, type CommonFlags } from '../../config.js';
import { runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';

interface IngestAppointmentsFlags extends CommonFlags {
  now?: string;
  batchSize: number;
}

export function registerIngestAppointments(program: Command, state: CliState): void {
  withCommonOptions(
    program
      .command('ingest-appointments')
      .description('load appointment-system exports (patients and appointments JSON files, told apart by content)')
      .argument('<path...>', 'export files: JSON arrays of patients or of appointments')
      .option('--now <time>', 'the run clock for deriving missed appointments, with an offset (env CAREPIPE_NOW; default: now)')
      .option('--batch-size <n>', 'records per transaction', wholeNumber('--batch-size'), 500),
    { dryRun: true, lang: true },
  ).action(async (paths: string[], flags: IngestAppointmentsFlags) => {
    await runCommand(
      state,
      flags,
      { name: 'ingest-appointments', argv: [...paths, ...(flags.now ? ['--now', flags.now] : [])], lockName: 'appointments' },
      async ({ settings, db, ledger, reporter, signal, now }) => {
        const { ingestAppointments, parseRunClock } = await import('../../appointments/command.js');
        const { appointmentMessage } = await import('../../i18n/appointments.js');
        const clock = parseRunClock(setting(settings, flags.now, 'CAREPIPE_NOW', 'appointments.now'), settings.lang, now);
        const summary = await ingestAppointments(
          {
            files: paths.map((p) => path.resolve(settings.cwd, p)),
            now: clock,
            lang: settings.lang,
            batchSize: Math.max(1, flags.batchSize),
            dryRun: settings.dryRun,
            signal,
          },
          { knex: db.knex, ledger, reporter },
        );
        const human = appointmentMessage(settings.lang, 'SUMMARY', {
          read: ledger.counts.read,
          written: ledger.counts.written,
          unchanged: ledger.counts.unchanged,
          rejected: ledger.counts.rejected,
          missed: summary.missed,
          resolved: summary.resolved,
          pending: summary.pending,
        });
        return { human, summary: { now: clock.toISOString(), ...summary } };
      },
    );
  });
}
