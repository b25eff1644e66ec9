import { describe, expect, it } from 'vitest';
import { BACKENDS, createTestDatabase, useTestDatabase } from './helpers/db.js';
import { runCli, runMain } from './helpers/cli.js';
import { acquireRunLock } from '../src/db/lock.js';
import { RunLedger } from '../src/db/ledger.js';
import { migrateRollback } from '../src/db/migrations.js';

describe('carepipe --help', () => {
  it('lists the commands from the built binary', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    for (const name of ['migrate', 'runs', 'config']) expect(result.stdout).toContain(name);
  });

  it('exits 2 with one line on an unknown option', async () => {
    const result = await runCli(['runs', '--no-such-flag']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("unknown option '--no-such-flag'");
  });
});

describe('carepipe config', () => {
  it('masks the password of the database URL and secrets of the config file', async () => {
    const result = await runMain(['config', '--json', '--database-url', 'postgres://alice:hunter2@db.example/prod'], {
      env: {},
    });
    expect(result.code).toBe(0);
    expect(result.stdout).not.toContain('hunter2');
    expect(JSON.parse(result.stdout).database).toBe('postgres://alice:****@db.example/prod');
  });

  it('refuses a CAREPIPE_HEAP_GROWTH that is not a whole percent, with exit 2 and the variable named', async () => {
    const result = await runCli(['config'], { env: { CAREPIPE_HEAP_GROWTH: 'lots' } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("CAREPIPE_HEAP_GROWTH must be a whole number of percent from 0 to 1000, not 'lots'");
    const fine = await runCli(['config'], { env: { CAREPIPE_HEAP_GROWTH: '0' } });
    expect(fine.code).toBe(0);
  });

  it('refuses a database URL that is not postgres:// with exit 2', async () => {
    const result = await runMain(['config', '--database-url', 'mysql://x/y']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/must start with postgres:\/\//);
  });
});

for (const backend of BACKENDS) {
  describe(`migrations and ledger on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    it('migrate reports up to date, --status lists the core migration as applied', async () => {
      await ctx.release();
      const latest = await runCli(['migrate', ...ctx.test.args]);
      expect(latest.code).toBe(0);
      expect(latest.stdout).toContain('Already up to date');
      const status = await runCli(['migrate', '--status', '--json', ...ctx.test.args]);
      expect(status.code).toBe(0);
      const parsed = JSON.parse(status.stdout) as { applied: string[]; pending: string[] };
      expect(parsed.applied).toContain('20261123_000_core');
      expect(parsed.pending).toEqual([]);
    });

    it('runs lists ledger entries newest first with counts, user and status', async () => {
      const first = await RunLedger.start(ctx.db.knex, { command: 'ingest-fhir', args: ['a.json'], user: 'alice' });
      first.add({ read: 3, written: 2, rejected: 1 });
      await first.finish('partial', 1);
      const second = await RunLedger.start(ctx.db.knex, { command: 'migrate', args: [], user: 'bob' });
      await second.finish('succeeded', 0);
      await ctx.release();
      const result = await runCli(['runs', '--json', ...ctx.test.args]);
      expect(result.code).toBe(0);
      const runs = (JSON.parse(result.stdout) as { runs: { id: number; command: string; os_user: string; status: string; read_count: number; rejected_count: number }[] }).runs;
      expect(runs.map((r) => r.command)).toEqual(['migrate', 'ingest-fhir']);
      expect(runs[1]).toMatchObject({ os_user: 'alice', status: 'partial', read_count: 3, rejected_count: 1 });
      const table = await runCli(['runs', ...ctx.test.args]);
      expect(table.stdout).toMatch(/ingest-fhir\s+alice/);
    });

    it('rolls back and re-applies the migrations', async () => {
      const { ran } = await migrateRollback(ctx.db);
      expect(ran).toContain('20261123_000_core');
      await ctx.release();
      const result = await runCli(['migrate', ...ctx.test.args]);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/Batch \d+ run: \d+ migrations?/);
    });
  });
}

describe('schema behind on a server', () => {
  it('stops with exit 2 and says to run carepipe migrate', async () => {
    const test = await createTestDatabase('postgres');
    try {
      const db = await test.connect();
      await migrateRollback(db);
      await db.close();
      const result = await runCli(['runs', ...test.args]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('run `carepipe migrate` first');
    } finally {
      await test.cleanup();
    }
  });
});

describe('one run at a time', () => {
  it('a second advisory lock on the same command and target fails with exit code 3', async () => {
    const test = await createTestDatabase('postgres');
    const a = await test.connect();
    const b = await test.connect();
    try {
      const release = await acquireRunLock(a, 'ingest-fhir');
      await expect(acquireRunLock(b, 'ingest-fhir')).rejects.toMatchObject({ code: 'LOCKED', exitCode: 3 });
      // another command is not blocked
      const other = await acquireRunLock(b, 'import-clinicians:noteworth');
      await other();
      await release();
      const again = await acquireRunLock(b, 'ingest-fhir');
      await again();
    } finally {
      await a.close();
      await b.close();
      await test.cleanup();
    }
  });

  it('a second process on the same embedded database exits 3', async () => {
    const test = await createTestDatabase('pglite');
    const held = await test.connect();
    try {
      const result = await runCli(['migrate', ...test.args]);
      expect(result.code).toBe(3);
      expect(result.stderr).toContain('another carepipe run is using the embedded database');
    } finally {
      await held.close();
      await test.cleanup();
    }
  });

  it('the database unreachable exits 4 without printing the password', async () => {
    const result = await runCli(['runs', '--database-url', 'postgres://carepipe:s3cret@127.0.0.1:1/none']);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('cannot reach the database');
    expect(result.stderr).not.toContain('s3cret');
  });
});
