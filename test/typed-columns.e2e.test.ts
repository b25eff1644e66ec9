/**
 * Typed flat tables end to end (issue 19): the built binary loads FHIR files into tables whose
 * decimal, date and dateTime columns are numeric, date and timestamptz, keyed and indexed, and an
 * analyst's SQL works on them as it is; `view run --format ndjson` writes values as FHIR JSON does.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { describe, expect, it, vi } from 'vitest';
import { BACKENDS, useTestDatabase, type TestDatabase } from './helpers/db.js';
import { REPO_ROOT, runCli } from './helpers/cli.js';
import { SYNTHEA_BULK } from './helpers/fhir-data.js';
import { loadShippedViews, tablesOf } from '../src/fhir/views.js';

vi.setConfig({ testTimeout: 300_000 });

const weight = (id: string, value: string, effective: string) =>
  `{"resourceType":"Observation","id":"${id}","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},` +
  `"subject":{"reference":"Patient/p1"},"effectiveDateTime":"${effective}","valueQuantity":{"value":${value},"unit":"kg","code":"kg"}}`;

/** Two partial dates (a birth year, an encounter start month), three body weights, one impossible date. */
const RESOURCES = [
  '{"resourceType":"Patient","id":"p1","birthDate":"1970"}',
  '{"resourceType":"Patient","id":"p2","birthDate":"1985-03-14"}',
  '{"resourceType":"Encounter","id":"e1","status":"finished","subject":{"reference":"Patient/p1"},"period":{"start":"2020-05","end":"2020-05-01T10:00:00+02:00"}}',
  weight('o1', '71.50', '2020-05-01T09:30:00+02:00'),
  weight('o2', '108.6', '2020-06-01T09:30:00Z'),
  weight('o3', '99.4', '2020-07-01T09:30:00Z'),
  weight('bad', '80.0', '2020-13-45'),
];

async function withDb<T>(test: TestDatabase, work: (knex: Knex) => Promise<T>): Promise<T> {
  const db = await test.connect();
  try {
    return await work(db.knex);
  } finally {
    await db.close();
  }
}

async function columnType(knex: Knex, table: string, column: string): Promise<string | undefined> {
  const { rows } = await knex.raw<{ rows: { data_type: string }[] }>(
    'select data_type from information_schema.columns where table_schema = any(current_schemas(false)) and table_name = ? and column_name = ?',
    [table, column],
  );
  return rows[0]?.data_type;
}

