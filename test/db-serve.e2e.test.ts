import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { useTestDatabase } from './helpers/db.js';
import { BIN, REPO_ROOT, childEnv, runCli } from './helpers/cli.js';
import { testDatabaseUrl } from './helpers/env.js';

/** A port nobody listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Serving {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `carepipe db serve` in a child process, resolved once it says it listens. */
async function serve(args: string[]): Promise<Serving> {
  const child = spawn(process.execPath, [BIN, 'db', 'serve', ...args], { cwd: REPO_ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('event=listening')) resolve();
    });
    void exited.then((code) => reject(new Error(`db serve exited ${code} before listening: ${stderr}`)));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

describe('carepipe db serve', () => {
  const ctx = useTestDatabase('pglite');
  let running: ChildProcess | undefined;

  afterEach(() => {
    if (running && running.exitCode === null) running.kill('SIGKILL');
    running = undefined;
  });

  it('serves a loaded database to psql and to pg, holds the folder (exit 3 for another run), and stops on SIGTERM with exit 0', async () => {
    await ctx.db.knex('fhir_resources').insert({
      resource_type: 'Patient',
      id: 'p1',
      resource: JSON.stringify({ resourceType: 'Patient', id: 'p1' }),
      content_hash: 'h1',
      source: 'patients.ndjson',
    });
    await ctx.release();
    const port = await freePort();
    const server = await serve(['--port', String(port), ...ctx.test.args]);
    running = server.child;
    expect(server.stderr()).toContain(`url=postgresql://postgres@127.0.0.1:${port}/postgres`);

    const psql = await promisify(execFile)('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', 'select resource_type, id from fhir_resources'], {
      env: { ...process.env, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' },
    });
    expect(psql.stdout).toBe('Patient|p1\n');

    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      const result = await client.query<{ n: string }>('select count(*)::text as n from fhir_resources');
      expect(result.rows).toEqual([{ n: '1' }]);
    } finally {
      await client.end();
    }

    const other = await runCli(['runs', '--json', ...ctx.test.args]);
    expect(other.code).toBe(3);
    expect(JSON.parse(other.stdout)).toMatchObject({ status: 'failed', exit_code: 3, error: { code: 'LOCKED' } });

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    expect(server.stdout()).toBe(`stopped serving ${ctx.test.flags.dataDir}: 2 connections served\n`);
    // The folder is free again.
    const after = await runCli(['sql', 'select count(*) as n from fhir_resources', '--format', 'csv', ...ctx.test.args]);
    expect(after.code).toBe(0);
    expect(after.stdout).toBe('n\r\n1\r\n');
  });

  it('refuses a Postgres server (exit 2): it serves only the embedded database', async () => {
    await ctx.release();
    const result = await runCli(['db', 'serve', '--database-url', testDatabaseUrl(), '--json']);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.stdout)).toMatchObject({ status: 'failed', exit_code: 2, error: { code: 'USAGE' } });
    expect(result.stderr).toContain('connect to that server directly');
  });

  it('a port already taken is a usage error naming it', async () => {
    await ctx.release();
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as { port: number };
    try {
      const result = await runCli(['db', 'serve', '--port', String(port), ...ctx.test.args]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`cannot listen on 127.0.0.1:${port} (EADDRINUSE)`);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
