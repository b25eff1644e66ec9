import { Command } from 'commander';
import type { CommonFlags } from '../../config.js';
import { formatTable } from '../output.js';
import { announceCreated, prepare, withCommonOptions, type CliState } from '../common.js';
import { osUser } from '../../config.js';
import type { Settings } from '../../config.js';
import type { Database } from '../../db/connection.js';
import type { RunLedger as RunLedgerType } from '../../db/ledger.js';
import { ExitCode } from '../../errors.js';
import type { Reporter } from '../output.js';

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
      // then the flat tables whose shipped view changed since they were built
      const views = await applyShippedViews(state, db, settings, reporter);
      const viewsLine = views?.refreshed.length
        ? `\nViews changed: ${views.refreshed.length} table${views.refreshed.length === 1 ? '' : 's'} rebuilt from fhir_resources (${views.refreshed.join(', ')})`
        : '';
      reporter.result(`${ran.length ? `Batch ${batch} run: ${ran.length} migration${ran.length === 1 ? '' : 's'}` : 'Already up to date'}${viewsLine}`, {
        database: db.where,
        ran,
        batch,
        views: { refreshed: views?.refreshed ?? [], recorded: views?.recorded ?? [], resources: views?.resources ?? 0, rejected: views?.rejected ?? 0 },
      });
      if (views?.rejected) state.exitCode = ExitCode.REJECTS;
    } finally {
      await db.close();
    }
  });
}

/**
 * Rebuilds the flat tables whose shipped view changed (src/fhir/refresh-run.ts), under ingest-fhir's
 * lock, recorded in the ledger as a `migrate` run when there was anything to do.
 */
async function applyShippedViews(state: CliState, db: Database, settings: Settings, reporter: Reporter) {
  const [{ refreshChangedShippedViews }, { RunLedger }, { acquireRunLock }] = await Promise.all([
    import('../../fhir/refresh-run.js'),
    import('../../db/ledger.js'),
    import('../../db/lock.js'),
  ]);
  let ledger: RunLedgerType | undefined;
  let release: (() => Promise<void>) | undefined;
  const signal = new AbortController().signal;
  try {
    const sync = await refreshChangedShippedViews({
      db,
      reporter,
      signal,
      start: async () => {
        release = await acquireRunLock(db, 'ingest-fhir', { wait: settings.wait });
        ledger = await RunLedger.start(db.knex, { command: 'migrate', args: ['migrate'], user: osUser(state.io.env) });
        return ledger;
      },
    });
    await ledger?.finish(sync?.rejected ? 'partial' : 'succeeded', sync?.rejected ? ExitCode.REJECTS : ExitCode.OK);
    return sync;
  } catch (err) {
    await ledger?.finish('failed', ExitCode.INTERNAL, (err as Error).message).catch(() => undefined);
    throw err;
  } finally {
    await release?.().catch(() => undefined);
  }
}
