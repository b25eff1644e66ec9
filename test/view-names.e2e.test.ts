/**
 * Names in a ViewDefinition that JavaScript or the database already use, through the built binary:
 * functions and members inherited from JavaScript objects (`constructor`, `__proto__`,
 * `hasOwnProperty`) behave as unknown ones, and a view named like a system or carepipe table is refused
 * before any table is created.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { REPO_ROOT, runCli } from './helpers/cli.js';

vi.setConfig({ testTimeout: 300_000 });
const SAMPLE = path.join(REPO_ROOT, 'fixtures/fhir/sample');

function patientView(file: string, name: string, columns: { name: string; path: string }[], extra: Record<string, unknown> = {}): string {
  writeFileSync(file, JSON.stringify({ resourceType: 'ViewDefinition', name, resource: 'Patient', select: [{ column: [{ name: 'id', path: 'getResourceKey()' }, ...columns], ...extra }] }));
  return file;
}

describe.each(BACKENDS)('views and names on %s', (backend) => {
  const ctx = useTestDatabase(backend);
  const cli = (...args: string[]) => runCli(args, { env: ctx.test.env, cwd: ctx.test.tmp });

  async function relations(): Promise<string[]> {
    const db = await ctx.test.connect();
    try {
      const { rows } = await db.knex.raw<{ rows: { relname: string }[] }>(
        `select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = any(current_schemas(false)) and c.relkind in ('r', 'v') order by 1`,
      );
      return rows.map((r) => r.relname);
    } finally {
      await db.close();
    }
  }

  it('view run and ingest-fhir --view: constructor(), __proto__() and hasOwnProperty() are unknown functions (exit 2)', async () => {
    await ctx.release();
    for (const fn of ['constructor()', '__proto__()', 'hasOwnProperty()', 'name.first().constructor()']) {
      const view = patientView(path.join(ctx.test.tmp, 'fn.json'), 'patient_fn', [{ name: 'x', path: fn }]);
      const run = await cli('view', 'run', '--view', view, '--format', 'csv', SAMPLE);
      expect(run.code, fn).toBe(2);
      expect(run.stderr).toContain(`select[0].column[1].path: unknown function '${fn.replace(/^.*\.|\(\)$/g, '')}'`);
      const ingest = await cli('ingest-fhir', '--view', view, SAMPLE);
      expect(ingest.code, fn).toBe(2);
      expect(ingest.stderr).toContain('unknown function');
    }
    expect(await relations()).not.toContain('patient_fn');
  });

  it('members named constructor, __proto__ or hasOwnProperty are empty: view run prints nulls, ingest-fhir --view stores NULL', async () => {
    await ctx.release();
    const columns = [
      { name: 'family', path: "name.where(use = 'official').family.first()" },
      { name: 'ctor', path: 'name.constructor' },
      { name: 'proto', path: '__proto__' },
      { name: 'own', path: 'name.first().hasOwnProperty' },
      { name: 'ctor_where', path: 'name.where(true).constructor.exists()' },
    ];
    const view = patientView(path.join(ctx.test.tmp, 'members.json'), 'patient_members', columns);
    const run = await cli('view', 'run', '--view', view, '--format', 'csv', SAMPLE);
    expect(run.stderr).toContain('0 rejected');
    expect(run.code).toBe(0);
    const u = (n: number) => `00000000-0000-4000-8000-000000000${n}00`;
    expect(run.stdout).toBe(`id,family,ctor,proto,own,ctor_where\n${u(1)},Martin,,,,false\n${u(2)},Nguyen,,,,false\n${u(3)},Dubois,,,,false\n`);

    const forEach = patientView(path.join(ctx.test.tmp, 'each.json'), 'patient_each', [], { forEach: 'name.constructor' });
    const each = await cli('view', 'run', '--view', forEach, '--format', 'csv', SAMPLE);
    expect(each.code).toBe(0);
    expect(each.stdout).toBe('id\n');

    const ingest = await cli('ingest-fhir', '--view', view, SAMPLE);
    expect(ingest.stderr).not.toMatch(/error/i);
    expect(ingest.code).toBe(0);
    const db = await ctx.test.connect();
    try {
      const rows = await db.knex('patient_members').select('id', 'family', 'ctor', 'proto', 'own', 'ctor_where').orderBy('id');
      expect(rows).toEqual([
        { id: u(1), family: 'Martin', ctor: null, proto: null, own: null, ctor_where: false },
        { id: u(2), family: 'Nguyen', ctor: null, proto: null, own: null, ctor_where: false },
        { id: u(3), family: 'Dubois', ctor: null, proto: null, own: null, ctor_where: false },
      ]);
      expect(Number((await db.knex('rejects').count({ n: '*' }))[0]!.n)).toBe(0);
    } finally {
      await db.close();
    }
  });

  it('ingest-fhir --view refuses a view named like a system or carepipe table (exit 2), creating no table and loading nothing', async () => {
    await ctx.release();
    const before = await relations();
    for (const name of ['pg_class', 'pg_stray', 'sql_features', 'information_schema', 'fhir_resources', 'runs', 'rejects', 'row_history', 'knex_migrations']) {
      const view = patientView(path.join(ctx.test.tmp, `${name}.json`), name, [{ name: 'gender', path: 'gender' }]);
      const result = await cli('ingest-fhir', '--view', view, SAMPLE);
      expect(result.code, name).toBe(2);
      expect(result.stderr, name).toMatch(new RegExp(`the view name '${name}' is (reserved for system tables|a carepipe table)`));
    }
    expect(await relations()).toEqual(before);
    const db = await ctx.test.connect();
    try {
      expect(Number((await db.knex('fhir_resources').count({ n: '*' }))[0]!.n)).toBe(0);
    } finally {
      await db.close();
    }
    // Any other name is a view table as before.
    const ok = await cli('ingest-fhir', '--view', patientView(path.join(ctx.test.tmp, 'ok.json'), 'patient_gender', [{ name: 'gender', path: 'gender' }]), SAMPLE);
    expect(ok.code).toBe(0);
    expect(await relations()).toContain('patient_gender');
  });
});

describe('view run on definitions nested too deep', () => {
  it('refuses a ViewDefinition nested 5,000 levels, and a path with 5,000 brackets, as invalid views (exit 2)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-view-deep-'));
    try {
      let select = '{"column":[{"name":"id","path":"id"}]}';
      for (let i = 0; i < 5000; i++) select = `{"select":[${select}]}`;
      const deep = path.join(dir, 'deep.json');
      writeFileSync(deep, `{"resourceType":"ViewDefinition","name":"deep","resource":"Patient","select":[${select}]}`);
      const nested = await runCli(['view', 'run', '--view', deep, SAMPLE], { cwd: dir });
      expect(nested.code).toBe(2);
      expect(nested.stderr).toContain('JSON nested more than 256 levels deep: not a ViewDefinition');
      const brackets = patientView(path.join(dir, 'brackets.json'), 'brackets', [{ name: 'x', path: `${'('.repeat(5000)}id${')'.repeat(5000)}` }]);
      const parens = await runCli(['view', 'run', '--view', brackets, SAMPLE], { cwd: dir });
      expect(parens.code).toBe(2);
      expect(parens.stderr).toContain('brackets nested more than 128 deep');
      const fine = patientView(path.join(dir, 'fine.json'), 'fine', [{ name: 'x', path: `${'('.repeat(100)}id${')'.repeat(100)}` }]);
      expect((await runCli(['view', 'run', '--view', fine, SAMPLE], { cwd: dir })).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
