/**
 * Run carepipe as a user would: the built binary in a child process (`runCli`), or `main` in-process
 * (`runMain`, faster, same code). Both return the exit code and what was printed.
 */
import { spawn } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/main.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(REPO_ROOT, 'bin', 'carepipe');
export const SHARED = path.resolve(REPO_ROOT, '..', 'shared');

export interface CliResult {
  code: number | null;
  signal?: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string | Buffer;
  timeoutMs?: number;
}

/** The environment a child gets: this one without database settings that would leak into the test. */
export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const key of Object.keys(env)) {
    if (key === 'DATABASE_URL' || key.startsWith('CAREPIPE_') || key.startsWith('VITEST') || key === 'NODE_OPTIONS') delete env[key];
  }
  return { ...env, ...extra };
}

export function runCli(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? REPO_ROOT,
      env: childEnv(options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** `main(argv)` in this process, with captured stdout/stderr and a non-TTY terminal. */
export async function runMain(args: string[], options: RunOptions = {}): Promise<CliResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const env: Record<string, string | undefined> = { NO_COLOR: '1', ...options.env };
  const code = await main(args, {
    stdout,
    stderr,
    stdin: Readable.from(options.input === undefined ? [] : [options.input]),
    env,
    cwd: options.cwd ?? REPO_ROOT,
    isTTY: false,
    stdoutIsTTY: false,
  });
  await new Promise((r) => setImmediate(r));
  return { code, stdout: out, stderr: err };
}
