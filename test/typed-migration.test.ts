/**
 * Migration 20261206_900 on a database loaded before it: the migration is rolled back (flat tables
 * back to text columns, no _row_index, appointment."end"), rows are written with raw SQL the way the
 * earlier code wrote them, then the migration runs up (types, keys, nothing lost) and down again.
 */
import type { Knex } from 'knex';
import { describe, expect, it, vi } from 'vitest';
import { migrationConfig } from '../src/db/migrations.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';

vi.setConfig({ testTimeout: 300_000 });

const MIGRATION = '20261206_900_typed_flat_tables';
const step = { ...migrationConfig, name: MIGRATION };
// The schema-per-source migration comes after this one: a database loaded before 900 predates it too;
// and so does row history as superseded images.
const later = { ...migrationConfig, name: '20261206_950_schema_per_source' };
const superseded = { ...migrationConfig, name: '20261207_100_history_superseded_images' };

/** Back to the database as it was before migration 900 (and so before 950 and 20261207_100). */
async function beforeTyped(knex: Knex): Promise<void> {
  await knex.migrate.down(superseded);
  await knex.migrate.down(later);
  await knex.migrate.down(step);
}

async function typeOf(knex: Knex, table: string, column: string): Promise<string | undefined> {
  const { rows } = await knex.raw<{ rows: { data_type: string }[] }>(
    'select data_type from information_schema.columns where table_schema = any(current_schemas(false)) and table_name = ? and column_name = ?',
    [table, column],
  );
  return rows[0]?.data_type;
}

/** Rows as the text columns held them before: FHIR strings, partial dates, a decimal's digits. */
async function loadLegacyRows(knex: Knex): Promise<void> {
  await knex.raw(`insert into observation (id, value_quantity, effective_date_time, _resource_type, _resource_id) values
    ('o1', '71.50', '2020-05', 'Observation', 'o1'),
    ('o2', '108.6', '2015-01-13T10:33:34-05:00', 'Observation', 'o2')`);
  await knex.raw(`insert into observation_component (observation_id, code, value_quantity, _resource_type, _resource_id) values
    ('o1', '8480-6', '120', 'Observation', 'o1'),
    ('o1', '8462-4', '80', 'Observation', 'o1'),
    ('o2', '8480-6', '118.0', 'Observation', 'o2')`);
  await knex.raw(`insert into patient (id, birth_date, _resource_type, _resource_id) values ('p1', '1970', 'Patient', 'p1')`);
  await knex.raw(`insert into encounter (id, period_start, _resource_type, _resource_id) values ('e1', '2020-05-01', 'Encounter', 'e1')`);
  await knex.raw(`insert into appointment (id, start, "end", _resource_type, _resource_id) values
    ('a1', '2024-01-01T09:00:00Z', '2024-01-01T09:30:00Z', 'Appointment', 'a1')`);
}

const historyCount = async (knex: Knex) => Number((await knex('row_history').count({ n: '*' }))[0]!.n);

