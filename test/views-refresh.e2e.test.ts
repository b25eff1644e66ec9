/**
 * `carepipe views refresh` and the shipped-view changes `carepipe migrate` applies, on both back ends:
 * a small Synthea sample is loaded, flat tables are spoiled or their recorded view made older, and the
 * rebuilt tables must hold exactly the rows a fresh ingest made. Also migration 20261207_200 (the
 * flat_views record) up and down on a database loaded before it.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { describe, expect, it, vi } from 'vitest';
import { acquireRunLock } from '../src/db/lock.js';
import { migrationConfig } from '../src/db/migrations.js';
import { runMain } from './helpers/cli.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { writeSampleData } from './helpers/fhir-data.js';
import { RunLedger } from '../src/db/ledger.js';
import { refreshTables } from '../src/fhir/refresh.js';
import { loadShippedViews, viewsByTable } from '../src/fhir/views.js';
import type { Reporter } from '../src/pipeline/reporter.js';

vi.setConfig({ testTimeout: 300_000 });

const TABLES = ['patient', 'condition', 'observation', 'observation_component', 'codings'];
const MIGRATION = { ...migrationConfig, name: '20261207_200_flat_views' };

/** Every row of the tables, in key order, as the database gives them. */
async function snapshot(knex: Knex, tables = TABLES): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const t of tables) out[t] = await knex(t).select('*').orderBy(['_resource_type', '_resource_id', '_row_index']);
  out.diseases = await knex('diseases').select('*').orderBy('condition_id');
  return out;
}

const USER_VIEW = {
  resourceType: 'ViewDefinition',
  name: 'my_conditions',
  resource: 'Condition',
  select: [{ column: [{ name: 'id', path: 'getResourceKey()' }, { name: 'code', path: 'code.coding.first().code' }] }],
};

