import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { REPO_ROOT, runCli, runMain } from './helpers/cli.js';

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
