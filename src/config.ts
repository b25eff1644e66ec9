/**
 * Settings are resolved once, at the boundary: flags, then environment variables, then an optional
 * config file (`carepipe.config.json` or `--config`), then defaults. Nothing below the CLI reads
 * process.env or process.argv.
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CarepipeError } from './errors.js';
import { SCHEMA_ROLES } from './db/schemas.js';
import { isSecretSetting, MASK, maskSecrets } from './http/mask.js';
import { DEFAULT_MAX_RESPONSE_MB } from './http/policy.js';

export type Env = Record<string, string | undefined>;

/** Flags every command accepts (see src/cli/common.ts). */
export interface CommonFlags {
  databaseUrl?: string;
  dataDir?: string;
  dbSchema?: string;
  config?: string;
  json?: boolean;
  quiet?: boolean;
  dryRun?: boolean;
  wait?: boolean;
  lang?: string;
  maxResponseMb?: number;
}

export interface Settings {
  /** A postgres:// URL when a server is used; undefined means the embedded PGlite database. */
  databaseUrl?: string;
  /** Folder of the embedded database. */
  dataDir: string;
  /** Schema to work in (created if missing); undefined means the connection's default. */
  dbSchema?: string;
  json: boolean;
  quiet: boolean;
  dryRun: boolean;
  wait: boolean;
  /** Message language: 'en' or 'fr'. */
  lang: 'en' | 'fr';
  /**
   * Largest body carepipe takes from a source, in MB: an HTTP response, or what stdin holds (spooled
   * to disk before it is read). Flag --max-response-mb, env CAREPIPE_MAX_RESPONSE_MB, file maxResponseMb.
   */
  maxResponseMb: number;
  /** Colour allowed on a TTY (NO_COLOR unset). */
  color: boolean;
  /** The config file that was read, if any. */
  configFile?: string;
  /** The whole config file, for command-specific sections (for example `backends.noteworth`). */
  file: Record<string, unknown>;
  /** The environment, kept so that command-specific settings resolve with the same precedence. */
  env: Env;
  cwd: string;
}

const CONFIG_FILE = 'carepipe.config.json';


function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CarepipeError('CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`, { file });
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new Error('the top level must be a JSON object');
    }
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new CarepipeError('CONFIG_INVALID', `config file ${file} is not valid: ${(err as Error).message}`, { file });
  }
}

function pickLang(value: string | undefined): 'en' | 'fr' | undefined {
  if (!value) return undefined;
  const lower = value.toLowerCase();
  if (lower.startsWith('fr')) return 'fr';
  if (lower.startsWith('en') || lower === 'c' || lower.startsWith('c.') || lower === 'posix') return 'en';
  return undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function bool(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    if (['1', 'true', 'yes', 'on'].includes(value.toLowerCase())) return true;
    if (['0', 'false', 'no', 'off', ''].includes(value.toLowerCase())) return false;
  }
  return undefined;
}

/**
 * The default home, found as git finds `.git`: the nearest `.carepipe/` holding a `db/` folder in
 * `cwd` or a folder above it, so a command run from a subfolder of a project uses the project's
 * database; none found, `cwd/.carepipe` (created there by the first command that writes).
 */
export function findHome(cwd: string): string {
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, '.carepipe', 'db'))) return path.join(dir, '.carepipe');
    if (path.dirname(dir) === dir) return path.resolve(cwd, '.carepipe');
  }
}

export function resolveSettings(flags: CommonFlags, env: Env, cwd: string): Settings {
  const explicitConfig = flags.config ?? env.CAREPIPE_CONFIG;
  const configFile = explicitConfig
    ? path.resolve(cwd, explicitConfig)
    : existsSync(path.join(cwd, CONFIG_FILE))
      ? path.join(cwd, CONFIG_FILE)
      : undefined;
  if (explicitConfig && !existsSync(configFile!)) {
    throw new CarepipeError('CONFIG_INVALID', `config file ${configFile} does not exist`, { file: configFile });
  }
  const file = configFile ? readConfigFile(configFile) : {};

  const databaseUrl = flags.databaseUrl ?? str(env.DATABASE_URL) ?? str(file.databaseUrl);
  if (databaseUrl) checkDatabaseUrl(databaseUrl);
  const givenHome = str(env.CAREPIPE_HOME) ?? str(file.home);
  const home = givenHome ? path.resolve(cwd, givenHome) : findHome(cwd);
  const givenDataDir = flags.dataDir ?? str(env.CAREPIPE_DATA_DIR) ?? str(file.dataDir) ?? path.join(home, 'db');
  // `memory://` is the in-memory embedded database, not a folder name (MEMORY in db/connection.ts).
  const dataDir = givenDataDir === 'memory://' ? givenDataDir : path.resolve(cwd, givenDataDir);
  const dbSchema = flags.dbSchema ?? str(env.CAREPIPE_DB_SCHEMA) ?? str(file.dbSchema);
  // NAME_appointments, the longest of the schemas named after it, must fit Postgres's 63 bytes
  if (dbSchema !== undefined && !/^[a-z_][a-z0-9_]{0,49}$/.test(dbSchema)) {
    throw new CarepipeError('CONFIG_INVALID', `schema name '${dbSchema}' must be lower-case letters, digits and _, at most 50 of them`);
  }
  // NAME_fhir is the FHIR schema of --db-schema NAME: a base named like one would share it
  const role = SCHEMA_ROLES.find((r) => dbSchema === r || dbSchema?.endsWith(`_${r}`));
  if (role) {
    throw new CarepipeError('CONFIG_INVALID', `schema name '${dbSchema}' is taken by carepipe's layout (NAME_${role} holds the ${role} tables of NAME): choose another`);
  }

  return {
    databaseUrl,
    dataDir,
    dbSchema,
    json: flags.json ?? bool(env.CAREPIPE_JSON) ?? bool(file.json) ?? false,
    quiet: flags.quiet ?? bool(env.CAREPIPE_QUIET) ?? bool(file.quiet) ?? false,
    dryRun: flags.dryRun ?? false,
    wait: flags.wait ?? bool(env.CAREPIPE_WAIT) ?? false,
    maxResponseMb: maxResponseMb(flags.maxResponseMb, env.CAREPIPE_MAX_RESPONSE_MB, file.maxResponseMb),
    lang: pickLang(flags.lang) ?? pickLang(env.CAREPIPE_LANG) ?? pickLang(str(file.lang)) ?? pickLang(env.LC_ALL) ?? pickLang(env.LC_MESSAGES) ?? pickLang(env.LANG) ?? 'en',
    color: env.NO_COLOR === undefined || env.NO_COLOR === '',
    configFile,
    file,
    env,
    cwd,
  };
}

