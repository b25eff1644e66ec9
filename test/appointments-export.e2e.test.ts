import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { REPO_ROOT, SHARED, runCli, runMain } from './helpers/cli.js';

const FIXTURES = path.join(REPO_ROOT, 'fixtures', 'appointments');

// CSV as RFC 4180 has it (CRLF). Figures worked by hand in test/appointments-impact.test.ts. January and February only, so that the
// real clock of export-csv (any time after 18 February 2026) sees every one of these appointments over.
const BY_DEPARTMENT_MONTH = [
  'group,period_start,appointments,missed,missed_rate,clinician_minutes_lost',
  'cardiology,2026-01-01,3,2,0.6667,75',
  'cardiology,2026-02-01,2,0,0.0000,0',
  'oncology,2026-01-01,1,1,1.0000,60',
  'oncology,2026-02-01,3,2,0.6667,120',
  '',
].join('\r\n');

for (const backend of BACKENDS) {
  describe(`carepipe export-csv missed-appointments on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    async function loadImpactFixture() {
      await ctx.release();
      const files = ['impact-patients.json', 'impact-appointments.json'].map((f) => path.join(FIXTURES, f));
      // Loaded at New Year: c…3 is still `active` in the table; the export derives its miss.
      const load = await runMain(['ingest-appointments', ...files, '--now', '2026-01-01T00:00:00Z', ...ctx.test.args]);
      expect(load.code).toBe(0);
    }

    it('writes the figures per department and month as CSV and draws each department to --chart', async () => {
      await loadImpactFixture();
      const csv = path.join(ctx.test.tmp, 'missed.csv');
      const svg = path.join(ctx.test.tmp, 'missed.svg');
      const result = await runCli(
        ['export-csv', 'missed-appointments', '--by', 'department', '--period', 'month', '--from', '2026-01-01', '--to', '2026-02-28', '--chart', svg, '--output', csv],
        { env: ctx.test.env },
      );
      expect(result.code).toBe(0);
      expect(readFileSync(csv, 'utf8')).toBe(BY_DEPARTMENT_MONTH);
      const chart = readFileSync(svg, 'utf8');
      const series = [...chart.matchAll(/<g class="series" data-measure="([^"]+)" data-series="([^"]+)"/g)].map((m) => `${m[1]}:${m[2]}`);
      expect(series).toEqual(['missed_rate:cardiology', 'missed_rate:oncology', 'hours_lost:cardiology', 'hours_lost:oncology']);
    });

    it('charts per clinician and week what the CSV holds: top series and "other", gaps between weeks, labels spaced by week', async () => {
      await ctx.release();
      const files = ['example_patients.json', 'example_appointments.json'].map((f) => path.join(SHARED, 'appointments', f));
      expect((await runMain(['ingest-appointments', ...files, '--now', '2026-11-23T12:00:00Z', ...ctx.test.args])).code).toBe(0);
      const csv = path.join(ctx.test.tmp, 'weekly.csv');
      const svg = path.join(ctx.test.tmp, 'weekly.svg');
      const result = await runCli(
        ['export-csv', 'missed-appointments', '--by', 'clinician', '--period', 'week', '--chart', svg, '--output', csv, '--eol', 'lf'],
        { env: ctx.test.env },
      );
      expect(result.code).toBe(0);
      const [, ...lines] = readFileSync(csv, 'utf8').trimEnd().split('\n');
      const rows = lines.map((l) => l.split(',')).map(([group, period, appointments, missed, , minutes]) => ({
        group: group!,
        period: period!,
        appointments: Number(appointments),
        missed: Number(missed),
        minutes: Number(minutes),
      }));
      // From the CSV: the six clinicians with the most missed appointments keep a line, the rest are "other".
      const missedBy = new Map<string, number>();
      for (const r of rows) missedBy.set(r.group, (missedBy.get(r.group) ?? 0) + r.missed);
      const ranked = [...missedBy].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([g]) => g);
      expect(ranked.length).toBeGreaterThan(7);
      const top = ranked.slice(0, 6);
      const expected = new Map<string, Map<string, { appointments: number; missed: number; minutes: number }>>();
      for (const r of rows) {
        const name = top.includes(r.group) ? r.group : 'other';
        const byPeriod = expected.get(name) ?? new Map();
        const t = byPeriod.get(r.period) ?? { appointments: 0, missed: 0, minutes: 0 };
        byPeriod.set(r.period, { appointments: t.appointments + r.appointments, missed: t.missed + r.missed, minutes: t.minutes + r.minutes });
        expected.set(name, byPeriod);
      }

      const chart = readFileSync(svg, 'utf8');
      expect(chart).toContain('Missed appointments by clinician, per week');
      const series = [...chart.matchAll(/<g class="series" data-measure="([^"]+)" data-series="([^"]+)"[^>]*>([\s\S]*?)<\/g>/g)].map((m) => ({
        measure: m[1]!,
        name: m[2]!,
        points: [...m[3]!.matchAll(/data-period="([^"]+)" data-value="([^"]+)"/g)].map((p) => [p[1]!, p[2]!]),
        lines: [...m[3]!.matchAll(/<polyline[^>]* data-periods="([^"]+)"/g)].map((l) => l[1]!.split(' ')),
      }));
      expect(series.filter((s) => s.measure === 'missed_rate').map((s) => s.name)).toEqual([...[...top].sort((a, b) => a.localeCompare(b)), 'other']);
      for (const s of series) {
        const want = [...expected.get(s.name)!].sort(([a], [b]) => a.localeCompare(b)).map(([period, t]) => [
          period,
          (s.measure === 'missed_rate' ? (t.missed / t.appointments) * 100 : t.minutes / 60).toFixed(2),
        ]);
        expect(s.points, `${s.measure} ${s.name}`).toEqual(want);
        // A line joins only weeks that follow each other: a week without data is a gap.
        for (const line of s.lines) {
          for (let i = 1; i < line.length; i += 1) expect(Date.parse(line[i]!) - Date.parse(line[i - 1]!)).toBe(7 * 86_400_000);
        }
      }
      // Axis labels: at most about ten, a whole number of weeks apart, all the same distance.
      const labels = [...chart.matchAll(/<text transform="translate\(([\d.]+) [\d.]+\) rotate\(-35\)" data-period="([^"]+)"/g)].map((m) => ({ x: Number(m[1]), period: m[2]! }));
      expect(labels.length).toBeGreaterThan(3);
      expect(labels.length).toBeLessThanOrEqual(10);
      const gaps = new Set(labels.slice(1).map((l, i) => (Date.parse(l.period) - Date.parse(labels[i]!.period)) / (7 * 86_400_000)));
      expect(gaps.size).toBe(1);
      expect(Number.isInteger([...gaps][0])).toBe(true);
      expect(Math.min(...labels.slice(1).map((l, i) => l.x - labels[i]!.x))).toBeGreaterThan(40);
    }, 240_000);

    it('groups by clinician and week to stdout, and refuses an unknown --by with exit 2', async () => {
      await loadImpactFixture();
      const weekly = await runMain(
        ['export-csv', 'missed-appointments', '--by', 'clinician', '--period', 'week', '--from', '2026-02-01', '--to', '2026-02-28', ...ctx.test.args],
      );
      expect(weekly.code).toBe(0);
      expect(weekly.stdout).toBe(
        [
          'group,period_start,appointments,missed,missed_rate,clinician_minutes_lost',
          'Asha Shah,2026-02-02,1,0,0.0000,0',
          'Ben Jones,2026-02-09,2,1,0.5000,90',
          'Chidi Okafor,2026-02-02,1,1,1.0000,30',
          'Chidi Okafor,2026-02-16,1,0,0.0000,0',
          '',
        ].join('\r\n'),
      );
      const wrong = await runMain(['export-csv', 'missed-appointments', '--by', 'ward', ...ctx.test.args]);
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toContain("--by must be clinician or department, not 'ward'");
    });

    it('exports patients under the research profile: name dropped, NHS number pseudonymised, birth year, outward postcode', async () => {
      await loadImpactFixture();
      const result = await runMain(['export-csv', 'patients', '--profile', 'research', '--columns', 'nhs_number,date_of_birth,postcode', ...ctx.test.args], {
        env: { CAREPIPE_PSEUDONYM_KEY: 'a-test-key-of-32-characters-long' },
      });
      expect(result.code).toBe(0);
      const lines = result.stdout.trim().split('\r\n');
      expect(lines[0]).toBe('nhs_number,date_of_birth,postcode');
      expect(lines.slice(1).map((l) => l.split(',').slice(1).join(',')).sort()).toEqual(['1970,N6', '1980,SW1A', '1990,EC1A']);
      expect(lines.slice(1).every((l) => /^[0-9a-f]{64},/.test(l))).toBe(true);
      expect(result.stdout).not.toMatch(/3416721101|Patient One/);
      const withName = await runMain(['export-csv', 'patients', '--profile', 'research', ...ctx.test.args], {
        env: { CAREPIPE_PSEUDONYM_KEY: 'a-test-key-of-32-characters-long' },
      });
      expect(withName.stdout.split('\r\n')[0]).toBe('nhs_number,date_of_birth,postcode,run_id,loaded_at,updated_at');
    });
  });
}
