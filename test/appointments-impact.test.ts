import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { REPO_ROOT, runMain } from './helpers/cli.js';
import { missedAppointmentsSource } from '../src/appointments/export.js';
import type { ExportParams } from '../src/export/treatments.js';

const FIXTURES = path.join(REPO_ROOT, 'fixtures', 'appointments');

/*
 * fixtures/appointments/impact-appointments.json, worked by hand (clock 2026-04-10, UK time):
 *
 * cardiology  c1 2026-01-05 Mon  30m  attended  Asha Shah
 *             c2 2026-01-12 Mon  60m  missed    Asha Shah
 *             c3 2026-01-19 Mon  15m  active    Ben Jones    ended 09:15 that day: counts as missed
 *             c4 2026-01-26 Mon  60m  cancelled Ben Jones    left out
 *             c5 2026-02-02 Mon  90m  attended  Asha Shah
 *             c6 2026-02-09 Mon 120m  attended  Ben Jones
 * oncology    b1 2026-01-07 Wed  60m  missed    Chidi Okafor
 *             b2 2026-02-04 Wed  30m  missed    Chidi Okafor
 *             b3 2026-02-11 Wed  90m  missed    Ben Jones
 *             b4 2026-02-18 Wed  45m  attended  Chidi Okafor
 *             b5 2026-03-31 23:30 UTC = 2026-04-01 00:30 BST: April; 60m missed, Chidi Okafor
 *             b6 2026-05-01  60m  active: not over yet, left out
 *
 * By department and month:
 *   cardiology 2026-01: c1 c2 c3 → 3 due, 2 missed (c2, c3), 2/3 = 0.6667, 60 + 15 = 75 minutes
 *   cardiology 2026-02: c5 c6    → 2 due, 0 missed, 0, 0 minutes
 *   oncology   2026-01: b1       → 1 due, 1 missed, 1, 60 minutes
 *   oncology   2026-02: b2 b3 b4 → 3 due, 2 missed, 0.6667, 30 + 90 = 120 minutes
 *   oncology   2026-04: b5       → 1 due, 1 missed, 1, 60 minutes
 */

describe('missed-appointments flags', () => {
  it('refuses flags it cannot use, naming the flag', () => {
    expect(() => missedAppointmentsSource.query!({ by: 'ward' })).toThrow("--by must be clinician or department, not 'ward'");
    expect(() => missedAppointmentsSource.query!({ period: 'year' })).toThrow("--period must be week or month, not 'year'");
    expect(() => missedAppointmentsSource.query!({ from: '01/02/2026' })).toThrow("--from must be a date YYYY-MM-DD, not '01/02/2026'");
  });
});

