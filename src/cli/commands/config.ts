import { Command } from 'commander';
import { maskSecrets, type CommonFlags } from '../../config.js';
import { prepare, withCommonOptions, type CliState } from '../common.js';

export function registerConfig(program: Command, state: CliState): void {
  withCommonOptions(program.command('config').description('print the resolved settings, secrets masked')).action(
    async (flags: CommonFlags) => {
      const { settings, reporter } = prepare(state, flags);
      const resolved = maskSecrets({
        database: settings.databaseUrl ?? `embedded (${settings.dataDir})`,
        dataDir: settings.dataDir,
        dbSchema: settings.dbSchema ?? null,
        configFile: settings.configFile ?? null,
        lang: settings.lang,
        json: settings.json,
        quiet: settings.quiet,
        wait: settings.wait,
        file: settings.file,
      }) as Record<string, unknown>;
      const human = Object.entries(resolved)
        .map(([k, v]) => `${k}: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
        .join('\n');
      reporter.result(human, resolved);
    },
  );
}
