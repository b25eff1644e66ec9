import type { Readable, Writable } from 'node:stream';
import type { Env } from '../config.js';

/** What a command may touch of the outside world; `main` takes it so tests can run the CLI in-process. */
export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  env: Env;
  cwd: string;
  /** stderr is a terminal: spinners and colour allowed. */
  isTTY: boolean;
  /** stdout is a terminal: tables rather than machine formats by default. */
  stdoutIsTTY: boolean;
  /**
   * Width of the stderr terminal now (it changes when the window does); 0 or undefined when the
   * terminal reports none (`script`, `docker exec -t`).
   */
  stderrColumns?: () => number | undefined;
}

export function processIO(): CliIO {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    isTTY: Boolean(process.stderr.isTTY),
    stdoutIsTTY: Boolean(process.stdout.isTTY),
    stderrColumns: () => process.stderr.columns,
  };
}
