/**
 * What a run tells its user, as the stages see it. The CLI's terminal reporter (src/cli/output.ts)
 * implements it; code below the CLI depends on this interface only, never on the CLI itself.
 */

export type LogLevel = 'info' | 'warn' | 'error';
export type Fields = Record<string, string | number | boolean | null | undefined>;

export interface Reporter {
  /** A spinner is drawn (a terminal wide enough, not --json nor --quiet). */
  readonly interactive: boolean;
  start(text: string): Promise<void>;
  /** Progress: spinner text on a terminal, else a `progress` line now and then. */
  progress(text: string, fields?: Fields): void;
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
  /** End the spinner (success or failure mark). */
  stop(ok: boolean, text?: string): void;
  /** The command's result: `human` text, or `json` as one object on stdout with --json. */
  result(human: string | undefined, json: unknown): void;
  /** Raw text to stdout (listings, CSV), whatever the mode. */
  write(text: string): void;
}
