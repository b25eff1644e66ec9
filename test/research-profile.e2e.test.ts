/**
 * The research profile through the built binary, on both back ends: every date of a patient moves by
 * that patient's one offset in every table and run (another key, another offset), an element is
 * treated alike in every table, rows come out in pseudonym order, a view cannot keep a direct
 * identifier, and a key that is no secret is refused.
 */
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { REPO_ROOT, SHARED, runCli, runMain } from './helpers/cli.js';

const CODED = path.join(REPO_ROOT, 'fixtures/fhir/coded');
const IMAGING = path.join(REPO_ROOT, 'fixtures/fhir/imaging');
const KEY_A = 'research-key-A-0123456789';
const KEY_B = 'research-key-B-9876543210';

const pseudo = (key: string, value: string) => createHmac('sha256', key).update(value).digest('hex');
const DAY = 86_400_000;

/** Rows of a CSV with no quoted fields (the tests choose such columns), by header name. */
function rowsOf(csv: string): Record<string, string>[] {
  const [header, ...lines] = csv.trimEnd().split('\n');
  const names = header!.split(',');
  return lines.map((line) => Object.fromEntries(line.split(',').map((cell, i) => [names[i]!, cell])));
}

/** Where the dates of one patient's care sit, per exported source. */
const DATED = [
  { source: 'condition', id: 'id', patient: 'patient_id', dates: ['onset_date_time', 'recorded_date', 'abatement_date_time', 'last_updated'] },
  { source: 'diseases', id: 'condition_id', patient: 'patient_id', dates: ['onset', 'recorded_date', 'last_updated'] },
  { source: 'imagingstudy', id: 'id', patient: 'patient_id', dates: ['started'] },
  { source: 'observation', id: 'id', patient: 'patient_id', dates: ['effective_date_time', 'issued'] },
  { source: 'patient', id: 'id', patient: 'id', dates: ['birth_date', 'last_updated'] },
];

