/**
 * ingest-fhir end to end: the built binary on the fixtures, against both back ends, checked in the
 * tables it fills.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { Knex } from 'knex';
import { BACKENDS, createTestDatabase, useTestDatabase, type TestDatabase } from './helpers/db.js';
import { BIN, childEnv, REPO_ROOT, runCli, SHARED } from './helpers/cli.js';
import { resolveSettings } from '../src/config.js';
import { openDatabase } from '../src/db/connection.js';

const FIXTURES = path.join(REPO_ROOT, 'fixtures', 'fhir');
// Each test spawns the binary two or three times; on PGlite each spawn opens the embedded database.
vi.setConfig({ testTimeout: 300_000 });
const FLAT_TABLES = [
  'allergyintolerance', 'appointment', 'condition', 'diagnosticreport', 'encounter', 'imagingstudy', 'immunization',
  'medicationrequest', 'observation', 'observation_component', 'organization', 'patient', 'practitioner', 'procedure',
];

type Resource = { resourceType: string; id: string; [k: string]: unknown };

/** The sample's resources as they should be stored: urn:uuid references resolved to Type/id, by hand. */
function sampleResources(): Resource[] {
  const bundle = JSON.parse(readFileSync(path.join(FIXTURES, 'sample', 'transaction-bundle.json'), 'utf8')) as {
    entry: { fullUrl?: string; resource: Resource }[];
  };
  const targets = new Map<string, string>();
  const fromBundle = bundle.entry.map(({ fullUrl, resource }) => {
    const id = resource.id ?? fullUrl!.replace('urn:uuid:', '');
    if (fullUrl) targets.set(fullUrl, `${resource.resourceType}/${id}`);
    return { ...resource, id };
  });
  const resolve = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(resolve);
    if (v === null || typeof v !== 'object') return v;
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, k === 'reference' && typeof x === 'string' && targets.has(x) ? targets.get(x) : resolve(x)]),
    );
  };
  const ndjson = readFileSync(path.join(FIXTURES, 'sample', 'Observation.ndjson'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Resource);
  return [...(fromBundle.map(resolve) as Resource[]), ...ndjson];
}

/** Every table ingest-fhir fills, as sorted JSON rows without the columns that name the run. */
async function snapshot(knex: Knex): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const table of ['fhir_resources', 'fhir_files_done', ...FLAT_TABLES]) {
    const { rows } = await knex.raw<{ rows: { r: string }[] }>(
      `select (to_jsonb(t) - 'run_id' - 'loaded_at')::text as r from ?? as t order by 1`,
      [table],
    );
    out[table] = rows.map((x) => x.r);
  }
  return out;
}

async function withDb<T>(test: TestDatabase, work: (knex: Knex) => Promise<T>): Promise<T> {
  const db = await test.connect();
  try {
    return await work(db.knex);
  } finally {
    await db.close();
  }
}

