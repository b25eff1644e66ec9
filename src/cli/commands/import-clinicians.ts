import { Command, InvalidArgumentError } from 'commander';
import { setting, type CommonFlags, type Settings } from '../../config.js';
import { CarepipeError } from '../../errors.js';
import { checkConfig, envName } from '../../clinicians/command.js';
import { builtinRegistry, loadBackendModule } from '../../clinicians/registry.js';
import type { BackendConfig, ClinicianBackend } from '../../clinicians/types.js';
import { prepare, runCommand, wholeNumber, withCommonOptions, type CliState } from '../common.js';
import { allowedOrigins, withHttpOptions, type HttpFlags } from '../http-options.js';

interface ImportCliniciansFlags extends CommonFlags, HttpFlags {
  backendModule?: string;
  baseUrl?: string;
  tokenUrl?: string;
  clientId?: string;
  privateKey?: string;
  scope?: string;
  maxRetries?: number;
  retryDelay?: number;
  timeout?: number;
  batchSize?: number;
}

const FLAG_KEYS: Record<string, keyof ImportCliniciansFlags> = {
  '--base-url': 'baseUrl',
  '--token-url': 'tokenUrl',
  '--client-id': 'clientId',
  '--private-key': 'privateKey',
  '--scope': 'scope',
};

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('--timeout must be a positive number of seconds');
  return n;
}

/** The backend's settings: flag, then its environment variable, then `backends.<name>.<setting>` in the config file. */
function backendConfig(backend: ClinicianBackend, flags: ImportCliniciansFlags, settings: Settings): BackendConfig {
  const config: Record<string, string | undefined> = {};
  for (const s of backend.settings) {
    const flag = s.flag ? (flags[FLAG_KEYS[s.flag]!] as string | undefined) : undefined;
    config[s.name] = setting(settings, flag, s.env ?? envName(backend.name, s.name), `backends.${backend.name}.${s.name}`, s.default);
  }
  return config;
}

function numberSetting(settings: Settings, flag: number | undefined, env: string, key: string, fallback: number): number {
  const value = setting(settings, flag === undefined ? undefined : String(flag), env, key, String(fallback))!;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new CarepipeError('CONFIG_INVALID', `${env} / ${key} must be a non-negative number, not "${value}"`);
  return n;
}

export function registerImportClinicians(program: Command, state: CliState): void {
  const registry = builtinRegistry();
  const width = Math.max(...registry.names().map((n) => n.length));
  withHttpOptions(withCommonOptions(
    program
      .command('import-clinicians')
      .description('fetch clinicians from a provider backend and upsert them into the clinicians table')
      .argument('[backend]', `registered backend: ${registry.names().join(', ')}`)
      .option('--backend-module <file>', 'load the backend from this ES module (default export or `backend`)')
      .option('--base-url <url>', 'provider base URL (env <BACKEND>_BASE_URL, e.g. NOTEWORTH_BASE_URL)')
      .option('--token-url <url>', 'OAuth 2 token endpoint, for backends that use one (env <BACKEND>_TOKEN_URL)')
      .option('--client-id <id>', 'client id, for backends that use one (env <BACKEND>_CLIENT_ID)')
      .option('--private-key <file>', 'PEM file of the client key that signs token requests (env <BACKEND>_PRIVATE_KEY)')
      .option('--scope <scope>', 'OAuth 2 scope (env <BACKEND>_SCOPE)')
      .option('--max-retries <n>', 'retries per HTTP call after the first attempt (env CAREPIPE_MAX_RETRIES; default 5)', wholeNumber('--max-retries'))
      .option('--retry-delay <ms>', 'base of the exponential backoff, in ms (env CAREPIPE_RETRY_DELAY; default 500)', wholeNumber('--retry-delay'))
      .option('--timeout <seconds>', 'give up an HTTP attempt after this long (env CAREPIPE_HTTP_TIMEOUT; default 10)', seconds)
      .option('--batch-size <n>', 'clinicians per transaction (default 500)', wholeNumber('--batch-size'))
      .addHelpText(
        'after',
        `\nBackends:\n${registry
          .list()
          .map((b) => `  ${b.name.padEnd(width)}  ${b.description}`)
          .join('\n')}\n\nExamples:\n  NOTEWORTH_BASE_URL=https://api.noteworth.example carepipe import-clinicians noteworth\n  carepipe import-clinicians fhir-practitioner --base-url https://fhir.example/r4\n`,
      ),
    { dryRun: true },
  )).action(async (name: string | undefined, flags: ImportCliniciansFlags, command: Command) => {
    let backend: ClinicianBackend;
    if (flags.backendModule) {
      backend = await loadBackendModule(flags.backendModule, state.io.cwd);
      if (name && name !== backend.name) {
        throw new CarepipeError('USAGE', `the module ${flags.backendModule} holds backend "${backend.name}", not "${name}"`);
      }
    } else if (name) {
      backend = registry.get(name);
    } else {
      throw new CarepipeError('USAGE', `name a backend (${registry.names().join(', ')}) or give --backend-module FILE`);
    }
    // Settings are checked before the database is opened: a usage error leaves no run behind.
    const config = backendConfig(backend, flags, prepare(state, flags).settings);
    checkConfig(backend, config);
    await runCommand(state, flags, { name: 'import-clinicians', target: backend.name, argv: rawArgs(command) }, async ({ settings, db, ledger, reporter, signal, now }) => {
      const { importClinicians } = await import('../../clinicians/command.js');
      await reporter.start(`import-clinicians ${backend.name}`);
      const result = await importClinicians(
        {
          backend,
          config,
          maxRetries: numberSetting(settings, flags.maxRetries, 'CAREPIPE_MAX_RETRIES', 'maxRetries', 5),
          baseDelayMs: numberSetting(settings, flags.retryDelay, 'CAREPIPE_RETRY_DELAY', 'retryDelay', 500),
          timeoutMs: numberSetting(settings, flags.timeout, 'CAREPIPE_HTTP_TIMEOUT', 'httpTimeout', 10) * 1000,
          allowOrigins: allowedOrigins(settings, flags),
          maxResponseMb: settings.maxResponseMb,
          batchSize: flags.batchSize || undefined,
          dryRun: settings.dryRun,
        },
        {
          knex: db.knex,
          ledger,
          signal,
          now,
          reporter,
        },
      );
      const { counts } = ledger;
      const human =
        `${backend.name}: ${counts.read} read, ${result.inserted} new, ${result.updated} updated, ${result.unchanged} unchanged, ` +
        `${result.duplicates} duplicates, ${counts.rejected} rejected, ${result.marked_inactive} marked inactive` +
        `${backend.completeListing ? '' : ' (listing not complete: none marked inactive)'}\n` +
        `http: ${plural(result.http.requests, 'request')}, ${plural(result.http.failed_attempts, 'failed attempt')}` +
        `${Object.keys(result.http.failures).length ? ` (${Object.entries(result.http.failures).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}, ` +
        `token ${result.http.token}, ${plural(result.http.reauthentications, 're-authentication')}`;
      return { human };
    });
  });
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** The command line after `import-clinicians`, as typed (runCommand redacts secrets before the ledger). */
function rawArgs(command: Command): string[] {
  const parent = command.parent as (Command & { rawArgs?: string[] }) | null;
  const raw = parent?.rawArgs ?? [];
  const at = raw.indexOf('import-clinicians');
  return at >= 0 ? raw.slice(at + 1) : raw;
}