for (const backend of BACKENDS) {
  describe(`research profile on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    async function carepipe(args: string[], env: Record<string, string> = {}) {
      await ctx.release();
      return runCli(args, { env: { ...ctx.test.env, ...env }, cwd: ctx.test.tmp });
    }

    /** In-process (the many exports of these tests would take minutes as processes); exit codes go through bin/ above. */
    async function exportCsv(source: string, columns: string[], profile: 'clinical' | 'research', key = KEY_A) {
      await ctx.release();
      const result = await runMain(
        ['export-csv', source, '--columns', columns.join(','), '--profile', profile, ...(profile === 'research' ? ['--birth-date', 'shift'] : []), '--eol', 'lf', ...ctx.test.args],
        { env: { ...ctx.test.env, CAREPIPE_PSEUDONYM_KEY: key }, cwd: ctx.test.tmp },
      );
      expect(result.stderr).not.toMatch(/"level":"error"/);
      expect(result.code).toBe(0);
      return result.stdout;
    }

    /** Per patient pseudonym, every offset (days) between a clinical date and its research copy. */
    async function offsets(key: string): Promise<{ byPatient: Map<string, Set<number>>; outputs: string[]; research: Map<string, Record<string, string>[]> }> {
      const byPatient = new Map<string, Set<number>>();
      const outputs: string[] = [];
      const research = new Map<string, Record<string, string>[]>();
      for (const { source, id, patient, dates } of DATED) {
        const columns = [...new Set([id, patient, ...dates])];
        const clinical = rowsOf(await exportCsv(source, columns, 'clinical'));
        const text = await exportCsv(source, columns, 'research', key);
        outputs.push(text);
        const shifted = rowsOf(text);
        research.set(source, shifted);
        expect(shifted).toHaveLength(clinical.length);
        for (const row of clinical) {
          const copy = shifted.find((r) => r[id] === pseudo(key, row[id]!));
          expect(copy, `${source} ${row[id]}`).toBeDefined();
          for (const column of dates) {
            // A year alone (1975) has no day to measure by; its precision is kept.
            if (!row[column]) continue;
            if (row[column]!.length === 4) {
              expect(copy![column]).toMatch(/^\d{4}$/);
              continue;
            }
            expect(copy![column]!.length, `${source}.${column}`).toBe(row[column]!.length);
            const days = (Date.parse(copy![column]!) - Date.parse(row[column]!)) / DAY;
            const set = byPatient.get(copy![patient]!) ?? new Set<number>();
            set.add(days);
            byPatient.set(copy![patient]!, set);
          }
        }
      }
      return { byPatient, outputs, research };
    }

    it('moves every date of a patient by one offset in every table and run; another key gives another offset', async () => {
      const ingest = await carepipe(['ingest-fhir', CODED, IMAGING, '--json', ...ctx.test.args]);
      expect(ingest.code).toBe(0);

      const a = await offsets(KEY_A);
      // Two patients (cp-1 of the coded fixture, ip-1 of the imaging one), each with one offset: intervals survive.
      expect([...a.byPatient.keys()].sort()).toEqual([pseudo(KEY_A, 'cp-1'), pseudo(KEY_A, 'ip-1')].sort());
      for (const [, days] of a.byPatient) {
        expect(days.size).toBe(1);
        const [offset] = [...days];
        expect(offset).not.toBe(0);
        expect(Math.abs(offset!)).toBeLessThanOrEqual(182);
        expect(Number.isInteger(offset)).toBe(true);
      }
      // One element, one treatment: the same condition onset and study start in both tables that hold them.
      const onset = (source: string, column: string, idColumn: string) =>
        a.research.get(source)!.find((r) => r[idColumn] === pseudo(KEY_A, 'cond-diabetes'))![column];
      // condition.onset_date_time is a typed timestamptz column, diseases.onset the store's FHIR text:
      // the same instant, shifted by the same offset, in each column's own form.
      const conditionOnset = onset('condition', 'onset_date_time', 'id');
      const diseasesOnset = onset('diseases', 'onset', 'condition_id');
      expect(conditionOnset).toBeTruthy();
      expect(Date.parse(conditionOnset!)).toBe(Date.parse(diseasesOnset!));

      // Another run under the same key: the same bytes.
      const again = await offsets(KEY_A);
      expect(again.outputs).toEqual(a.outputs);
      // Another key: other offsets.
      const b = await offsets(KEY_B);
      const offsetOf = (o: typeof a, key: string, patient: string) => [...o.byPatient.get(pseudo(key, patient))!][0];
      expect(offsetOf(b, KEY_B, 'cp-1')).not.toBe(offsetOf(a, KEY_A, 'cp-1'));
      expect(offsetOf(b, KEY_B, 'ip-1')).not.toBe(offsetOf(a, KEY_A, 'ip-1'));
    }, 600_000);

    it('--view refuses to keep a direct identifier under the research profile (exit 2, naming the column)', async () => {
      const view = (column: { name: string; path: string }) => ({
        resourceType: 'ViewDefinition',
        name: 'leaky',
        resource: 'Patient',
        status: 'active',
        select: [{ column: [{ name: 'id', path: 'getResourceKey()', tag: [{ name: 'research', value: 'pseudonym' }] }, { ...column, tag: [{ name: 'research', value: 'keep' }] }] }],
      });
      const cases = [
        { name: 'family', path: 'name.first().family', element: 'Patient.name.family' },
        { name: 'born', path: 'birthDate', element: 'Patient.birthDate' },
        { name: 'street', path: 'address.first().line.first()', element: 'Patient.address.line' },
        { name: 'phone', path: "telecom.where(system = 'phone').value.first()", element: 'Patient.telecom.value' },
        { name: 'nhs', path: 'identifier.first().value', element: 'Patient.identifier.value' },
        { name: 'raw_id', path: 'id', element: 'Patient.id' },
      ];
      for (const column of cases) {
        writeFileSync(path.join(ctx.test.tmp, 'leaky.json'), JSON.stringify(view({ name: column.name, path: column.path })));
        const result = await carepipe(['export-csv', '--view', 'leaky.json', '--profile', 'research', ...ctx.test.args], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
        expect(result.code, column.name).toBe(2);
        expect(result.stderr).toContain(`column ${column.name} reads ${column.element}, a direct identifier`);
      }
      // The clinical profile exports what it is told.
      const clinical = await carepipe(['export-csv', '--view', 'leaky.json', ...ctx.test.args]);
      expect(clinical.code).toBe(0);
    }, 240_000);

    it('refuses a key of repeated characters or whitespace (exit 2) without printing it', async () => {
      for (const key of ['z'.repeat(24), ' '.repeat(24), 'abab'.repeat(6)]) {
        const result = await carepipe(['export-csv', 'runs', '--profile', 'research', ...ctx.test.args], { CAREPIPE_PSEUDONYM_KEY: key });
        expect(result.code).toBe(2);
        expect(result.stderr).toContain('CAREPIPE_PSEUDONYM_KEY is repeated characters or whitespace');
        if (key.trim()) expect(result.stderr).not.toContain(key.slice(0, 8));
      }
    }, 120_000);

    it('orders patients by pseudonym, not NHS number, and pseudonymises clinicians in every appointment source', async () => {
      const appointmentsFile = path.join(SHARED, 'appointments', 'example_appointments.json');
      const patientsFile = path.join(SHARED, 'appointments', 'example_patients.json');
      const ingest = await carepipe(['ingest-appointments', appointmentsFile, patientsFile, '--now', '2026-11-23T12:00:00Z', ...ctx.test.args]);
      expect(ingest.code).toBe(0);
      const env = { CAREPIPE_PSEUDONYM_KEY: KEY_A };

      const clinicalPatients = rowsOf(await exportCsv('patients', ['nhs_number'], 'clinical'));
      const patients = rowsOf(await exportCsv('patients', ['nhs_number'], 'research'));
      const expected = clinicalPatients.map((r) => pseudo(KEY_A, r.nhs_number!));
      expect(patients.map((r) => r.nhs_number)).toEqual([...expected].sort());
      // The clinical export is in NHS number order; the pseudonyms in that order are not sorted.
      expect(expected).not.toEqual([...expected].sort());

      const clinicalAppointments = rowsOf(await exportCsv('appointments', ['id', 'clinician'], 'clinical'));
      const names = [...new Set(clinicalAppointments.map((r) => r.clinician!))];
      const research = await carepipe(['export-csv', 'appointments', '--profile', 'research', '--eol', 'lf', ...ctx.test.args], env);
      expect(research.code).toBe(0);
      const missed = await carepipe(['export-csv', 'missed-appointments', '--by', 'clinician', '--period', 'week', '--profile', 'research', '--eol', 'lf', ...ctx.test.args], env);
      expect(missed.code).toBe(0);
      for (const output of [research.stdout, missed.stdout]) {
        for (const name of names) expect(output).not.toContain(name);
      }
      const groups = new Set(rowsOf(missed.stdout).map((r) => r.group));
      for (const group of groups) expect(names.map((n) => pseudo(KEY_A, n))).toContain(group);
      expect(new Set(rowsOf(research.stdout).map((r) => r.clinician))).toEqual(new Set(names.map((n) => pseudo(KEY_A, n))));
    }, 300_000);
  });
}