describe.each(BACKENDS)(`migration ${MIGRATION} on %s`, (backend) => {
  const ctx = useTestDatabase(backend);

  it('types the columns, numbers and keys the rows, renames end, and rolls back with nothing lost', async () => {
    const { knex } = ctx.db;
    await beforeTyped(knex);
    expect(await typeOf(knex, 'observation', 'value_quantity')).toBe('text');
    expect(await typeOf(knex, 'observation', '_row_index')).toBeUndefined();
    expect(await typeOf(knex, 'appointment', 'end')).toBe('timestamp with time zone');
    await loadLegacyRows(knex);
    const history = await historyCount(knex);

    await knex.migrate.up(step);
    expect(await typeOf(knex, 'observation', 'value_quantity')).toBe('numeric');
    expect(await typeOf(knex, 'observation', 'effective_date_time')).toBe('timestamp with time zone');
    expect(await typeOf(knex, 'patient', 'birth_date')).toBe('date');
    expect(await typeOf(knex, 'appointment', 'end')).toBeUndefined();
    expect(await typeOf(knex, 'appointment', 'end_time')).toBe('timestamp with time zone');
    const observations = await knex.raw(
      `select id, value_quantity::text as v, to_char(effective_date_time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') as at, _row_index
         from observation order by id`,
    );
    expect(observations.rows).toEqual([
      { id: 'o1', v: '71.50', at: '2020-05-01T00:00:00', _row_index: 0 },
      { id: 'o2', v: '108.6', at: '2015-01-13T15:33:34', _row_index: 0 },
    ]);
    const components = await knex.raw(`select _resource_id, _row_index, code from observation_component order by 1, 2`);
    expect(components.rows).toEqual([
      { _resource_id: 'o1', _row_index: 0, code: '8480-6' },
      { _resource_id: 'o1', _row_index: 1, code: '8462-4' },
      { _resource_id: 'o2', _row_index: 0, code: '8480-6' },
    ]);
    expect((await knex.raw(`select to_char(birth_date, 'YYYY-MM-DD') as d from patient`)).rows).toEqual([{ d: '1970-01-01' }]);
    expect((await knex.raw(`select extract(year from period_start)::int as y from encounter`)).rows).toEqual([{ y: 2020 }]);
    expect((await knex.raw(`select end_time = '2024-01-01T09:30:00Z'::timestamptz as same from appointment`)).rows).toEqual([{ same: true }]);
    // the key holds: a second row 0 for o1 is refused
    await expect(knex.raw(`insert into observation (id, _resource_type, _resource_id, _row_index) values ('o1', 'Observation', 'o1', 0)`)).rejects.toThrow(/duplicate key/);
    // numbering the rows is not a change recorded in row history
    expect(await historyCount(knex)).toBe(history);

    await knex.migrate.down(step);
    expect(await typeOf(knex, 'observation', 'value_quantity')).toBe('text');
    expect(await typeOf(knex, 'observation', '_row_index')).toBeUndefined();
    expect(await typeOf(knex, 'appointment', 'end')).toBe('timestamp with time zone');
    const back = await knex.raw(`select id, value_quantity as v, effective_date_time as at from observation order by id`);
    expect(back.rows).toEqual([
      { id: 'o1', v: '71.50', at: '2020-05-01T00:00:00Z' },
      { id: 'o2', v: '108.6', at: '2015-01-13T15:33:34Z' },
    ]);
    expect((await knex.raw(`select birth_date from patient`)).rows).toEqual([{ birth_date: '1970-01-01' }]);
    expect(Number((await knex('observation_component').count({ n: '*' }))[0]!.n)).toBe(3);
    const index = await knex.raw(`select count(*)::int as n from pg_indexes where schemaname = any(current_schemas(false)) and indexname = 'observation_record_idx'`);
    expect(index.rows[0].n).toBe(1);

    // and up again, as a later `carepipe migrate` would
    await knex.migrate.up(step);
    expect(await typeOf(knex, 'observation', 'value_quantity')).toBe('numeric');
  });

  it('stops on a text value that is no date, naming table and column, and keeps every row', async () => {
    const { knex } = ctx.db;
    await beforeTyped(knex);
    await loadLegacyRows(knex);
    await knex.raw(`update encounter set period_start = 'soon' where id = 'e1'`);
    await expect(knex.migrate.up(step)).rejects.toThrow('table encounter, column period_start: 1 values are not of type timestamptz');
    expect(await typeOf(knex, 'encounter', 'period_start')).toBe('text');
    expect(await typeOf(knex, 'observation', 'value_quantity')).toBe('text');
    expect((await knex.raw(`select period_start from encounter`)).rows).toEqual([{ period_start: 'soon' }]);
  });

  it('counts a date of the right shape that does not exist (month 13, 30 February) as not of the type', async () => {
    const { knex } = ctx.db;
    await beforeTyped(knex);
    await loadLegacyRows(knex);
    for (const value of ['2020-13-45', '2021-02-30T10:00:00Z']) {
      await knex.raw(`update encounter set period_start = ? where id = 'e1'`, [value]);
      await expect(knex.migrate.up(step)).rejects.toThrow('table encounter, column period_start: 1 values are not of type timestamptz');
      expect(await typeOf(knex, 'encounter', 'period_start')).toBe('text');
      expect((await knex.raw(`select period_start from encounter`)).rows).toEqual([{ period_start: value }]);
    }
  });
});
