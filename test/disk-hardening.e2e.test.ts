/**
 * Files on disk and the terminal, through the built binary (issue 21): the embedded database is
 * private whatever the umask, output files are 0600 (or --file-mode) and keep a replaced file's mode,
 * the stdin spool is private, capped and never left behind, symbolic link loops and FIFOs are handled,
 * a missing -o folder and a badly written database URL are usage errors, and a terminal without a
 * width gets plain lines rather than a spinner that never yields.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { BACKENDS, createTestDatabase, useTestDatabase } from './helpers/db.js';
import { BIN, childEnv, REPO_ROOT, runCli, runMain, SHARED, type CliResult } from './helpers/cli.js';

const SAMPLE = path.join(REPO_ROOT, 'fixtures', 'fhir', 'sample');
const SAMPLE_RESOURCES = 41;
const PATIENT_LINE = `${JSON.stringify({ resourceType: 'Patient', id: 'pat-spool', name: [{ family: 'Okonkwo' }] })}\n`;

/** Permission bits of a path. */
function mode(file: string): number {
  return statSync(file).mode & 0o777;
}

/** Every path under `dir` (itself included) with its permission bits, as `0NNN` strings by kind. */
function modesUnder(dir: string): { files: Set<string>; folders: Set<string>; count: number } {
  const files = new Set<string>();
  const folders = new Set<string>();
  let count = 0;
  const visit = (entry: string) => {
    const info = statSync(entry);
    count++;
    const bits = `0${(info.mode & 0o777).toString(8)}`;
    if (info.isDirectory()) {
      folders.add(bits);
      for (const name of readdirSync(entry)) visit(path.join(entry, name));
    } else {
      files.add(bits);
    }
  };
  visit(dir);
  return { files, folders, count };
}

/** A shell command line with the child environment of runCli (plus `env`), e.g. to set a umask or run `script`. */
function runShell(command: string, options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number; input?: string } = {}): Promise<CliResult & { ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    // A group of its own, so that a run that does not stop (`script` and carepipe under it) is killed whole.
    const child = spawn('sh', ['-c', command], { cwd: options.cwd ?? REPO_ROOT, env: childEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('latin1').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('latin1').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin.end(options.input ?? '');
  });
}

const quote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;
const carepipe = (args: string[]) => [process.execPath, BIN, ...args].map(quote).join(' ');