/**
 * A database URL that a driver would misread fails here, as a usage error that never shows the URL
 * (it may hold a password). The usual cause is a password with `/`, `#`, `?` or `@` not percent-encoded:
 * the URL then ends early (`#` starts a fragment, `/` a path) and the rest is taken for a host or port.
 */
function checkDatabaseUrl(url: string): void {
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new CarepipeError('CONFIG_INVALID', 'the database URL must start with postgres:// or postgresql://');
  }
  const encodeHint = 'if the password holds / # ? @ or %, percent-encode them (/ as %2F, # as %23, ? as %3F, @ as %40, % as %25)';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CarepipeError('CONFIG_INVALID', `the database URL is not a valid URL; ${encodeHint}`);
  }
  // `postgres://u:12/ab@host/db` parses, as host u, port 12 and a path holding the real host.
  if (parsed.pathname.includes('@') || parsed.hash.includes('@') || parsed.search.includes('@')) {
    throw new CarepipeError('CONFIG_INVALID', `the database URL has an @ after its host; ${encodeHint}`);
  }
}

function maxResponseMb(flag: number | undefined, env: string | undefined, file: unknown): number {
  const given: [string, unknown][] = [
    ['--max-response-mb', flag],
    ['CAREPIPE_MAX_RESPONSE_MB', str(env)],
    ['maxResponseMb in the config file', typeof file === 'string' ? str(file) : file],
  ];
  const [name, value] = given.find(([, v]) => v !== undefined) ?? ['', DEFAULT_MAX_RESPONSE_MB];
  const mb = Number(value);
  if (!Number.isFinite(mb) || mb <= 0) {
    throw new CarepipeError('CONFIG_INVALID', `${name} must be a positive number of megabytes, not '${String(value)}'`, { field: name });
  }
  return mb;
}

/**
 * A command-specific setting: flag, then environment variable, then config file path, then default.
 * `filePath` is a dotted path into the config file, for example `backends.noteworth.baseUrl`.
 */
export function setting(
  settings: Settings,
  flag: string | undefined,
  envName: string | undefined,
  filePath: string | undefined,
  fallback?: string,
): string | undefined {
  if (flag !== undefined && flag !== '') return flag;
  if (envName && str(settings.env[envName])) return settings.env[envName];
  if (filePath) {
    let node: unknown = settings.file;
    for (const part of filePath.split('.')) {
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
    }
    if (typeof node === 'string' || typeof node === 'number') return String(node);
  }
  return fallback;
}

// One masking implementation (src/http/mask.ts); re-exported for the callers that know it from here.
export { maskSecrets, maskUrl } from './http/mask.js';

/** Command arguments as recorded in the ledger: flags that carry secrets are masked. */
export function redactArgs(argv: readonly string[]): string[] {
  const out: string[] = [];
  let maskNext = false;
  for (const arg of argv) {
    if (maskNext) {
      out.push(MASK);
      maskNext = false;
      continue;
    }
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      const name = arg.slice(2, eq);
      out.push(isSecretSetting(name) ? `--${name}=${MASK}` : `--${name}=${String(maskSecrets(arg.slice(eq + 1)))}`);
      continue;
    }
    if (arg.startsWith('--') && isSecretSetting(arg.slice(2))) {
      out.push(arg);
      maskNext = true;
      continue;
    }
    out.push(String(maskSecrets(arg)));
  }
  return out;
}

/** The operating-system user running carepipe, for the ledger. */
export function osUser(env: Env): string {
  try {
    return os.userInfo().username;
  } catch {
    return env.USER ?? env.LOGNAME ?? 'unknown';
  }
}
