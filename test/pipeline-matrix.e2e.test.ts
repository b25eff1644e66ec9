/**
 * The behaviour every ingest command shares because it runs on one engine (src/pipeline/run.ts),
 * checked the same way for each: the dry run, SIGINT after the first batch, a malformed record, --json
 * as exactly one object, and a held lock. Postgres only: the SIGINT check watches the rows arrive from
 * another connection, which the embedded database (one process at a time) does not allow.
 */
import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { acquireRunLock } from '../src/db/lock.js';
import { isRejectReason } from '../src/pipeline/reasons.js';
import { BIN, childEnv, REPO_ROOT, runCli, type CliResult } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';
import type { MatrixCase, MatrixRuns } from './matrix/case.js';
import { appointmentsCase } from './matrix/appointments.js';
import { cliniciansCase } from './matrix/clinicians.js';
import { directoryCase } from './matrix/directory.js';
import { fhirCase } from './matrix/fhir.js';

vi.setConfig({ testTimeout: 180_000 });

const CASES: MatrixCase[] = [fhirCase, cliniciansCase, directoryCase, appointmentsCase];

/** stdout holds exactly one JSON object. */
function oneObject(result: CliResult): Record<string, unknown> {
  const text = result.stdout.trim();
  expect(text.split('\n').length, `stdout: ${result.stdout}\nstderr: ${result.stderr}`).toBe(1);
  return JSON.parse(text) as Record<string, unknown>;
}

async function runs(db: TestDatabase) {
  const open = await db.connect();
  try {
    return await open.knex('runs').orderBy('id').select('command', 'status', 'exit_code', 'read_count', 'written_count', 'rejected_count');
  } finally {
    await open.close();
  }
}

async function keptRows(db: TestDatabase, runs: MatrixRuns): Promise<number> {
  const open = await db.connect();
  try {
    return await runs.kept(open.knex);
  } finally {
    await open.close();
  }
}

for (const matrixCase of CASES) {
  describe(`${matrixCase.command} on the engine`, () => {
    let db: TestDatabase;
    let inputs: MatrixRuns;
    const cli = (args: string[]) => runCli([...args, ...db.args, '--json'], { env: inputs.env });

    beforeEach(async () => {
      db = await createTestDatabase('postgres');
      inputs = await matrixCase.prepare(db);
    });
    afterEach(async () => {
      await inputs?.close();
      await db?.cleanup();
    });

    it('--dry-run counts exactly what a run writes, and keeps nothing', async () => {
      const dry = await cli([...inputs.clean, '--dry-run']);
      expect(dry.code, dry.stderr).toBe(0);
      const summary = oneObject(dry);
      expect(summary).toMatchObject({ dry_run: true, run_id: null, counts: { read: inputs.cleanCounts.read, written: inputs.cleanCounts.written, rejected: 0 } });
      expect(await keptRows(db, inputs)).toBe(0);
      expect(await runs(db)).toEqual([]);

      const real = await cli(inputs.clean);
      expect(real.code, real.stderr).toBe(0);
      expect(oneObject(real)).toMatchObject({ status: 'succeeded', counts: summary.counts });
      expect(await keptRows(db, inputs)).toBeGreaterThan(0);
    });

    it('a malformed record: exit 1, the good records kept, a reject with a code from the closed list', async () => {
      const result = await cli(inputs.malformed);
      expect(result.code, result.stderr).toBe(1);
      expect(oneObject(result)).toMatchObject({ status: 'partial', exit_code: 1, counts: { rejected: 1 } });
      const open = await db.connect();
      try {
        const rejects = await open.knex('rejects').select('reason_code', 'command');
        expect(rejects).toEqual([{ reason_code: inputs.malformedReason, command: matrixCase.command }]);
        expect(isRejectReason(rejects[0]!.reason_code)).toBe(true);
        expect(await inputs.kept(open.knex)).toBeGreaterThan(0);
      } finally {
        await open.close();
      }
    });

    it('SIGINT after the first batch: exit 130, ledger interrupted, committed batches kept, a rerun completes', async () => {
      const child = spawn(process.execPath, [BIN, ...inputs.slow, ...db.args, '--json'], {
        cwd: REPO_ROOT,
        env: childEnv(inputs.env),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      let atSignal = 0;
      const deadline = Date.now() + 60_000;
      while (atSignal === 0 && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 100));
        atSignal = await keptRows(db, inputs);
      }
      expect(atSignal, `no batch committed before the run ended: ${stderr}`).toBeGreaterThan(0);
      child.kill('SIGINT');
      const code = await exited;
      expect(code, stderr).toBe(130);
      expect(oneObject({ code, stdout, stderr })).toMatchObject({ status: 'failed', exit_code: 130, error: { code: 'INTERRUPTED' } });
      const interrupted = await keptRows(db, inputs);
      expect(interrupted).toBeGreaterThanOrEqual(atSignal);
      expect((await runs(db)).map((r) => [r.status, r.exit_code])).toEqual([['interrupted', 130]]);

      const rerun = await cli(inputs.slow);
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(oneObject(rerun)).toMatchObject({ status: 'succeeded' });
      expect(await keptRows(db, inputs)).toBeGreaterThan(interrupted);
    });

    it('exit 3 with one JSON object when another run holds the lock', async () => {
      const holder = await db.connect();
      const release = await acquireRunLock(holder, inputs.lockName);
      try {
        const result = await cli(inputs.clean);
        expect(result.code, result.stderr).toBe(3);
        expect(oneObject(result)).toMatchObject({ status: 'failed', exit_code: 3, error: { code: 'LOCKED' } });
      } finally {
        await release();
        await holder.close();
      }
    });
  });
}

describe('--json before any command starts', () => {
  it('an unusable database URL still prints exactly one JSON object', async () => {
    const commands = [['ingest-fhir', 'x.ndjson'], ['import-clinicians', 'noteworth'], ['directory-lookup', 'import', '--all'], ['ingest-appointments', 'x.json']];
    for (const command of commands) {
      const result = await runCli([...command, '--database-url', 'mysql://x', '--json']);
      expect(result.code, `${command.join(' ')}: ${result.stderr}`).toBe(2);
      expect(oneObject(result)).toMatchObject({ status: 'failed', exit_code: 2, error: { code: 'CONFIG_INVALID', message: expect.stringContaining('postgres://') } });
    }
  });
});