async function until(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the embedded database folder', () => {
  for (const umask of ['022', '000']) {
    it(`is 0700 with every file 0600 when created under umask ${umask}`, async () => {
      const test = await createTestDatabase('pglite');
      try {
        // The default place, ./.carepipe/db: its parent is created private too.
        const result = await runShell(`umask ${umask}; exec ${carepipe(['ingest-fhir', SAMPLE])}`, { cwd: test.tmp });
        expect(result.stderr).not.toContain('error');
        expect(result.code).toBe(0);
        const home = path.join(test.tmp, '.carepipe');
        expect(mode(home)).toBe(0o700);
        const db = modesUnder(path.join(home, 'db'));
        expect(db.count).toBeGreaterThan(100);
        expect([...db.folders]).toEqual(['0700']);
        expect([...db.files]).toEqual(['0600']);
        // A new database is no news: nothing to warn about.
        expect(result.stderr).not.toContain('open to other users');
      } finally {
        await test.cleanup();
      }
    });
  }

  it('of an existing database open to others is tightened on open, with one warning, and not again', async () => {
    const test = await createTestDatabase('pglite');
    try {
      const dataDir = test.flags.dataDir!;
      const loosen = (entry: string) => {
        const dir = statSync(entry).isDirectory();
        chmodSync(entry, dir ? 0o777 : 0o666);
        if (dir) for (const name of readdirSync(entry)) loosen(path.join(entry, name));
      };
      loosen(dataDir);
      const first = await runShell(`umask 000; exec ${carepipe(['migrate', '--data-dir', dataDir])}`, { cwd: test.tmp });
      expect(first.code).toBe(0);
      expect(first.stdout).toContain('Already up to date');
      expect(first.stderr.match(/open to other users/g)).toHaveLength(1);
      expect(first.stderr).toContain(`the embedded database in ${dataDir} was open to other users`);
      const db = modesUnder(dataDir);
      expect([...db.folders]).toEqual(['0700']);
      expect([...db.files]).toEqual(['0600']);
      const second = await runShell(`umask 000; exec ${carepipe(['migrate', '--data-dir', dataDir])}`, { cwd: test.tmp });
      expect(second.code).toBe(0);
      expect(second.stderr).not.toContain('open to other users');
    } finally {
      await test.cleanup();
    }
  });

  it('has a private lock folder and stdin spool while a run reads stdin; a spool left by kill -9 goes with the next run', async () => {
    const test = await createTestDatabase('pglite');
    const tmpdir = path.join(test.tmp, 'tmp');
    mkdirSync(tmpdir);
    try {
      const dataDir = test.flags.dataDir!;
      const child = spawn('sh', ['-c', `umask 000; exec ${carepipe(['ingest-fhir', '-', '--data-dir', dataDir])}`], {
        cwd: test.tmp,
        env: childEnv({ TMPDIR: tmpdir }),
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      const exited = new Promise((resolve) => child.on('close', resolve));
      child.stdin.write(PATIENT_LINE);
      const spools = () => readdirSync(tmpdir).filter((name) => name.startsWith(`carepipe-stdin-${child.pid}-`));
      await until('the stdin spool', () => spools().length === 1 && existsSync(path.join(tmpdir, spools()[0]!, 'stdin')));
      const spoolDir = path.join(tmpdir, spools()[0]!);
      expect(mode(spoolDir)).toBe(0o700);
      expect(mode(path.join(spoolDir, 'stdin'))).toBe(0o600);
      expect(mode(`${dataDir}.lock`)).toBe(0o700);
      child.kill('SIGKILL');
      await exited;
      // Nothing runs after SIGKILL: the spool stays until another run sees its process is gone.
      expect(existsSync(spoolDir)).toBe(true);

      const view = path.join(REPO_ROOT, 'views', 'patient.json');
      const next = await runCli(['view', 'run', '--view', view, '-'], { cwd: test.tmp, env: { TMPDIR: tmpdir }, input: PATIENT_LINE });
      expect(next.stderr).not.toContain('error');
      expect(next.code).toBe(0);
      expect(next.stdout).toContain('pat-spool');
      expect(readdirSync(tmpdir)).toEqual([]);
    } finally {
      await test.cleanup();
    }
  });
});

describe('the database URL', () => {
  for (const [what, url, secret] of [
    ['an unencoded / in its password', 'postgres://carepipe:s3cr/et@127.0.0.1:5432/test', 's3cr/et'],
    ['an unencoded # in its password', 'postgres://carepipe:s3cr#et@127.0.0.1:5432/test', 's3cr#et'],
    ['a password whose / follows digits', 'postgres://carepipe:1234/et@127.0.0.1:5432/test', '1234/et'],
  ] as const) {
    it(`with ${what} is a usage error (exit 2) that does not print the password`, async () => {
      const result = await runCli(['runs', '--database-url', url]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('percent-encode them (/ as %2F, # as %23');
      expect(result.stderr).not.toContain(secret);
      expect(result.stderr).not.toContain('internal error');
    });
  }

  it('with the password percent-encoded is taken, and shown masked', async () => {
    const result = await runCli(['config', '--database-url', 'postgres://carepipe:s3cr%2Fet%23x@127.0.0.1:5432/test']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('database: postgres://carepipe:****@127.0.0.1:5432/test');
    expect(result.stdout).not.toContain('s3cr');
  });
});

describe('--max-response-mb and stdin without a database', () => {
  it('CAREPIPE_MAX_RESPONSE_MB caps what view run takes from stdin: exit 4, and the spool is removed', async () => {
    const tmpdir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-disk-test-'));
    onTestFinished(() => rmSync(tmpdir, { recursive: true, force: true }));
    const view = path.join(REPO_ROOT, 'views', 'patient.json');
    const result = await runCli(['view', 'run', '--view', view, '-'], {
      env: { CAREPIPE_MAX_RESPONSE_MB: '0.001', TMPDIR: tmpdir },
      input: PATIENT_LINE.repeat(40),
    });
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('stdin holds more than 0.001 MB (--max-response-mb 0.001)');
    expect(readdirSync(tmpdir)).toEqual([]);
    const small = await runCli(['view', 'run', '--view', view, '-'], { env: { CAREPIPE_MAX_RESPONSE_MB: '0.001', TMPDIR: tmpdir }, input: PATIENT_LINE });
    expect(small.code).toBe(0);
  });
});

describe.each(BACKENDS)('inputs, outputs and the terminal on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  async function cli(args: string[], options: { input?: string; env?: Record<string, string> } = {}) {
    await ctx.release();
    return runCli(args, { env: { ...ctx.test.env, ...options.env }, cwd: ctx.test.tmp, input: options.input });
  }

  it('reads each file once through symbolic link loops and links to folders already read, warning of the loop', async () => {
    const data = path.join(ctx.test.tmp, 'data');
    cpSync(SAMPLE, data, { recursive: true });
    symlinkSync('.', path.join(data, 'loop'));
    symlinkSync('self', path.join(data, 'self'));
    const other = path.join(ctx.test.tmp, 'other');
    mkdirSync(other);
    symlinkSync(data, path.join(other, 'again'));
    const result = await cli(['ingest-fhir', 'data', 'other', '--json']);
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { counts: { read: number }; files: { loaded: number } };
    expect(summary.counts.read).toBe(SAMPLE_RESOURCES);
    expect(summary.files.loaded).toBe(2);
    expect(result.stderr).toContain(`${path.join(data, 'loop')} is a symbolic link loop`);
    expect(result.stderr).toContain(`${path.join(data, 'self')} is a symbolic link loop`);
    expect(result.stderr).toContain('already read: not read again');
    const db = await ctx.test.connect();
    try {
      expect(await db.knex('fhir_resources').count({ n: '*' }).first()).toEqual({ n: SAMPLE_RESOURCES });
    } finally {
      await db.close();
    }
  });

  it('refuses a named pipe and a device with exit 2, saying what they are', async () => {
    const fifo = path.join(ctx.test.tmp, 'incoming.ndjson');
    execFileSync('mkfifo', [fifo]);
    const pipe = await cli(['ingest-fhir', 'incoming.ndjson']);
    expect(pipe.code).toBe(2);
    expect(pipe.stderr).toContain('incoming.ndjson is a named pipe (FIFO), not a file or folder');
    const device = await cli(['ingest-fhir', '/dev/zero']);
    expect(device.code).toBe(2);
    expect(device.stderr).toContain('/dev/zero is a character device, not a file or folder');
    expect(device.stderr).not.toContain('no such file');
  });

  it('caps the stdin spool with --max-response-mb: exit 4, nothing loaded', async () => {
    const result = await cli(['ingest-fhir', '-', '--max-response-mb', '0.001'], { input: PATIENT_LINE.repeat(40) });
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('stdin holds more than 0.001 MB (--max-response-mb 0.001)');
    const db = await ctx.test.connect();
    try {
      expect(await db.knex('fhir_resources').count({ n: '*' }).first()).toEqual({ n: 0 });
    } finally {
      await db.close();
    }
  });

  it('writes -o files 0600 under umask 022, or --file-mode; a replaced file keeps its mode, never widened', async () => {
    const out = (name: string) => path.join(ctx.test.tmp, name);
    const exportTo = async (name: string, extra: string[] = []) => {
      await ctx.release();
      const result = await runShell(`umask 022; exec ${carepipe(['export-csv', 'rejects', '-o', name, ...extra])}`, { cwd: ctx.test.tmp, env: ctx.test.env });
      expect(result.stderr).not.toContain('error');
      expect(result.code).toBe(0);
    };
    await exportTo('new.csv');
    expect(mode(out('new.csv'))).toBe(0o600);
    await exportTo('shared.csv', ['--file-mode', '640']);
    expect(mode(out('shared.csv'))).toBe(0o640);
    // A private file stays private when replaced (the rename used to leave it 0644).
    writeFileSync(out('private.csv'), 'old');
    chmodSync(out('private.csv'), 0o600);
    await exportTo('private.csv');
    expect(mode(out('private.csv'))).toBe(0o600);
    await exportTo('private.csv', ['--file-mode', '644']);
    expect(mode(out('private.csv'))).toBe(0o600);
    // A file the user opened to the group keeps that; an asked narrower mode narrows it.
    writeFileSync(out('team.csv'), 'old');
    chmodSync(out('team.csv'), 0o640);
    await exportTo('team.csv');
    expect(mode(out('team.csv'))).toBe(0o640);
    await exportTo('team.csv', ['--file-mode', '600']);
    expect(mode(out('team.csv'))).toBe(0o600);
    const bad = await cli(['export-csv', 'rejects', '-o', 'x.csv', '--file-mode', 'rw-r']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--file-mode must be octal permission bits');
  });

  it('writes the --chart file 0600 under umask 022, and --file-mode applies to it', async () => {
    await ctx.release();
    const fixtures = path.join(REPO_ROOT, 'fixtures', 'appointments');
    const load = await runMain(['ingest-appointments', ...['impact-patients.json', 'impact-appointments.json'].map((f) => path.join(fixtures, f)), '--now', '2026-01-01T00:00:00Z', ...ctx.test.args]);
    expect(load.code).toBe(0);
    const chart = (name: string, extra: string[] = []) =>
      runShell(`umask 022; exec ${carepipe(['export-csv', 'missed-appointments', '--from', '2026-01-01', '--to', '2026-02-28', '--chart', name, '-o', 'missed.csv', ...extra])}`, {
        cwd: ctx.test.tmp,
        env: ctx.test.env,
      });
    const first = await chart('missed.svg');
    expect(first.code).toBe(0);
    expect(mode(path.join(ctx.test.tmp, 'missed.svg'))).toBe(0o600);
    expect(mode(path.join(ctx.test.tmp, 'missed.csv'))).toBe(0o600);
    const second = await chart('team.svg', ['--file-mode', '640']);
    expect(second.code).toBe(0);
    expect(mode(path.join(ctx.test.tmp, 'team.svg'))).toBe(0o640);
  });

  it('says which folder is missing for -o in a folder that does not exist (exit 2)', async () => {
    const result = await cli(['export-csv', 'rejects', '-o', '/missing/dir/x.csv']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('cannot write -o /missing/dir/x.csv: the folder /missing/dir does not exist');
    expect(result.stderr).not.toContain('internal error');
  });

  it('prints plain lines, not a spinner, on a terminal that reports no width, and finishes', async () => {
    await ctx.release();
    const env = Object.entries(ctx.test.env).map(([k, v]) => `${k}=${quote(v)}`).join(' ');
    // `script` gives the run a terminal of 0 columns when it has none itself (as here).
    const result = await runShell(`script -qec ${quote(`env ${env} ${carepipe(['ingest-fhir', SAMPLE])}`)} /dev/null`, { cwd: ctx.test.tmp, timeoutMs: 90_000 });
    expect(result.signal).toBeNull();
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`total               ${SAMPLE_RESOURCES}`);
    expect(result.stdout).toContain('start (what=ingest-fhir: reading)');
    // No cursor movement: a spinner on 0 columns wrote these without end (940 MB).
    expect(result.stdout).not.toContain('\u001b[1A');
    expect(result.stdout.length).toBeLessThan(16_000);
  });

  it('prints plain lines on a terminal too narrow for the spinner', async () => {
    await ctx.release();
    const env = Object.entries(ctx.test.env).map(([k, v]) => `${k}=${quote(v)}`).join(' ');
    const result = await runShell(`script -qec ${quote(`stty cols 10 rows 5; env ${env} ${carepipe(['ingest-fhir', SAMPLE])}`)} /dev/null`, {
      cwd: ctx.test.tmp,
      timeoutMs: 90_000,
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('start (what=ingest-fhir: reading)');
    expect(result.stdout).not.toContain('\u001b[1A');
  });

  it('stops on SIGINT with exit 130 on a terminal that reports no width', async () => {
    await ctx.release();
    const env = Object.entries(ctx.test.env).map(([k, v]) => `${k}=${quote(v)}`).join(' ');
    // Small batches keep the Synthea export running well past the signal on a fast machine too (it
    // loads in a few seconds on Postgres with the default batch): SIGINT comes mid-run, between batches.
    const ingest = carepipe(['ingest-fhir', path.join(SHARED, 'fhir', 'synthea-bulk'), '--batch-size', '20']);
    const result = await runShell(`script -qec ${quote(`env ${env} timeout --preserve-status -s INT 8 ${ingest}`)} /dev/null`, { cwd: ctx.test.tmp, timeoutMs: 90_000 });
    expect(result.code).toBe(130);
    expect(result.stdout).toContain('SIGINT: stopping after the current batch');
    expect(result.stdout).toMatch(/interrupted after \d+ records/);
    expect(result.ms).toBeLessThan(60_000);
  });
});