for (const backend of BACKENDS) {
  describe(`missed-appointments impact on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    async function load(): Promise<Knex> {
      await ctx.release();
      // Loaded at New Year: c3 is still active in the table, so the query has to derive its miss.
      const result = await runMain(
        ['ingest-appointments', path.join(FIXTURES, 'impact-patients.json'), path.join(FIXTURES, 'impact-appointments.json'), '--now', '2026-01-01T00:00:00Z', ...ctx.test.args],
      );
      expect(result.code).toBe(0);
      const db = await ctx.test.connect();
      ctx.db = db;
      return db.knex;
    }

    async function impact(knex: Knex, params: ExportParams) {
      const { sql, bindings } = missedAppointmentsSource.query!(params);
      const result = await knex.raw<{ rows: Record<string, unknown>[] }>(sql, bindings as Knex.RawBinding[]);
      return result.rows;
    }

    it('counts due and missed appointments, the missed rate and minutes lost per department and month', async () => {
      const knex = await load();
      expect(await impact(knex, { by: 'department', period: 'month', now: new Date('2026-04-10T00:00:00Z') })).toEqual([
        { group: 'cardiology', period_start: '2026-01-01', appointments: 3, missed: 2, missed_rate: '0.6667', clinician_minutes_lost: 75 },
        { group: 'cardiology', period_start: '2026-02-01', appointments: 2, missed: 0, missed_rate: '0.0000', clinician_minutes_lost: 0 },
        { group: 'oncology', period_start: '2026-01-01', appointments: 1, missed: 1, missed_rate: '1.0000', clinician_minutes_lost: 60 },
        { group: 'oncology', period_start: '2026-02-01', appointments: 3, missed: 2, missed_rate: '0.6667', clinician_minutes_lost: 120 },
        { group: 'oncology', period_start: '2026-04-01', appointments: 1, missed: 1, missed_rate: '1.0000', clinician_minutes_lost: 60 },
      ]);
    });

    it('groups by clinician and Monday weeks within --from/--to (inclusive)', async () => {
      const knex = await load();
      // February only: c5 (Shah, week of 2 Feb), c6 + b3 (Jones, week of 9 Feb: 1 of 2 missed, 90 minutes),
      // b2 (Okafor, week of 2 Feb, missed 30), b4 (Okafor, week of 16 Feb, attended).
      expect(await impact(knex, { by: 'clinician', period: 'week', from: '2026-02-01', to: '2026-02-28', now: new Date('2026-04-10T00:00:00Z') })).toEqual([
        { group: 'Asha Shah', period_start: '2026-02-02', appointments: 1, missed: 0, missed_rate: '0.0000', clinician_minutes_lost: 0 },
        { group: 'Ben Jones', period_start: '2026-02-09', appointments: 2, missed: 1, missed_rate: '0.5000', clinician_minutes_lost: 90 },
        { group: 'Chidi Okafor', period_start: '2026-02-02', appointments: 1, missed: 1, missed_rate: '1.0000', clinician_minutes_lost: 30 },
        { group: 'Chidi Okafor', period_start: '2026-02-16', appointments: 1, missed: 0, missed_rate: '0.0000', clinician_minutes_lost: 0 },
      ]);
    });

    it('places periods in UK local time: 23:30 UTC on 31 March is in April', async () => {
      const knex = await load();
      const now = new Date('2026-04-10T00:00:00Z');
      expect(await impact(knex, { by: 'department', period: 'month', from: '2026-03-01', to: '2026-03-31', now })).toEqual([]);
      expect(await impact(knex, { by: 'department', period: 'month', from: '2026-04-01', now })).toEqual([
        { group: 'oncology', period_start: '2026-04-01', appointments: 1, missed: 1, missed_rate: '1.0000', clinician_minutes_lost: 60 },
      ]);
    });

    it('leaves out an active appointment until its end has passed at the clock', async () => {
      const knex = await load();
      const january = { by: 'department', period: 'month', from: '2026-01-01', to: '2026-01-31' };
      // At 09:15 on 19 January c3 has just reached its end: not over, so only c1 and c2 are due.
      expect(await impact(knex, { ...january, now: new Date('2026-01-19T09:15:00Z') })).toEqual([
        { group: 'cardiology', period_start: '2026-01-01', appointments: 2, missed: 1, missed_rate: '0.5000', clinician_minutes_lost: 60 },
        { group: 'oncology', period_start: '2026-01-01', appointments: 1, missed: 1, missed_rate: '1.0000', clinician_minutes_lost: 60 },
      ]);
    });

    it('draws the missed-rate trend with one series per department to .svg', async () => {
      const knex = await load();
      const file = path.join(ctx.test.tmp, 'missed.svg');
      await missedAppointmentsSource.chart!(knex, { period: 'month', now: new Date('2026-04-10T00:00:00Z') }, file);
      const svg = readFileSync(file, 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      const series = [...svg.matchAll(/<g class="series" data-measure="([^"]+)" data-series="([^"]+)"[^>]*>([\s\S]*?)<\/g>/g)].map((m) => ({
        measure: m[1],
        name: m[2],
        points: [...m[3]!.matchAll(/data-period="([^"]+)" data-value="([^"]+)"/g)].map((p) => [p[1], p[2]]),
        line: m[3]!.includes('<polyline'),
      }));
      // Rates from the hand-worked table above (2/3 = 66.67 %); hours lost: 75 min = 1.25 h, 120 min = 2 h.
      expect(series).toEqual([
        { measure: 'missed_rate', name: 'cardiology', points: [['2026-01-01', '66.67'], ['2026-02-01', '0.00']], line: true },
        { measure: 'missed_rate', name: 'oncology', points: [['2026-01-01', '100.00'], ['2026-02-01', '66.67'], ['2026-04-01', '100.00']], line: true },
        { measure: 'hours_lost', name: 'cardiology', points: [['2026-01-01', '1.25'], ['2026-02-01', '0.00']], line: true },
        { measure: 'hours_lost', name: 'oncology', points: [['2026-01-01', '1.00'], ['2026-02-01', '2.00'], ['2026-04-01', '1.00']], line: true },
      ]);
      expect(svg).toContain('Missed appointments by department, per month');
    });

    it('rasterises the chart to .png and refuses other extensions', async () => {
      const knex = await load();
      const file = path.join(ctx.test.tmp, 'missed.png');
      await missedAppointmentsSource.chart!(knex, { period: 'week', now: new Date('2026-04-10T00:00:00Z') }, file);
      const png = readFileSync(file);
      expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      // IHDR: width and height of the drawing
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([900, 612]);
      await expect(missedAppointmentsSource.chart!(knex, {}, path.join(ctx.test.tmp, 'missed.jpg'))).rejects.toThrow(
        "--chart must name a .svg or .png file, not 'missed.jpg'",
      );
    });
  });
}
