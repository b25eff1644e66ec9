/**
 * Several carepipe processes sharing one input through the work queue: three workers on one folder,
 * one killed mid-file; the others finish its file after the lease; the tables equal a one-process run.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { BIN, childEnv, runCli } from './helpers/cli.js';
import { createTestDatabase, type TestDatabase } from './helpers/db.js';

const FILES = 6;
const PATIENTS_PER_FILE = 400;

/** Six ndjson files of patients, each with two observations: 7,200 resources. */
function writeInput(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (let f = 0; f < FILES; f++) {
    const lines: string[] = [];
    for (let p = 0; p < PATIENTS_PER_FILE; p++) {
      const id = `p-${f}-${p}`;
      lines.push(JSON.stringify({ resourceType: 'Patient', id, meta: { versionId: '1', lastUpdated: '2024-05-01T10:00:00Z' }, gender: p % 2 ? 'female' : 'male', birthDate: p % 10 === 0 ? `19${50 + (p % 50)}` : `19${50 + (p % 50)}-01-0${1 + (p % 9)}` }));
      for (let o = 0; o < 2; o++) {
        lines.push(
          JSON.stringify({
            resourceType: 'Observation',
            id: `o-${f}-${p}-${o}`,
            meta: { versionId: '1', lastUpdated: '2024-05-01T10:00:00Z' },
            status: 'final',
            code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
            subject: { reference: `Patient/${id}` },
            effectiveDateTime: '2024-04-30T08:00:00+01:00',
            valueQuantity: { value: 60 + ((p + o) % 40), unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
          }),
        );
      }
    }
    writeFileSync(path.join(dir, `part-${f}.ndjson`), lines.join('\n') + '\n');
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function snapshot(knex: Knex) {
  return {
    resources: await knex('fhir_resources').select('resource_type', 'id', 'content_hash', 'deleted').orderBy(['resource_type', 'id']),
    patients: await knex('patient').select('id', 'gender', 'birth_date').orderBy('id'),
    observations: await knex('observation').select('id', 'patient_id', 'code', 'value_quantity', 'value_unit', 'effective_date_time').orderBy('id'),
  };
}

describe('ingest-fhir shared by several processes (postgres)', () => {
  let single: TestDatabase;
  let shared: TestDatabase;
  beforeEach(async () => {
    single = await createTestDatabase('postgres');
    shared = await createTestDatabase('postgres');
  });
  afterEach(async () => {
    await single.cleanup();
    await shared.cleanup();
  });

  it('three workers, one killed mid-file: every file done once, tables equal to a single run', { timeout: 300_000 }, async () => {
    const input = path.join(shared.tmp, 'input');
    writeInput(input);

    const one = await runCli(['ingest-fhir', input, '--batch-size', '100', '--quiet'], { env: single.env });
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);

    const args = ['ingest-fhir', input, '--queue', 'nightly', '--lease', '2', '--batch-size', '100', '--json'];
    const start = () => {
      const child = spawn(process.execPath, [BIN, ...args], { env: childEnv(shared.env), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: () => string }>((resolve) =>
        child.on('close', (code, signal) => resolve({ code, signal, stdout: () => stdout })),
      );
      return { child, exit };
    };
    const victim = start();
    const db = await shared.connect();
    try {
      // Kill the first worker once it has committed part of a file, before it finishes that file.
      let killedIn: string | undefined;
      for (let i = 0; i < 600 && !killedIn; i++) {
        const progress = await db.knex.raw<{ rows: { unit_key: string; rows: number }[] }>(
          `select w.unit_key, (select count(*)::int from fhir_resources r join runs on runs.id = r.run_id where runs.pid = ?) as rows
             from work_items w where w.status = 'claimed' and w.claimed_by like ?`,
          [victim.child.pid!, `%:${victim.child.pid}:%`],
        ).catch(() => ({ rows: [] }));
        const claimed = progress.rows[0];
        if (claimed && claimed.rows > 0) {
          victim.child.kill('SIGKILL');
          killedIn = claimed.unit_key;
        } else {
          await sleep(50);
        }
      }
      expect(killedIn, 'the first worker was killed while holding a file').toBeDefined();
      expect((await victim.exit).signal).toBe('SIGKILL');
      const half = await db.knex('work_items').where({ unit_key: killedIn }).first('status');
      expect(half.status).toBe('claimed');

      const others = [start(), start()];
      const results = await Promise.all(others.map((w) => w.exit));
      for (const r of results) expect(r.code).toBe(0);

      // Every file done; the killed worker's file was taken over after its lease.
      const items = await db.knex('work_items').where({ queue: 'nightly' }).select('unit_key', 'status', 'attempts');
      expect(items).toHaveLength(FILES);
      expect(items.every((i: { status: string }) => i.status === 'done')).toBe(true);
      expect(items.find((i: { unit_key: string }) => i.unit_key === killedIn)?.attempts).toBe(2);

      // Each resource inserted exactly once: no update after it, so no superseded image stored (a
      // first insert stores none), and each row names the run that inserted it.
      const history = await db.knex.raw<{ rows: { inserts: number; others: number; keys: number }[] }>(
        `select count(*) filter (where operation = 'I')::int as inserts, count(*) filter (where operation <> 'I')::int as others,
                count(distinct row_key)::int as keys
           from row_history where table_name = 'fhir_resources'`,
      );
      expect(history.rows[0]).toEqual({ inserts: 0, others: 0, keys: 0 });
      expect(await db.knex('fhir_resources').whereNull('run_id').count({ n: '*' }).first()).toEqual({ n: 0 });

      const reference = await single.connect();
      try {
        const [a, b] = await Promise.all([snapshot(reference.knex), snapshot(db.knex)]);
        expect(b.resources).toHaveLength(FILES * PATIENTS_PER_FILE * 3);
        expect(b).toEqual(a);
      } finally {
        await reference.close();
      }

      // Run again: every file is done and unchanged, nothing is read twice.
      const again = await runCli(args.slice(0, -1).concat('--quiet'), { env: shared.env });
      expect(again.code).toBe(0);
      const lastRun = await db.knex('runs').orderBy('id', 'desc').first('read_count', 'written_count');
      expect(lastRun).toEqual({ read_count: 0, written_count: 0 });
    } finally {
      await db.close();
    }
  });

  it('--workers 2 splits the files between two processes and adds up their counts', { timeout: 180_000 }, async () => {
    const input = path.join(shared.tmp, 'input');
    writeInput(input);
    const result = await runCli(['ingest-fhir', input, '--workers', '2', '--json'], { env: shared.env });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout.trim().split('\n').pop()!);
    expect(summary.counts).toMatchObject({ read: FILES * PATIENTS_PER_FILE * 3, written: FILES * PATIENTS_PER_FILE * 3, rejected: 0 });
    expect(summary.worker_runs).toHaveLength(2);
    // every tenth patient was born in a year only: a partial date, counted by its worker
    expect(summary.partial_dates).toBe(FILES * Math.ceil(PATIENTS_PER_FILE / 10));
    const db = await shared.connect();
    try {
      // Every row was written by one of the two workers' runs, which the parent's summary names.
      const byRun = await db.knex('fhir_resources').select('run_id').count<{ run_id: number; count: number }[]>('* as count').groupBy('run_id');
      expect(byRun.every((r) => summary.worker_runs.includes(r.run_id))).toBe(true);
      expect(byRun.reduce((n, r) => n + Number(r.count), 0)).toBe(FILES * PATIENTS_PER_FILE * 3);
      expect(await db.knex('work_items').where({ status: 'done' }).count<{ c: number }[]>('* as c')).toEqual([{ c: FILES }]);
    } finally {
      await db.close();
    }
  });

  it('refuses --workers on the embedded database, which belongs to one process', async () => {
    const embedded = await createTestDatabase('pglite');
    try {
      writeInput(path.join(embedded.tmp, 'input'));
      const result = await runCli(['ingest-fhir', path.join(embedded.tmp, 'input'), '--workers', '2'], { env: embedded.env });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('--workers needs a Postgres server');
    } finally {
      await embedded.cleanup();
    }
  });
});