describe.each(BACKENDS)('views refresh on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  /** Loads the sample through ingest-fhir (with `extra` flags) and returns the database reopened. */
  async function load(extra: string[] = []) {
    const sample = await writeSampleData(path.join(ctx.test.tmp, 'in'), { Patient: 3, Condition: 12, Observation: 25 });
    await ctx.release();
    const ingest = await runMain(['ingest-fhir', sample.dir, ...extra, ...ctx.test.args]);
    expect(ingest.stderr).not.toContain('error');
    expect(ingest.code).toBe(0);
    return ctx.test.connect();
  }

  it('rebuilds spoiled tables as a fresh ingest made them, keeps the diseases view, and --dry-run keeps nothing', async () => {
    let db = await load();
    const fresh = await snapshot(db.knex);
    expect(fresh.codings.length).toBeGreaterThan(20);
    expect(fresh.diseases.length).toBe(12);
    await db.knex('codings').where({ _resource_type: 'Observation' }).delete();
    await db.knex('condition').update({ code_text: 'edited by hand' });
    await db.knex('patient').insert({ id: 'stray', _resource_type: 'Patient', _resource_id: 'stray', _row_index: 0 });
    const spoiled = await snapshot(db.knex);
    await db.close();

    const dry = await runMain(['views', 'refresh', '--dry-run', '--json', ...ctx.test.args]);
    expect(dry.code).toBe(0);
    const drySummary = JSON.parse(dry.stdout);
    expect(drySummary).toMatchObject({ command: 'views refresh', dry_run: true, run_id: null, counts: { read: 40 } });
    db = await ctx.test.connect();
    expect(await snapshot(db.knex)).toEqual(spoiled);
    await db.close();

    const run = await runMain(['views', 'refresh', '--json', ...ctx.test.args]);
    expect(run.stderr).not.toContain('error');
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout);
    expect(summary).toMatchObject({ command: 'views refresh', status: 'succeeded', exit_code: 0, resources: 40, counts: { read: 40 } });
    const codings = summary.tables.find((t: { table: string }) => t.table === 'codings');
    expect(codings).toEqual({
      table: 'codings',
      views: ['codings_condition', 'codings_diagnostic_report', 'codings_imaging_study', 'codings_observation', 'codings_procedure'],
      rows: fresh.codings.length,
      created: false,
    });
    db = await ctx.test.connect();
    expect(await snapshot(db.knex)).toEqual(fresh);
    // the refresh is in the ledger and the record names it
    const runs = await db.knex('runs').where({ command: 'views refresh' }).select('id', 'status', 'read_count');
    expect(runs).toEqual([{ id: summary.run_id, status: 'succeeded', read_count: 40 }]);
    expect(await db.knex('flat_views').where({ table_name: 'condition' }).select('view_name', 'shipped', 'run_id')).toEqual([
      { view_name: 'condition', shipped: true, run_id: summary.run_id },
    ]);
    // no side table is left behind
    const sides = await db.knex.raw(`select relname from pg_class where relnamespace::regnamespace::text = any(current_schemas(false)) and relname like '%\\_\\_refresh%'`);
    expect(sides.rows).toEqual([]);
    await db.close();
  });

  it("rebuilds a user's view table with its edited definition, later from the recorded one, and refuses an unknown table", async () => {
    const file = path.join(ctx.test.tmp, 'my-conditions.json');
    writeFileSync(file, JSON.stringify(USER_VIEW));
    let db = await load(['--view', file]);
    expect(Number((await db.knex('my_conditions').count({ n: '*' }))[0]!.n)).toBe(12);
    await db.close();

    // the user edits the view: a column more (the old table has other columns: only a refresh can rebuild it)
    const edited = { ...USER_VIEW, select: [{ column: [...USER_VIEW.select[0]!.column, { name: 'text', path: 'code.text' }] }] };
    writeFileSync(file, JSON.stringify(edited));
    const run = await runMain(['views', 'refresh', '--view', file, '--json', ...ctx.test.args]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).tables).toEqual([{ table: 'my_conditions', views: ['my-conditions'], rows: 12, created: false }]);
    db = await ctx.test.connect();
    const rows = await db.knex('my_conditions').select('id', 'code', 'text').orderBy('id');
    const conditions = await db.knex('condition').select('id', 'code', 'code_text').orderBy('id');
    expect(rows).toEqual(conditions.map((c: { id: string; code: string; code_text: string }) => ({ id: c.id, code: c.code, text: c.code_text })));
    await db.knex('my_conditions').delete();
    await db.close();

    // without the file: every shipped table plus the recorded user view, from its recorded definition
    const again = await runMain(['views', 'refresh', '--table', 'my_conditions', ...ctx.test.args]);
    expect(again.code).toBe(0);
    db = await ctx.test.connect();
    expect(await db.knex('my_conditions').select('id', 'code', 'text').orderBy('id')).toEqual(rows);
    await db.close();

    const unknown = await runMain(['views', 'refresh', '--table', 'no_such_table', '--json', ...ctx.test.args]);
    expect(unknown.code).toBe(2);
    expect(JSON.parse(unknown.stdout).error.message).toContain('unknown table no_such_table');
  });

  it('migration 20261207_200 comes to a database loaded before it and rolls back keeping every table; migrate then rebuilds a table whose shipped view is older', async () => {
    let db = await load();
    const fresh = await snapshot(db.knex);
    await db.knex.migrate.down(MIGRATION);
    expect((await db.knex.raw(`select to_regclass('flat_views') as t`)).rows[0].t).toBeNull();
    expect(await snapshot(db.knex)).toEqual(fresh);
    await db.knex.migrate.up(MIGRATION);
    expect(Number((await db.knex('flat_views').count({ n: '*' }))[0]!.n)).toBe(0);
    await db.knex.migrate.down(MIGRATION);
    expect(await snapshot(db.knex)).toEqual(fresh);
    await db.close();

    // `carepipe migrate` runs it again; the tables made before the record are recorded as they are, not rebuilt
    const first = await runMain(['migrate', '--json', ...ctx.test.args]);
    expect(first.code).toBe(0);
    const views = JSON.parse(first.stdout).views;
    expect(views.refreshed).toEqual([]);
    expect(views.recorded).toEqual(expect.arrayContaining(['codings', 'condition', 'observation', 'patient']));
    db = await ctx.test.connect();
    expect(await db.knex('flat_views').where({ table_name: 'codings' }).pluck('view_name')).toHaveLength(5);
    expect(await snapshot(db.knex)).toEqual(fresh);

    // as if `condition` had been built by an older shipped view without recorded_date, and older code
    const recorded = await db.knex('flat_views').where({ table_name: 'condition' }).first('view_json');
    const older = typeof recorded.view_json === 'string' ? JSON.parse(recorded.view_json) : recorded.view_json;
    older.select[0].column = older.select[0].column.filter((c: { name: string }) => c.name !== 'recorded_date');
    await db.knex('flat_views').where({ table_name: 'condition' }).update({ view_hash: '0'.repeat(64), view_json: JSON.stringify(older) });
    await db.knex.raw('alter table condition drop column recorded_date');
    await db.knex('condition').update({ code: 'old' });
    await db.close();

    const migrate = await runMain(['migrate', '--json', ...ctx.test.args]);
    expect(migrate.code).toBe(0);
    expect(migrate.stderr).toContain('table condition: shipped view condition changed; rebuilding it from fhir_resources');
    expect(JSON.parse(migrate.stdout).views).toEqual({ refreshed: ['condition'], recorded: [], resources: 12, rejected: 0 });
    db = await ctx.test.connect();
    expect(await snapshot(db.knex)).toEqual(fresh);
    expect((await db.knex('runs').where({ command: 'migrate' }).select('status')).map((r: { status: string }) => r.status)).toEqual(['succeeded', 'succeeded']);
    await db.close();
    // once current, migrate has nothing to do
    const again = await runMain(['migrate', '--json', ...ctx.test.args]);
    expect(JSON.parse(again.stdout).views).toEqual({ refreshed: [], recorded: [], resources: 0, rejected: 0 });
  });

  it('stops after the batch being written when interrupted: the side table goes, the old table stays as it was', async () => {
    const { knex } = ctx.db;
    for (let i = 0; i < 10; i++) {
      const resource = { resourceType: 'Patient', id: `p${i}`, gender: 'female' };
      await knex('fhir_resources').insert({ resource_type: 'Patient', id: `p${i}`, resource: JSON.stringify(resource), content_hash: `h${i}`, source: 'test' });
    }
    await knex('patient').insert({ id: 'old', gender: 'male', _resource_type: 'Patient', _resource_id: 'old', _row_index: 0 });
    const controller = new AbortController();
    let batches = 0;
    // a reporter that stops the run when the first batch is told: deterministic, no timing
    const reporter = {
      interactive: false,
      progress: () => {
        batches++;
        controller.abort();
      },
      start: async () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
      stop: () => undefined,
      result: () => undefined,
      write: () => undefined,
    } as Reporter;
    const ledger = await RunLedger.start(knex, { command: 'views refresh', args: [], user: 'test' });
    const targets = viewsByTable(loadShippedViews(['patient.json']));
    await expect(
      refreshTables(targets, { knex, kind: ctx.db.kind, schema: ctx.db.schemas.fhir, ledger, signal: controller.signal, dryRun: false, reporter, batchSize: 2 }),
    ).rejects.toMatchObject({ code: 'INTERRUPTED' });
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batches).toBeLessThan(5);
    expect(await knex('patient').pluck('id')).toEqual(['old']);
    expect((await knex.raw(`select relname from pg_class where relnamespace::regnamespace::text = any(current_schemas(false)) and relname like 'patient\\_\\_refresh%'`)).rows).toEqual([]);

    // run again, to the end
    const done = await refreshTables(targets, { knex, kind: ctx.db.kind, schema: ctx.db.schemas.fhir, ledger, signal: new AbortController().signal, dryRun: false, batchSize: 2 });
    expect(done).toMatchObject({ resources: 10, rejected: 0, tables: [{ table: 'patient', rows: 10, created: false }] });
    expect(await knex('patient').orderBy('id').pluck('id')).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9']);
  });

  if (backend === 'postgres') {
    it('exits 3 while ingest-fhir holds its lock, and leaves the tables alone', async () => {
      const db = await load();
      const release = await acquireRunLock(db, 'ingest-fhir');
      try {
        const run = await runMain(['views', 'refresh', ...ctx.test.args]);
        expect(run.code).toBe(3);
        expect(run.stderr).toContain("another 'ingest-fhir' run holds the lock");
      } finally {
        await release();
        await db.close();
      }
    });
  }
});
