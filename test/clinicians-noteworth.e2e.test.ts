/**
 * `carepipe import-clinicians noteworth` against the local noteworth provider (fixtures/noteworth-server.ts)
 * over real HTTP, on both databases: token reuse and re-authentication counted at the provider, retries
 * under faults with nothing lost, accumulation of a listing that is not complete, duplicates, rejects,
 * exit 4 when retries run out, no token or checksum in any output or the ledger, a dry run that keeps
 * neither clinicians nor a token, and SIGINT during a stalled request or a Retry-After wait → exit 130.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startNoteworthServer, NO_FAULTS, type NoteworthServer, type NoteworthServerOptions } from '../fixtures/noteworth-server.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { BIN, childEnv, REPO_ROOT, runCli, SHARED, type CliResult } from './helpers/cli.js';

// Each test runs the built binary several times; embedded PGlite on a busy machine needs minutes, not seconds.
vi.setConfig({ testTimeout: 300_000 });

const ROSTER = (JSON.parse(readFileSync(path.join(SHARED, 'providers', 'noteworth-providers.json'), 'utf8')) as { providers: { name_given: string; name_family: string }[] })
  .providers;

interface ClinicianRow {
  provider: string;
  clinician_key: string;
  given_name: string;
  family_name: string;
  title: string;
  clinic: string;
  active: boolean;
  inactive_since: string | null;
  first_seen: Date;
  last_seen: Date;
  source_run: number | string;
}

interface Summary {
  run_id: number;
  status: string;
  exit_code: number;
  counts: { read: number; written: number; unchanged: number; rejected: number };
  clinicians: {
    inserted: number;
    updated: number;
    unchanged: number;
    duplicates: number;
    marked_inactive: number;
    http: { requests: number; failed_attempts: number; failures: Record<string, number>; auth_calls: number; token: string; reauthentications: number };
  };
}

for (const backend of BACKENDS) {
  describe(`import-clinicians noteworth on ${backend}`, () => {
    const ctx = useTestDatabase(backend);
    let server: NoteworthServer | undefined;
    afterEach(async () => {
      await server?.close();
      server = undefined;
    });

    async function start(options: NoteworthServerOptions = {}): Promise<NoteworthServer> {
      server = await startNoteworthServer({ roster: ROSTER, faults: NO_FAULTS, seed: 42, stallMs: 1_000, ...options });
      await ctx.release();
      return server;
    }

    function run(extra: string[] = [], env: Record<string, string> = {}): Promise<CliResult> {
      return runCli(['import-clinicians', 'noteworth', '--json', '--timeout', '8', '--retry-delay', '20', ...ctx.test.args, ...extra], {
        env: { NOTEWORTH_BASE_URL: server!.url, ...env },
      });
    }

    function summary(result: CliResult): Summary {
      return JSON.parse(result.stdout) as Summary;
    }

    async function query<T>(work: (knex: Knex) => Promise<T>): Promise<T> {
      const db = await ctx.test.connect();
      try {
        return await work(db.knex);
      } finally {
        await db.close();
      }
    }

    const clinicians = () => query((k) => k<ClinicianRow>('clinicians').where({ provider: 'noteworth' }).orderBy('clinician_key'));
    const names = (rows: ClinicianRow[]) => rows.map((r) => `${r.given_name}|${r.family_name}`).sort();

    it('reuses a stored valid token: the second run makes no /auth call', async () => {
      const provider = await start();
      const first = await run();
      expect(first.code, first.stderr).toBe(0);
      expect(provider.stats.authCalls).toBe(1);
      expect(summary(first).clinicians.http).toMatchObject({ token: 'obtained', auth_calls: 1 });
      const stored = await query((k) => k('provider_tokens').select('*'));
      expect(stored).toHaveLength(1);
      expect(stored[0]).toMatchObject({ site_url: provider.url, provider: 'noteworth', token: provider.stats.tokensIssued[0], expires_at: null });

      const second = await run();
      expect(second.code, second.stderr).toBe(0);
      expect(provider.stats.authCalls).toBe(1);
      expect(summary(second).clinicians.http).toMatchObject({ token: 'stored', auth_calls: 0, requests: 1 });
      expect(second.stderr).toContain('"event":"token_reused"');
    });

    it('re-authenticates once when the token has expired (401) and stores the new token', async () => {
      const provider = await start({ tokenMaxUses: 1 });
      expect((await run()).code).toBe(0);
      const second = await run();
      expect(second.code, second.stderr).toBe(0);
      expect(provider.stats.refused).toEqual({ expired: 1 });
      expect(provider.stats.authCalls).toBe(2);
      expect(summary(second).clinicians.http).toMatchObject({ reauthentications: 1, auth_calls: 1, failures: { 'token refused (HTTP 401)': 1 } });
      const stored = await query((k) => k('provider_tokens').first('token'));
      expect(stored.token).toBe(provider.stats.tokensIssued[1]);
    });

    it('re-authenticates when another client replaced the token (403 on a wrong checksum)', async () => {
      const provider = await start();
      expect((await run()).code).toBe(0);
      // someone else asks for a token: ours stops working
      await fetch(`${provider.url}/auth`);
      const second = await run();
      expect(second.code, second.stderr).toBe(0);
      expect(provider.stats.refused).toEqual({ wrong: 1 });
      expect(summary(second).clinicians.http.reauthentications).toBe(1);
      expect(summary(second).counts.read).toBe(10);
    });

    it('loses nothing under 30% faults: every clinician served in a complete listing is stored, every failure retried and logged', async () => {
      const provider = await start({
        seed: 13,
        faults: { auth: { stall: 0.1, error: 0.1, rateLimited: 0.1 }, providers: { stall: 0.1, error: 0.1, truncated: 0.1 } },
      });
      let failedAttempts = 0;
      let retryLines = 0;
      for (let i = 0; i < 4; i++) {
        const result = await run(['--max-retries', '8']);
        expect(result.code, result.stderr).toBe(0);
        failedAttempts += summary(result).clinicians.http.failed_attempts;
        const lines = result.stderr.split('\n').filter((l) => l.includes('"event":"retry"'));
        retryLines += lines.length;
        for (const line of lines) expect(Object.keys(JSON.parse(line))).toEqual(expect.arrayContaining(['call', 'attempt', 'error', 'wait_ms']));
      }
      const faults = [...Object.entries(provider.stats.outcomes.auth), ...Object.entries(provider.stats.outcomes.providers)]
        .filter(([outcome]) => outcome !== 'ok')
        .reduce((sum, [, n]) => sum + n, 0);
      expect(faults).toBeGreaterThanOrEqual(4);
      expect(failedAttempts).toBe(faults);
      expect(retryLines).toBe(faults);
      const rows = await clinicians();
      expect(names(rows)).toEqual([...provider.stats.served].sort());
      expect(rows.every((r) => r.active)).toBe(true);
    });

    it('accumulates clinicians across runs of a listing that is not complete, marking none inactive', async () => {
      const provider = await start();
      const first = await run();
      const afterFirst = await clinicians();
      expect(afterFirst).toHaveLength(10);
      const second = await run();
      expect(second.code).toBe(0);
      const rows = await clinicians();
      expect(names(rows)).toEqual([...provider.stats.served].sort());
      expect(rows.length).toBeGreaterThan(10);
      expect(rows.every((r) => r.active && r.inactive_since === null)).toBe(true);
      const s = summary(second);
      expect(s.clinicians.inserted + s.clinicians.unchanged).toBe(10);
      expect(s.counts.written).toBe(s.clinicians.inserted);
      expect(s.clinicians.marked_inactive).toBe(0);
      // one not returned the second time keeps its first run as last_seen; one returned twice keeps its first_seen
      const notAgain = afterFirst.find((r) => rows.find((x) => x.clinician_key === r.clinician_key)!.last_seen.getTime() === r.last_seen.getTime());
      expect(notAgain, 'a sample of 10 in 20 twice leaves someone out').toBeDefined();
      const again = rows.filter((r) => r.last_seen.getTime() > r.first_seen.getTime());
      expect(again).toHaveLength(s.clinicians.unchanged);
      expect(again.every((r) => String(r.source_run) === String(summary(first).run_id))).toBe(true);
    });

    it('counts a clinician repeated in a listing once, as a duplicate', async () => {
      await start({ repeatClinician: true });
      const result = await run();
      expect(result.code).toBe(0);
      expect(summary(result).counts).toMatchObject({ read: 11, written: 10, rejected: 0 });
      expect(summary(result).clinicians.duplicates).toBe(1);
      expect(await clinicians()).toHaveLength(10);
    });

    it('rejects records without a name with the reason, keeps the rest, exits 1', async () => {
      const provider = await start({
        extraRecords: [
          { name_given: '  ', name_family: 'Nobody', title: 'Dr.', clinic: 'Noteworth General' },
          { name_given: 'Ann', title: 'PA', clinic: 'Noteworth General' },
        ],
      });
      const result = await run();
      expect(result.code).toBe(1);
      expect(summary(result)).toMatchObject({ status: 'partial', counts: { read: 12, written: 10, rejected: 2 } });
      const rejects = await query((k) => k('rejects').select('source', 'entry', 'field', 'reason_code', 'message', 'raw').orderBy('entry'));
      expect(rejects).toEqual([
        { source: `${provider.url}/providers`, entry: 10, field: 'name_given', reason_code: 'NAME_MISSING', message: expect.stringContaining('name_given'), raw: expect.any(String) },
        { source: `${provider.url}/providers`, entry: 11, field: 'name_family', reason_code: 'NAME_MISSING', message: expect.stringContaining('name_family'), raw: expect.any(String) },
      ]);
      expect(JSON.parse(rejects[1].raw)).toEqual({ name_given: 'Ann', title: 'PA', clinic: 'Noteworth General' });
      expect(await clinicians()).toHaveLength(10);
    });

    it('retries a cut JSON body and never stores any of it', async () => {
      const provider = await start();
      provider.script('providers', 'truncated', 'truncated');
      const result = await run();
      expect(result.code, result.stderr).toBe(0);
      expect(summary(result).clinicians.http.failures).toEqual({ 'malformed JSON body': 2 });
      expect(names(await clinicians())).toEqual([...provider.stats.served].sort());
      expect(await clinicians()).toHaveLength(10);
    });

    it('gives up a stalled call after --timeout instead of waiting for the 30 s stall, then retries it', async () => {
      const provider = await start({ stallMs: 30_000 });
      provider.script('auth', 'stall');
      const result = await run(['--timeout', '5']);
      expect(result.code, result.stderr).toBe(0);
      const first = JSON.parse(result.stderr.split('\n').find((l) => l.includes('"event":"retry"'))!);
      expect(first).toMatchObject({ call: `GET ${provider.url}/auth`, attempt: 1, error: 'timeout after 5000 ms' });
      expect(summary(result).clinicians.http.failures['timeout after 5000 ms']).toBeGreaterThanOrEqual(1);
      expect(provider.stats.outcomes.auth.stall).toBe(1);
      expect(summary(result).counts.read).toBe(10);
    });

    it('honours Retry-After on a 429', async () => {
      const provider = await start({ retryAfterSeconds: 1 });
      provider.script('providers', 'rate_limited');
      const result = await run();
      expect(result.code).toBe(0);
      const retry = JSON.parse(result.stderr.split('\n').find((l) => l.includes('"event":"retry"'))!);
      expect(retry).toMatchObject({ attempt: 1, status: 429, error: 'HTTP 429', wait_ms: 1000 });
    });

    it('exits 4 naming the call and the reason when retries run out; the obtained token is kept', async () => {
      const provider = await start();
      provider.script('providers', 'error', 'error', 'error');
      const result = await run(['--max-retries', '2']);
      expect(result.code).toBe(4);
      expect(result.stderr).toContain(`carepipe: GET ${provider.url}/providers failed after 3 attempts: HTTP 500`);
      const [ledger] = await query((k) => k('runs').where({ command: 'import-clinicians' }).select('status', 'exit_code', 'details', 'error'));
      expect(ledger).toMatchObject({ status: 'failed', exit_code: 4 });
      expect(ledger.details.clinicians.http).toMatchObject({ failed_attempts: 3, failures: { 'HTTP 500': 3 } });
      expect(await clinicians()).toHaveLength(0);
      expect(Number((await query((k) => k('provider_tokens').count({ n: '*' }).first()))!.n)).toBe(1);
    });

    it('a dry run counts what it would write and keeps neither clinicians nor the token it obtained', async () => {
      const provider = await start();
      const dry = await run(['--dry-run']);
      expect(dry.code, dry.stderr).toBe(0);
      expect(summary(dry)).toMatchObject({ run_id: null, counts: { read: 10, written: 10, rejected: 0 }, clinicians: { inserted: 10, http: { token: 'obtained' } } });
      expect(provider.stats.authCalls).toBe(1);
      expect(await clinicians()).toHaveLength(0);
      expect(await query((k) => k('provider_tokens').select('site_url'))).toEqual([]);
      expect(await query((k) => k('runs').select('id'))).toEqual([]);
    });

    it('SIGINT while a request stalls, then while waiting out a Retry-After: exit 130 at once, ledger interrupted', async () => {
      const provider = await start({ stallMs: 60_000, retryAfterSeconds: 60 });
      const interrupt = async (when: () => boolean) => {
        const child = spawn(process.execPath, [BIN, 'import-clinicians', 'noteworth', '--json', '--timeout', '50', ...ctx.test.args], {
          cwd: REPO_ROOT,
          env: childEnv({ NOTEWORTH_BASE_URL: provider.url }),
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
        while (!when() && !stderr.includes('"event":"retry"') && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
        const signalled = Date.now();
        child.kill('SIGINT');
        const code = await exited;
        expect(code, stderr).toBe(130);
        // not after the 60 s stall or wait
        expect(Date.now() - signalled).toBeLessThan(30_000);
        expect(JSON.parse(stdout)).toMatchObject({ status: 'failed', exit_code: 130, error: { code: 'INTERRUPTED' } });
        expect(stderr).not.toContain('please report');
        return stderr;
      };
      provider.script('providers', 'stall');
      await interrupt(() => provider.stats.providersCalls >= 1);
      provider.script('providers', 'rate_limited');
      const waiting = await interrupt(() => false);
      expect(waiting).toContain('"wait_ms":60000');
      const runs = await query((k) => k('runs').where({ command: 'import-clinicians' }).orderBy('id').select('status', 'exit_code'));
      expect(runs).toEqual([
        { status: 'interrupted', exit_code: 130 },
        { status: 'interrupted', exit_code: 130 },
      ]);
      expect(await clinicians()).toHaveLength(0);
    });

    it('never prints or records a token or a checksum', async () => {
      const provider = await start({ tokenMaxUses: 1 });
      const outputs: string[] = [];
      for (let i = 0; i < 2; i++) {
        const json = await run();
        const text = await runCli(['import-clinicians', 'noteworth', '--base-url', provider.url, ...ctx.test.args]);
        outputs.push(json.stdout, json.stderr, text.stdout, text.stderr);
      }
      const ledger = JSON.stringify(await query((k) => k('runs').select('*')));
      const secrets = provider.stats.tokensIssued.flatMap((t) => [t, createHash('sha256').update(`${t}/providers`).digest('hex')]);
      expect(secrets.length).toBeGreaterThanOrEqual(4);
      for (const secret of secrets) {
        for (const output of [...outputs, ledger]) expect(output).not.toContain(secret);
      }
    });

    it('reads the base URL from the config file, and exits 2 naming the flag and variable when it is missing', async () => {
      const provider = await start();
      const missing = await runCli(['import-clinicians', 'noteworth', ...ctx.test.args], { cwd: ctx.test.tmp });
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain('noteworth needs --base-url or NOTEWORTH_BASE_URL or backends.noteworth.baseUrl in the config file');
      expect(await query((k) => k('runs').where({ command: 'import-clinicians' }).select('id'))).toEqual([]);
      writeFileSync(path.join(ctx.test.tmp, 'carepipe.config.json'), JSON.stringify({ backends: { noteworth: { baseUrl: provider.url } } }));
      const fromFile = await runCli(['import-clinicians', 'noteworth', ...ctx.test.args], { cwd: ctx.test.tmp });
      expect(fromFile.code, fromFile.stderr).toBe(0);
      expect(await clinicians()).toHaveLength(10);
    });
  });
}
