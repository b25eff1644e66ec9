/**
 * The flags of commands that reach a server over HTTP: `--allow-origin` (repeatable; also
 * CAREPIPE_ALLOW_ORIGIN, comma-separated, and `allowOrigins` in the config file), and the run's
 * `--max-response-mb` from the common settings.
 */
import type { Command } from 'commander';

export type { HttpFlags } from '../http/policy.js';
export { allowedOrigins } from '../http/policy.js';

/** Adds `--allow-origin` and `--max-response-mb`, the flags of commands that reach a server. */
export function withHttpOptions(command: Command): Command {
  return command
    .option('--max-response-mb <mb>', 'largest HTTP answer read into memory, in MB (env CAREPIPE_MAX_RESPONSE_MB; default 512)', Number)
    .option(
      '--allow-origin <origin>',
      'another origin the server may send us to (next links, Bulk Data files), credentials included; repeatable (env CAREPIPE_ALLOW_ORIGIN, config allowOrigins)',
      (value: string, all: string[] = []) => [...all, value],
    );
}