describe.each(BACKENDS)('typed flat tables on %s', (backend) => {
  const ctx = useTestDatabase(backend);
  const writeInput = (name: string, lines: string[]) => {
    const dir = path.join(ctx.test.tmp, 'in');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, name), lines.join('\n') + '\n');
    return path.join(dir, name);
  };

  it('loads decimals as numeric with their digits and dates as dates, partial ones as the first instant, counted', async () => {
    const input = writeInput('typed.ndjson', RESOURCES);
    await ctx.release();
    const result = await runCli(['ingest-fhir', input], { env: ctx.test.env });
    // the impossible date is a reject naming file, record and column; the rest loads
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toContain('typed.ndjson:7 record Observation/bad field observation.effective_date_time: WRONG_TYPE');
    expect(result.stderr).toContain('the value 9999-99-99 is not a FHIR dateTime');
    expect(result.stderr).not.toContain('2020-13-45');
    expect(result.stdout).toContain('partial dates: 2 (a year, a month or a day without its time), stored as the first instant of their period');

    await withDb(ctx.test, async (knex) => {
      expect(await columnType(knex, 'observation', 'value_quantity')).toBe('numeric');
      expect(await columnType(knex, 'patient', 'birth_date')).toBe('date');
      expect(await columnType(knex, 'encounter', 'period_start')).toBe('timestamp with time zone');
      const avg = await knex.raw(`select pg_typeof(avg(value_quantity))::text as type, round(avg(value_quantity), 2)::text as avg from observation`);
      expect(avg.rows[0]).toEqual({ type: 'numeric', avg: '93.17' });
      const ordered = await knex.raw(`select id, value_quantity::text as v from observation order by value_quantity desc`);
      expect(ordered.rows).toEqual([
        { id: 'o2', v: '108.6' },
        { id: 'o3', v: '99.4' },
        { id: 'o1', v: '71.50' },
      ]);
      const patients = await knex.raw(`select id, to_char(birth_date, 'YYYY-MM-DD') as born from patient order by id`);
      expect(patients.rows).toEqual([
        { id: 'p1', born: '1970-01-01' },
        { id: 'p2', born: '1985-03-14' },
      ]);
      const encounter = await knex.raw(
        `select extract(year from period_start)::int as year, period_start = '2020-05-01T00:00:00Z'::timestamptz as first_instant,
                period_end = '2020-05-01T08:00:00Z'::timestamptz as same_instant from encounter`,
      );
      expect(encounter.rows).toEqual([{ year: 2020, first_instant: true, same_instant: true }]);
      const rejects = await knex('rejects').select('record_key', 'field', 'reason_code');
      expect(rejects).toEqual([{ record_key: 'Observation/bad', field: 'observation.effective_date_time', reason_code: 'WRONG_TYPE' }]);
      const [run] = await knex('runs').where({ command: 'ingest-fhir' }).select('details');
      expect(run.details.partial_dates).toBe(2);
      // rows are keyed by their record and position
      const keys = await knex.raw(`select _resource_id, _row_index from observation order by 1`);
      expect(keys.rows).toEqual([
        { _resource_id: 'o1', _row_index: 0 },
        { _resource_id: 'o2', _row_index: 0 },
        { _resource_id: 'o3', _row_index: 0 },
      ]);
    });

    // exporting through the view compares its decimals as numbers: 99.4 is not above 100
    const heavy = await runCli(['export-csv', '--view', path.join(REPO_ROOT, 'views', 'observation.json'), '--columns', 'id,value_quantity', '--where', 'value_quantity>100'], {
      env: ctx.test.env,
    });
    expect(heavy.code, heavy.stderr).toBe(0);
    expect(heavy.stdout).toBe('id,value_quantity\r\no2,108.6\r\n');

    // --json gives the count too (a new file: only what a run writes is counted)
    const more = writeInput('more.ndjson', ['{"resourceType":"Patient","id":"p3","birthDate":"1990-07"}']);
    const json = await runCli(['ingest-fhir', more, '--json'], { env: ctx.test.env });
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ partial_dates: 1, counts: { written: 1 } });
  });

  it("types a --view table made before its view's dates and decimals were typed, keeping its rows", async () => {
    const view = path.join(ctx.test.tmp, 'weights.json');
    writeFileSync(
      view,
      JSON.stringify({
        resourceType: 'ViewDefinition',
        name: 'weights',
        resource: 'Observation',
        select: [
          {
            column: [
              { name: 'id', path: 'getResourceKey()' },
              { name: 'kg', path: 'value.ofType(Quantity).value', type: 'decimal' },
              { name: 'at', path: 'effective.ofType(dateTime)', type: 'dateTime' },
            ],
          },
        ],
      }),
    );
    // as the earlier code left it: text columns, numbered and keyed by the migration
    await ctx.db.knex.raw(`create table weights (id text, kg text, at text, _resource_type text not null, _resource_id text not null, _row_index integer not null,
      primary key (_resource_type, _resource_id, _row_index))`);
    await ctx.db.knex.raw(`insert into weights values ('old', '80.50', '2019-03', 'Observation', 'old', 0)`);
    const input = writeInput('typed.ndjson', [weight('o1', '71.50', '2020-05-01T09:30:00Z')]);
    await ctx.release();
    const result = await runCli(['ingest-fhir', input, '--view', view], { env: ctx.test.env });
    expect(result.code, result.stderr).toBe(0);
    await withDb(ctx.test, async (knex) => {
      expect(await columnType(knex, 'weights', 'kg')).toBe('numeric');
      expect(await columnType(knex, 'weights', 'at')).toBe('timestamp with time zone');
      const rows = await knex.raw(`select id, kg::text as kg, at = ?::timestamptz as first_instant from weights order by id`, ['2019-03-01T00:00:00Z']);
      expect(rows.rows).toEqual([
        { id: 'o1', kg: '71.50', first_instant: false },
        { id: 'old', kg: '80.50', first_instant: true },
      ]);
    });
  });

  it('keys every flat table, indexes the reference columns, and names no column with a reserved word', async () => {
    const knex = ctx.db.knex;
    for (const table of tablesOf(loadShippedViews())) {
      const key = await knex.raw(
        `select array_agg(a.attname::text order by k.ord) as cols from pg_index i
           join unnest(i.indkey) with ordinality as k(attnum, ord) on true
           join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
          where i.indrelid = to_regclass(?) and i.indisprimary`,
        [table.table],
      );
      expect([table.table, key.rows[0].cols]).toEqual([table.table, ['_resource_type', '_resource_id', '_row_index']]);
      for (const column of table.indexed ?? []) {
        const indexed = await knex.raw(
          `select count(*)::int as n from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
            where i.indrelid = to_regclass(?) and a.attname = ?`,
          [table.table, column],
        );
        expect([table.table, column, indexed.rows[0].n]).toEqual([table.table, column, 1]);
      }
    }
    expect(tablesOf(loadShippedViews()).find((t) => t.table === 'observation')!.indexed).toEqual(['patient_id', 'encounter_id']);
    const reserved = await knex.raw(
      `select c.table_name, c.column_name from information_schema.columns c
         join pg_get_keywords() k on k.word = c.column_name and k.catcode in ('R', 'T')
        where c.table_schema = any(current_schemas(false)) and c.table_name = any(?)`,
      [tablesOf(loadShippedViews()).map((t) => t.table)],
    );
    expect(reserved.rows).toEqual([]);
    // what the analyst typed now runs as written
    await knex.raw('select start, end_time from appointment');
  });

  it('export-csv --where with a value that does not fit the column exits 2 naming the column and its type', async () => {
    const input = writeInput('typed.ndjson', RESOURCES.slice(0, 3));
    await ctx.release();
    expect((await runCli(['ingest-fhir', input], { env: ctx.test.env })).code).toBe(0);
    const bad = await runCli(['export-csv', 'patient', '--where', 'birth_date=abc'], { env: ctx.test.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--where birth_date: the value given does not fit its column patient.birth_date, of type date');
    expect(bad.stderr).not.toContain('abc');
    expect(bad.stdout).toBe('');
    const good = await runCli(['export-csv', 'patient', '--where', 'birth_date=1970-01-01', '--columns', 'id,birth_date'], { env: ctx.test.env });
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toBe('id,birth_date\r\np1,1970-01-01\r\n');
    // timestamptz cells in the documented ISO form, in --timezone (UTC by default)
    const encounters = await runCli(['export-csv', 'encounter', '--columns', 'id,period_start,period_end'], { env: ctx.test.env });
    expect(encounters.code, encounters.stderr).toBe(0);
    expect(encounters.stdout).toBe('id,period_start,period_end\r\ne1,2020-05-01T00:00:00+00:00,2020-05-01T08:00:00+00:00\r\n');
  });
});

