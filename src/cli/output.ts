/**
 * Human and machine output kept apart. Progress and log lines go to stderr: an ora spinner on a
 * terminal; plain `key=value` lines when not a terminal; JSON lines with --json. Results go to stdout:
 * text for people, or exactly one JSON object with --json. --quiet keeps only warnings and errors.
 */
import type { Ora } from 'ora';
import { maskText } from '../http/mask.js';
import type { Fields, LogLevel, Reporter as RunReporter } from '../pipeline/reporter.js';
import type { CliIO } from './io.js';

export type { Fields, LogLevel } from '../pipeline/reporter.js';
export { formatTable } from '../io/table.js';

/**
 * Narrowest terminal the spinner is drawn on. ora divides by the width to count the lines it must
 * erase: a width of 0 (a terminal that reports no size) makes that Infinity, and the spinner then
 * writes cursor-up sequences without end and never yields to the event loop (nor to SIGINT).
 */
export const MIN_SPINNER_COLUMNS = 20;

export interface ReporterOptions {
  json: boolean;
  quiet: boolean;
  color: boolean;
}

export class Reporter implements RunReporter {
  private spinner: Ora | undefined;
  private lastProgressLine = 0;
  private readonly onResize = () => {
    // The terminal shrank below what the spinner can draw on: plain lines from here on.
    if (this.spinner && !this.wideEnough()) this.dropSpinner();
  };

  constructor(
    private readonly io: CliIO,
    private readonly options: ReporterOptions,
  ) {}

  /** Spinner on a terminal wide enough to draw it (not with --json or --quiet). */
  get interactive(): boolean {
    return this.io.isTTY && !this.options.json && !this.options.quiet && this.wideEnough();
  }

  private wideEnough(): boolean {
    // No width callback: a terminal that cannot be asked is taken to be a usual one.
    if (!this.io.stderrColumns) return true;
    return (this.io.stderrColumns() ?? 0) >= MIN_SPINNER_COLUMNS;
  }

  private dropSpinner(): void {
    this.spinner?.stop();
    this.spinner = undefined;
    this.io.stderr.off('resize', this.onResize);
  }

  async start(text: string): Promise<void> {
    if (this.interactive) {
      const { default: ora } = await import('ora');
      this.spinner = ora({ text, stream: this.io.stderr, color: 'cyan', isEnabled: true, isSilent: false }).start();
      this.io.stderr.on('resize', this.onResize);
    } else {
      this.log('info', 'start', { what: text });
    }
  }

  /**
   * Progress: the spinner text on a terminal; otherwise a `progress` line at most every 5 seconds so
   * cron logs show a long run is alive without flooding.
   */
  progress(text: string, fields: Fields = {}): void {
    if (this.spinner) {
      this.spinner.text = text;
      return;
    }
    const now = Date.now();
    if (now - this.lastProgressLine >= 5_000) {
      this.lastProgressLine = now;
      this.log('info', 'progress', fields);
    }
  }

  info(event: string, fields: Fields = {}): void {
    this.log('info', event, fields);
  }

  warn(event: string, fields: Fields = {}): void {
    this.log('warn', event, fields);
  }

  error(event: string, fields: Fields = {}): void {
    this.log('error', event, fields);
  }

  /** End the spinner (success or failure mark). */
  stop(ok: boolean, text?: string): void {
    if (!this.spinner) return;
    if (ok) this.spinner.succeed(text);
    else this.spinner.fail(text);
    this.spinner = undefined;
    this.io.stderr.off('resize', this.onResize);
  }

  /** The command's result: `human` text, or `json` as one object on stdout with --json. */
  result(human: string | undefined, json: unknown): void {
    if (this.options.json) {
      this.io.stdout.write(`${maskText(JSON.stringify(json))}\n`);
    } else if (!this.options.quiet && human !== undefined && human !== '') {
      this.io.stdout.write(maskText(human.endsWith('\n') ? human : `${human}\n`));
    }
  }

  /** Raw text to stdout (listings, CSV), whatever the mode. */
  write(text: string): void {
    this.io.stdout.write(text);
  }

  private log(level: LogLevel, event: string, fields: Fields): void {
    if (this.options.quiet && level === 'info') return;
    // Retry lines and warnings quote URLs and server text: masked here, the one way out to stderr.
    const entries = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]): [string, unknown] => [k, typeof v === 'string' ? maskText(v) : v]);
    if (this.options.json) {
      this.io.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, event, ...Object.fromEntries(entries) })}\n`);
      return;
    }
    if (this.spinner) {
      // Print above the spinner rather than through it.
      this.spinner.clear();
      this.io.stderr.write(`${humanLine(level, event, entries)}\n`);
      this.spinner.render();
      return;
    }
    if (this.io.isTTY) {
      this.io.stderr.write(`${humanLine(level, event, entries)}\n`);
      return;
    }
    const kv = entries.map(([k, v]) => `${k}=${logfmtValue(v)}`).join(' ');
    this.io.stderr.write(`time=${new Date().toISOString()} level=${level} event=${event}${kv ? ` ${kv}` : ''}\n`);
  }
}

function humanLine(level: LogLevel, event: string, entries: [string, unknown][]): string {
  const message = entries.find(([k]) => k === 'message')?.[1];
  const rest = entries.filter(([k]) => k !== 'message').map(([k, v]) => `${k}=${v}`).join(' ');
  const prefix = level === 'info' ? '' : `${level}: `;
  return `${prefix}${message ?? event}${rest ? ` (${rest})` : ''}`;
}

function logfmtValue(value: unknown): string {
  const text = String(value);
  return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
}
