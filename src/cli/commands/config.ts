import { Command } from 'commander';
import { maskSecrets, type CommonFlags } from '../../config.js';
import { allowedOrigins } from '../../http/policy.js';
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
        maxResponseMb: settings.maxResponseMb,
        file: settings.file,
      }) as Record<string, unknown>;
      // Origins carry no credentials (userinfo is not part of an origin), so they are shown as resolved.
      resolved.allowOrigins = allowedOrigins(settings, {});
      const human = Object.entries(resolved)
        .map(([k, v]) => `${k}: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
        .join('\n');
      reporter.result(human, resolved);
    },
  );
}