describe('view run --format ndjson', () => {
  it('writes a decimal as a JSON number with its digits and dates as their original strings', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-typed-'));
    const view = path.join(dir, 'weights.json');
    writeFileSync(
      view,
      JSON.stringify({
        resourceType: 'ViewDefinition',
        resource: 'Observation',
        select: [
          {
            column: [
              { name: 'id', path: 'id' },
              { name: 'v', path: 'value.ofType(Quantity).value', type: 'decimal' },
              { name: 'at', path: 'effective.ofType(dateTime)', type: 'dateTime' },
            ],
          },
        ],
      }),
    );
    const result = await runCli(['view', 'run', '--view', view, '--format', 'ndjson', '-'], {
      input: [weight('o1', '71.50', '2020-05'), weight('o2', '1e2', '2020-06-01T09:30:00+02:00')].join('\n') + '\n',
    });
    rmSync(dir, { recursive: true, force: true });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('{"id":"o1","v":71.50,"at":"2020-05"}\n{"id":"o2","v":1e2,"at":"2020-06-01T09:30:00+02:00"}\n');
  });
});

describe.each(BACKENDS)('a fresh load of the shared Synthea export on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  it('answers the analyst: avg(value_quantity) is numeric, extract(year from period_start) works, the body-weight maximum is 108.6', async () => {
    const files = ['Patient', 'Encounter', 'Observation'].map((t) => path.join(SYNTHEA_BULK, `${t}.ndjson`));
    await ctx.release();
    const result = await runCli(['ingest-fhir', ...files], { env: ctx.test.env, timeoutMs: 550_000 });
    expect(result.code, result.stderr).toBe(0);
    await withDb(ctx.test, async (knex) => {
      const avg = await knex.raw(`select pg_typeof(avg(value_quantity))::text as type from observation`);
      expect(avg.rows[0].type).toBe('numeric');
      const years = await knex.raw(`select min(extract(year from period_start))::int as first, count(*)::int as n from encounter`);
      expect(years.rows[0].n).toBe(readFileSync(files[1]!, 'utf8').split('\n').filter(Boolean).length);
      expect(years.rows[0].first).toBeGreaterThan(1900);
      const heaviest = await knex.raw(`select value_quantity::text as kg from observation where code = '29463-7' order by value_quantity desc limit 1`);
      expect(heaviest.rows[0].kg).toBe('108.6');
    });
  }, 600_000);
});