describe.each(BACKENDS)('carepipe ingest-fhir on %s', (backend) => {
  const ctx = useTestDatabase(backend);
  const ingest = async (...args: string[]) => {
    await ctx.release();
    return runCli(['ingest-fhir', ...args], { env: ctx.test.env });
  };

  it('loads the sample: one fhir_resources row per resource, equal to the input, and the flat rows', async () => {
    const result = await ingest('fixtures/fhir/sample');
    expect(result.stderr).not.toMatch(/error/);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^resource type\s+read\s+written\s+unchanged\s+rejected\s+deleted$/m);
    const expected = sampleResources();
    expect(result.stdout).toMatch(new RegExp(`^total\\s+${expected.length}\\s+${expected.length}\\s+0\\s+0\\s+0$`, 'm'));
    expect(result.stdout).toContain('files: 2 loaded, 0 skipped');
    await withDb(ctx.test, async (knex) => {
      const stored = await knex('fhir_resources').select('resource_type', 'id', 'resource', 'deleted');
      expect(stored).toHaveLength(expected.length);
      const byKey = new Map(stored.map((r: { resource_type: string; id: string }) => [`${r.resource_type}/${r.id}`, r]));
      for (const resource of expected) {
        expect(byKey.get(`${resource.resourceType}/${resource.id}`)).toMatchObject({ resource, deleted: false });
      }
      const ofType = (t: string) => expected.filter((r) => r.resourceType === t);
      for (const table of FLAT_TABLES.filter((t) => t !== 'observation_component')) {
        const type = ofType(stored.find((r: { resource_type: string }) => r.resource_type.toLowerCase() === table)?.resource_type ?? '');
        const [{ n }] = await knex(table).count({ n: '*' });
        expect([table, Number(n)]).toEqual([table, type.length]);
      }
      const components = ofType('Observation').reduce((sum, o) => sum + ((o.component as unknown[] | undefined)?.length ?? 0), 0);
      expect(components).toBeGreaterThan(0);
      expect(Number((await knex('observation_component').count({ n: '*' }))[0]!.n)).toBe(components);
      // references come out as keys that join
      const joined = await knex('encounter as e').join('patient as p', 'p.id', 'e.patient_id').count({ n: '*' });
      expect(Number(joined[0]!.n)).toBe(ofType('Encounter').length);
    });
  });

  it('is idempotent: a second run skips the unchanged files, --full-refresh rewrites nothing', async () => {
    await ingest('fixtures/fhir/sample');
    const first = await withDb(ctx.test, snapshot);
    const again = await ingest('fixtures/fhir/sample', '--json');
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ counts: { read: 0, written: 0 }, files: { loaded: 0, skipped: 2 } });
    const full = await ingest('fixtures/fhir/sample', '--full-refresh', '--json');
    const summary = JSON.parse(full.stdout);
    expect(summary).toMatchObject({ counts: { read: 41, written: 0, unchanged: 41, rejected: 0 }, files: { loaded: 2, skipped: 0 } });
    expect(summary.types.Patient).toEqual({ read: 3, written: 0, unchanged: 3, rejected: 0, deleted: 0 });
    expect(await withDb(ctx.test, snapshot)).toEqual(first);
  });

  it('reloads a file that changed since it was loaded', async () => {
    const file = path.join(ctx.test.tmp, 'obs.ndjson');
    copyFileSync(path.join(FIXTURES, 'sample', 'Observation.ndjson'), file);
    await ingest(file);
    const changed = JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!);
    changed.status = 'amended';
    appendFileSync(file, `${JSON.stringify(changed)}\n`);
    const result = await ingest(file, '--json');
    expect(JSON.parse(result.stdout)).toMatchObject({ counts: { written: 1 }, files: { loaded: 1, skipped: 0 } });
    expect(await withDb(ctx.test, (knex) => knex('observation').where({ id: changed.id }).select('status'))).toEqual([{ status: 'amended' }]);
  });

  it('keeps the newest copy of each resource and applies deletes, whatever order the copies come in', async () => {
    const result = await ingest('fixtures/fhir/updates', '--json');
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary.types.Patient).toEqual({ read: 6, written: 4, unchanged: 1, rejected: 0, deleted: 1 });
    await withDb(ctx.test, async (knex) => {
      expect(await knex('fhir_resources').select('resource_type', 'id', 'version_id', 'deleted').orderBy(['resource_type', 'id'])).toEqual([
        { resource_type: 'Observation', id: 'upd-obs-1', version_id: '3', deleted: false },
        { resource_type: 'Observation', id: 'upd-obs-2', version_id: '1', deleted: true },
        { resource_type: 'Patient', id: 'upd-patient-1', version_id: '3', deleted: false },
        { resource_type: 'Patient', id: 'upd-patient-2', version_id: '1', deleted: true },
      ]);
      expect(await knex('patient').select('id', 'family_name')).toEqual([{ id: 'upd-patient-1', family_name: 'SameTimeHigherVersion' }]);
      expect(await knex('observation').select('id', 'value_quantity')).toEqual([{ id: 'upd-obs-1', value_quantity: '73' }]);
    });
    // the older copies alone change nothing
    const older = await ingest('fixtures/fhir/updates/3-older.ndjson', '--full-refresh', '--json');
    expect(JSON.parse(older.stdout)).toMatchObject({ counts: { read: 2, written: 0, unchanged: 2 } });
    expect(await withDb(ctx.test, (knex) => knex('patient').select('family_name'))).toEqual([{ family_name: 'SameTimeHigherVersion' }]);
  });

  it('keeps bad records in rejects with file, line and reason, loads the rest, and exits 1', async () => {
    const result = await ingest('fixtures/fhir/malformed');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('fixtures/fhir/malformed/invalid-json-line.ndjson:2: INVALID_JSON');
    // the engine's reject line names the record (its resource id) too
    expect(result.stderr).toContain('wrong-type-birthdate.ndjson:2 record Patient/mal-type-2 field patient.birth_date: WRONG_TYPE');
    expect(result.stdout).toMatch(/^total\s+18\s+12\s+0\s+6\s+0$/m);
    await withDb(ctx.test, async (knex) => {
      const rejects = await knex('rejects').select('source', 'line', 'entry', 'reason_code', 'field').orderBy('source');
      expect(rejects.map((r: { source: string }) => ({ ...r, source: path.basename(r.source) }))).toEqual([
        { source: 'invalid-json-line.ndjson', line: 2, entry: null, reason_code: 'INVALID_JSON', field: null },
        { source: 'missing-id.ndjson', line: 2, entry: null, reason_code: 'MISSING_ID', field: 'id' },
        { source: 'missing-resource-type.ndjson', line: 2, entry: null, reason_code: 'MISSING_RESOURCE_TYPE', field: 'resourceType' },
        { source: 'truncated-bundle.json', line: null, entry: 2, reason_code: 'INVALID_JSON', field: null },
        { source: 'unresolved-reference.json', line: null, entry: 2, reason_code: 'UNRESOLVED_REFERENCE', field: 'subject.reference' },
        { source: 'wrong-type-birthdate.ndjson', line: 2, entry: null, reason_code: 'WRONG_TYPE', field: 'patient.birth_date' },
      ]);
      expect(await knex('patient').where({ id: 'mal-type-2' })).toEqual([]);
      expect((await knex('patient').whereIn('id', ['mal-type-1', 'mal-type-3'])).length).toBe(2);
      const [run] = await knex('runs').where({ command: 'ingest-fhir' }).select('status', 'exit_code', 'rejected_count');
      expect(run).toEqual({ status: 'partial', exit_code: 1, rejected_count: 6 });
    });
  });

  it('fills the table of a user --view, created on first use, and refuses one whose columns clash', async () => {
    const view = path.join(ctx.test.tmp, 'bp.json');
    writeFileSync(view, JSON.stringify({
      resourceType: 'ViewDefinition', name: 'blood_pressure', resource: 'Observation',
      where: [{ path: "code.coding.exists(code = '85354-9')" }],
      select: [
        { column: [{ name: 'id', path: 'getResourceKey()' }, { name: 'patient_id', path: 'subject.getReferenceKey(Patient)' }] },
        { column: [{ name: 'systolic', path: "component.where(code.coding.code = '8480-6').value.ofType(Quantity).value", type: 'decimal' }] },
      ],
    }));
    const result = await ingest('fixtures/fhir/sample', '--view', view);
    expect(result.code).toBe(0);
    const rows = await withDb(ctx.test, (knex) => knex('blood_pressure').select('id', 'patient_id', 'systolic').orderBy('id'));
    const expected = sampleResources().filter((r) => r.resourceType === 'Observation' && JSON.stringify(r.code).includes('85354-9'));
    expect(rows.map((r: { id: string }) => r.id)).toEqual(expected.map((r) => r.id).sort());
    expect(rows.every((r: { systolic: string | null; patient_id: string | null }) => r.systolic !== null && r.patient_id !== null)).toBe(true);
    // created in the FHIR schema, beside the shipped views' tables
    const schema = await withDb(ctx.test, async (knex) =>
      (await knex.raw(`select n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass('blood_pressure')`)).rows[0]?.nspname);
    expect(schema).toBe(ctx.db.schemas.fhir);
    const clash = path.join(ctx.test.tmp, 'clash.json');
    writeFileSync(clash, JSON.stringify({ resourceType: 'ViewDefinition', name: 'blood_pressure', resource: 'Observation', select: [{ column: [{ name: 'id', path: 'id' }] }] }));
    const refused = await ingest('fixtures/fhir/sample', '--view', clash);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('table blood_pressure already exists with other columns');
  });

  it('ends with the tables of an uninterrupted run when killed mid-run and run again', async () => {
    const input = path.join(ctx.test.tmp, 'bulk');
    mkdirSync(input);
    for (const f of ['Patient.ndjson', 'Encounter.ndjson', 'Condition.ndjson', 'Immunization.ndjson']) {
      copyFileSync(path.join(SHARED, 'fhir', 'synthea-bulk', f), path.join(input, f));
    }
    await ctx.release();
    // Kill it once the first batches are committed and it is in the middle of others.
    const killed = await new Promise<{ signal: NodeJS.Signals | null; committed: boolean }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'ingest-fhir', input, '--batch-size', '100'], { cwd: REPO_ROOT, env: childEnv(ctx.test.env) });
      let committed = false;
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        if (!committed && /event=progress files=\d+ resources=\d+/.test(stderr)) {
          committed = true;
          setTimeout(() => child.kill('SIGKILL'), 300);
        }
      });
      child.on('error', reject);
      child.on('close', (_code, signal) => resolve({ signal, committed }));
    });
    expect(killed).toEqual({ signal: 'SIGKILL', committed: true });
    // Batches were committed before the kill (waiting out the embedded database's lock of the dead process).
    const db = await openDatabase(resolveSettings(ctx.test.flags, {}, ctx.test.tmp), { wait: true });
    try {
      expect(Number((await db.knex('fhir_resources').count({ n: '*' }))[0]!.n)).toBeGreaterThan(0);
    } finally {
      await db.close();
    }
    const rerun = await runCli(['ingest-fhir', input, '--batch-size', '100'], { env: ctx.test.env });
    expect(rerun.code).toBe(0);
    const reference = await createTestDatabase(backend);
    try {
      const straight = await runCli(['ingest-fhir', input], { env: reference.env });
      expect(straight.code).toBe(0);
      const expected = await withDb(reference, snapshot);
      expect(expected.fhir_resources!.length).toBe(readdirSync(input).reduce((n, f) => n + readFileSync(path.join(input, f), 'utf8').split('\n').filter(Boolean).length, 0));
      expect(await withDb(ctx.test, snapshot)).toEqual(expected);
    } finally {
      await reference.cleanup();
    }
  }, 600_000);
});
