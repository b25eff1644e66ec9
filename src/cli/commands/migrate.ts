import { Command } from 'commander';
import type { CommonFlags } from '../../config.js';
import { formatTable } from '../output.js';
import { announceCreated, prepare, withCommonOptions, type CliState } from '../common.js';

interface MigrateFlags extends CommonFlags {
  status?: boolean;
  rollback?: boolean;
}

export function registerMigrate(program: Command, state: CliState): void {
  withCommonOptions(
    program
      .command('migrate')
      .description('bring the database schema up to date (or --status, --rollback)')
      .option('--status', 'list applied and pending migrations')
      .option('--rollback', 'undo the last batch of migrations'),
  ).action(async (flags: MigrateFlags) => {
    const { settings, reporter } = prepare(state, flags);
    const { openDatabase } = await import('../../db/connection.js');
    const { migrateLatest, migrateRollback, migrationStatus } = await import('../../db/migrations.js');
    // --status and --rollback only look or undo: it reports a missing database instead of creating one.
    const db = await openDatabase(settings, { wait: settings.wait, create: !flags.status && !flags.rollback, onWarning: (message) => reporter.warn('data_dir', { message }) });
    announceCreated(db, settings, reporter);
    try {
      if (flags.status) {
        const { applied, pending } = await migrationStatus(db);
        const rows = [...applied.map((m) => [m, 'applied']), ...pending.map((m) => [m, 'pending'])];
        reporter.result(`${db.where}\n${formatTable(['migration', 'state'], rows)}`, { database: db.where, applied, pending });
        return;
      }
      if (flags.rollback) {
        const { batch, ran } = await migrateRollback(db);
        reporter.result(ran.length ? `Batch ${batch} rolled back: ${ran.length} migration${ran.length === 1 ? '' : 's'}` : 'Already at the base migration', {
          rolled_back: ran,
          batch,
        });
        return;
      }
      const { batch, ran } = await migrateLatest(db);
      reporter.result(ran.length ? `Batch ${batch} run: ${ran.length} migration${ran.length === 1 ? '' : 's'}` : 'Already up to date', {
        database: db.where,
        ran,
        batch,
      });
    } finally {
      await db.close();
    }
  });
}
