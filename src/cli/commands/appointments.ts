import { Command } from 'commander';
import { setting, type CommonFlags } from '../../config.js';
import { runCommand, withCommonOptions, type CliState } from '../common.js';

interface RefreshMissedFlags extends CommonFlags {
  now?: string;
}

/** `carepipe appointments …`: upkeep of the appointments table (cron runs refresh-missed). */
export function registerAppointments(program: Command, state: CliState): void {
  const group = program.command('appointments').description('appointments upkeep');
  withCommonOptions(
    group
      .command('refresh-missed')
      .description('mark missed every appointment still active after its end (start + duration)')
      .option('--now <time>', 'the clock to measure against, with an offset (env CAREPIPE_NOW; default: now)'),
    { dryRun: true, lang: true },
  ).action(async (flags: RefreshMissedFlags) => {
    await runCommand(
      state,
      flags,
      { name: 'appointments refresh-missed', argv: flags.now ? ['--now', flags.now] : [], lockName: 'appointments' },
      async ({ settings, db, ledger, now }) => {
        const { parseRunClock, refreshMissed } = await import('../../appointments/command.js');
        const { appointmentMessage } = await import('../../i18n/appointments.js');
        const clock = parseRunClock(setting(settings, flags.now, 'CAREPIPE_NOW', 'appointments.now'), settings.lang, now);
        const missed = await refreshMissed(db.knex, ledger, clock, settings.dryRun);
        return {
          human: appointmentMessage(settings.lang, 'REFRESH_SUMMARY', { missed, now: clock.toISOString() }),
          summary: { now: clock.toISOString(), missed },
        };
      },
    );
  });
}
