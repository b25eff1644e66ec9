import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { REPO_ROOT, SHARED, runCli, runMain } from './helpers/cli.js';

const FIXTURES = path.join(REPO_ROOT, 'fixtures', 'appointments');
const fixture = (name: string) => path.join(FIXTURES, name);
const NOW = '2026-03-01T12:00:00Z';

interface Summary {
  run_id: number | null;
  exit_code: number;
  counts: { read: number; written: number; unchanged: number; rejected: number };
  missed: number;
  resolved: number;
  pending: number;
}

function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

for (const backend of BACKENDS) {
  describe(`ingest-appointments on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    /** Run the CLI in-process against this test's database (PGlite allows one process at a time). */
    async function carepipe(args: string[], env: Record<string, string> = {}) {
      await ctx.release();
      const result = await runMain([...args, ...ctx.test.args], { env });
      const summary = result.stdout.trim().startsWith('{') ? (JSON.parse(result.stdout) as Summary) : undefined;
      return { ...result, summary, logs: logLines(result.stderr) };
    }

    async function query<T>(work: (knex: Knex) => Promise<T>): Promise<T> {
      const db = await ctx.test.connect();
      try {
        return await work(db.knex);
      } finally {
        await db.close();
      }
    }

    const ingestMessy = () =>
      carepipe(['ingest-appointments', fixture('appointments-messy.json'), fixture('patients-messy.json'), '--now', NOW, '--json']);

    it('loads valid records with canonical NHS numbers, postcodes and exact names; missed derived at the run clock', async () => {
      const result = await ingestMessy();
      expect(result.code).toBe(1);
      expect(result.summary!.counts).toEqual({ read: 17, written: 8, unchanged: 0, rejected: 9 });
      const patients = await query((k) => k('patients').select('nhs_number', 'name', 'date_of_birth', 'postcode').orderBy('nhs_number'));
      expect(patients).toEqual([
        { nhs_number: '2143044321', name: 'Zo\u00e9 McNAMARA-ng', date_of_birth: '2001-12-31', postcode: 'EC1A 1BB' },
        { nhs_number: '3416721101', name: 'Dr Glenn Clark', date_of_birth: '1996-02-01', postcode: 'N6 2FA' },
        { nhs_number: '4451956838', name: '刘桂荣', date_of_birth: '1962-07-15', postcode: 'M4 2ST' },
        { nhs_number: '6840388549', name: 'कुलकर्णी, तृष्णा', date_of_birth: '1950-03-04', postcode: 'SW1A 1AA' },
      ]);
      const appointments = await query((k) =>
        k('appointments').select('id', 'patient', 'status', 'starts_at', 'duration', 'clinician', 'department', 'postcode').orderBy('id'),
      );
      expect(appointments.map((a) => ({ ...a, starts_at: (a.starts_at as Date).toISOString() }))).toEqual([
        { id: 'a0000000-0000-4000-8000-000000000001', patient: '3416721101', status: 'attended', starts_at: '2026-02-02T09:00:00.000Z', duration: 30, clinician: 'Asha Shah', department: 'cardiology', postcode: 'N6 2FA' },
        // active, ended 2026-02-10 11:00 UTC, before the clock: missed
        { id: 'a0000000-0000-4000-8000-000000000002', patient: '6840388549', status: 'missed', starts_at: '2026-02-10T10:00:00.000Z', duration: 60, clinician: 'Ben Jones', department: 'cardiology', postcode: 'SW1A 1AA' },
        // active, ends 12:30 UTC, after the clock (12:00): still active
        { id: 'a0000000-0000-4000-8000-000000000003', patient: '2143044321', status: 'active', starts_at: '2026-03-01T11:30:00.000Z', duration: 60, clinician: 'Ben Jones', department: 'oncology', postcode: 'EC1A 1BB' },
        { id: 'a0000000-0000-4000-8000-000000000004', patient: '4451956838', status: 'cancelled', starts_at: '2026-02-20T13:00:00.000Z', duration: 15, clinician: 'Chidi Okafor', department: 'gastroentology', postcode: 'M4 2ST' },
      ]);
    });

    it('keeps every broken record in rejects with file, entry, field and reason, without patient identifiers in the log', async () => {
      const result = await ingestMessy();
      const rejects = await query((k) =>
        k('rejects').select('source', 'entry', 'record_key', 'field', 'reason_code', 'retryable').where({ run_id: result.summary!.run_id }).orderBy('id'),
      );
      const appointmentsFile = fixture('appointments-messy.json');
      const patientsFile = fixture('patients-messy.json');
      expect(rejects).toEqual([
        { source: patientsFile, entry: 4, record_key: null, field: 'nhs_number', reason_code: 'NHS_NUMBER_CHECK_DIGIT', retryable: false },
        { source: patientsFile, entry: 5, record_key: null, field: 'nhs_number', reason_code: 'NHS_NUMBER_INVALID', retryable: false },
        { source: patientsFile, entry: 6, record_key: null, field: 'postcode', reason_code: 'POSTCODE_INVALID', retryable: false },
        { source: patientsFile, entry: 7, record_key: null, field: 'name', reason_code: 'NAME_INVALID', retryable: false },
        { source: appointmentsFile, entry: 4, record_key: 'a0000000-0000-4000-8000-000000000005', field: 'time', reason_code: 'TIMESTAMP_NAIVE', retryable: false },
        { source: appointmentsFile, entry: 5, record_key: 'a0000000-0000-4000-8000-000000000006', field: 'duration', reason_code: 'DURATION_INVALID', retryable: false },
        { source: appointmentsFile, entry: 6, record_key: 'a0000000-0000-4000-8000-000000000007', field: 'status', reason_code: 'STATUS_INVALID', retryable: false },
        { source: appointmentsFile, entry: 7, record_key: 'a0000000-0000-4000-8000-000000000008', field: 'patient', reason_code: 'PATIENT_UNKNOWN', retryable: true },
        { source: appointmentsFile, entry: 8, record_key: 'a0000000-0000-4000-8000-000000000009', field: 'patient', reason_code: 'NHS_NUMBER_CHECK_DIGIT', retryable: false },
      ]);
      // The engine's one form of reject line: where (file, entry, appointment id, field), the code, the words.
      const naive = result.logs.find((l) => l.reason === 'TIMESTAMP_NAIVE')!;
      expect(naive).toMatchObject({ level: 'warn', event: 'rejected' });
      expect(naive.message).toBe(
        `${appointmentsFile} entry 4 record a0000000-0000-4000-8000-000000000005 field time: TIMESTAMP_NAIVE: time: the time has no timezone offset (expected e.g. 2025-06-04T16:30:00+01:00)`,
      );
      for (const identifier of ['4451956839', '44519568', '2374184048', '9483669464', '7234401075', 'Bad Check Digit']) {
        expect(result.stderr).not.toContain(identifier);
      }
    });

    it('re-importing the same files writes nothing and leaves the rows as they were', async () => {
      await ingestMessy();
      const snapshot = () => query(async (k) => [await k('patients').select('*').orderBy('nhs_number'), await k('appointments').select('*').orderBy('id')]);
      const before = await snapshot();
      const again = await ingestMessy();
      expect(again.summary!.counts).toEqual({ read: 17, written: 0, unchanged: 8, rejected: 9 });
      expect(await snapshot()).toEqual(before);
    });

    it('refuses to reinstate a cancelled appointment: the row stays cancelled, the rest of the file loads', async () => {
      await ingestMessy();
      const result = await carepipe(['ingest-appointments', fixture('appointments-reinstate.json'), '--now', NOW, '--json']);
      expect(result.code).toBe(1);
      expect(result.summary!.counts).toMatchObject({ read: 2, written: 1, rejected: 1 });
      const [reject] = await query((k) => k('rejects').where({ run_id: result.summary!.run_id }).select('entry', 'field', 'reason_code', 'message'));
      expect(reject).toEqual({
        entry: 0,
        field: 'status',
        reason_code: 'APPOINTMENT_CANCELLED_IS_FINAL',
        message: 'the appointment was cancelled and cannot be set back to active; the cancelled row stays',
      });
      const rows = await query((k) => k('appointments').select('id', 'status', 'duration').whereIn('id', ['a0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000001']).orderBy('id'));
      expect(rows).toEqual([
        { id: 'a0000000-0000-4000-8000-000000000001', status: 'attended', duration: 45 },
        { id: 'a0000000-0000-4000-8000-000000000004', status: 'cancelled', duration: 15 },
      ]);
    });

    it('the database itself refuses to take a cancelled appointment back to active', async () => {
      await ingestMessy();
      await expect(
        query((k) => k('appointments').where({ id: 'a0000000-0000-4000-8000-000000000004' }).update({ status: 'active' })),
      ).rejects.toThrow(/APPOINTMENT_CANCELLED_IS_FINAL/);
    });

    it('keeps an appointment for an unknown patient until the patient arrives, then loads it and resolves the reject', async () => {
      const first = await ingestMessy();
      expect(first.summary!.pending).toBe(1);
      expect(await query((k) => k('appointments').where({ id: 'a0000000-0000-4000-8000-000000000008' }).first())).toBeUndefined();

      // A dry run works the whole thing out, says so, and leaves everything as it was.
      const dry = await carepipe(['ingest-appointments', fixture('patients-late.json'), '--now', NOW, '--json', '--dry-run']);
      expect(dry.code).toBe(0);
      // The waiting appointment, read again from rejects, counts as read: 1 patient + 1 appointment.
      expect(dry.summary).toMatchObject({ run_id: null, resolved: 1, pending: 0, counts: { read: 2, written: 2, rejected: 0 } });
      expect(await query((k) => k('appointments').where({ id: 'a0000000-0000-4000-8000-000000000008' }).first())).toBeUndefined();
      expect(await query((k) => k('rejects').where({ reason_code: 'PATIENT_UNKNOWN' }).first('retryable', 'resolved_run_id'))).toEqual({ retryable: true, resolved_run_id: null });

      const second = await carepipe(['ingest-appointments', fixture('patients-late.json'), '--now', NOW, '--json']);
      expect(second.code).toBe(0);
      expect(second.summary).toMatchObject({ resolved: 1, pending: 0, counts: { read: 2, written: 2, rejected: 0 }, appointments: { written: 1 } });
      const row = await query((k) => k('appointments').where({ id: 'a0000000-0000-4000-8000-000000000008' }).first('patient', 'status', 'duration', 'source'));
      expect(row).toEqual({ patient: '7234401075', status: 'active', duration: 90, source: fixture('appointments-messy.json') });
      const patient = await query((k) => k('patients').where({ nhs_number: '7234401075' }).first('name', 'postcode'));
      expect(patient).toEqual({ name: "O'Brien, Siobhán", postcode: 'N1 5ZG' });
      const reject = await query((k) => k('rejects').where({ reason_code: 'PATIENT_UNKNOWN' }).first('run_id', 'resolved_run_id'));
      expect(reject).toEqual({ run_id: first.summary!.run_id, resolved_run_id: second.summary!.run_id });

      const third = await carepipe(['ingest-appointments', fixture('patients-late.json'), '--now', NOW, '--json']);
      expect(third.summary).toMatchObject({ resolved: 0, pending: 0, counts: { written: 0, unchanged: 1 } });
    });

    it('refresh-missed marks active appointments missed once their end has passed at the fixed clock', async () => {
      const load = await carepipe(['ingest-appointments', fixture('impact-patients.json'), fixture('impact-appointments.json'), '--now', '2026-01-01T00:00:00Z', '--json']);
      expect(load.code).toBe(0);
      const status = (id: string) => query((k) => k('appointments').where({ id }).first('status').then((r) => (r as { status: string }).status));
      // c…3 starts 2026-01-19 09:00 UTC for 15 minutes: it ends at 09:15.
      const atEnd = await carepipe(['appointments', 'refresh-missed', '--now', '2026-01-19T09:15:00Z', '--json']);
      expect(atEnd.code).toBe(0);
      expect(atEnd.summary!.missed).toBe(0);
      expect(await status('c0000000-0000-4000-8000-000000000003')).toBe('active');
      const after = await carepipe(['appointments', 'refresh-missed', '--json'], { CAREPIPE_NOW: '2026-01-19T09:15:01Z' });
      expect(after.summary).toMatchObject({ missed: 1, counts: { written: 1 } });
      expect(await status('c0000000-0000-4000-8000-000000000003')).toBe('missed');
      expect(await status('b0000000-0000-4000-8000-000000000006')).toBe('active');
      const naive = await carepipe(['appointments', 'refresh-missed', '--now', '2026-01-19T09:15:01']);
      expect(naive.code).toBe(2);
      expect(naive.stderr).toContain('--now must be a date-time with an offset');
    });

    it('speaks French with --lang fr; the reason codes stay the same', async () => {
      const result = await carepipe(['ingest-appointments', fixture('appointments-messy.json'), fixture('patients-messy.json'), '--now', NOW, '--lang', 'fr']);
      expect(result.code).toBe(1);
      expect(result.stdout).toContain('17 enregistrements lus : 8 écrits, 0 inchangés, 9 rejetés');
      expect(result.stderr).toMatch(/message="[^"]* TIMESTAMP_NAIVE: time: l'heure n'a pas de décalage horaire[^"]*" reason=TIMESTAMP_NAIVE/);
      const messages = await query((k) => k('rejects').select('reason_code', 'message').whereIn('reason_code', ['PATIENT_UNKNOWN', 'NHS_NUMBER_CHECK_DIGIT']).orderBy('id'));
      expect(messages).toEqual([
        { reason_code: 'NHS_NUMBER_CHECK_DIGIT', message: 'nhs_number: le numéro NHS échoue au contrôle de la clé modulo 11' },
        { reason_code: 'PATIENT_UNKNOWN', message: "le patient n'est pas encore connu ; le rendez-vous est conservé et réessayé à l'arrivée du patient" },
        { reason_code: 'NHS_NUMBER_CHECK_DIGIT', message: 'patient: le numéro NHS échoue au contrôle de la clé modulo 11' },
      ]);
      const missing = await carepipe(['ingest-appointments', fixture('nowhere.json')], { LANG: 'fr_FR.UTF-8' });
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain(`fichier introuvable : ${fixture('nowhere.json')}`);
    });

    it('tells files apart by content and keeps going past a file it cannot read', async () => {
      const result = await carepipe([
        'ingest-appointments',
        fixture('not-an-export.json'),
        fixture('truncated.json'),
        fixture('impact-appointments.json'),
        fixture('impact-patients.json'),
        '--now',
        '2026-04-10T00:00:00Z',
        '--json',
      ]);
      expect(result.code).toBe(1);
      const rejects = await query((k) => k('rejects').select('source', 'reason_code').orderBy('id'));
      expect(rejects).toEqual([
        { source: fixture('not-an-export.json'), reason_code: 'FILE_KIND_UNKNOWN' },
        { source: fixture('truncated.json'), reason_code: 'FILE_INVALID' },
      ]);
      expect(await query((k) => k('appointments').count({ n: '*' }).first())).toEqual({ n: 12 });
    });

    it('loads the sample exports as they are: 100 patients, 100 appointments, names intact', async () => {
      const result = await carepipe([
        'ingest-appointments',
        path.join(SHARED, 'appointments', 'example_appointments.json'),
        path.join(SHARED, 'appointments', 'example_patients.json'),
        '--now',
        '2026-11-23T12:00:00Z',
        '--json',
      ]);
      expect(result.code).toBe(0);
      expect(result.summary!.counts).toMatchObject({ read: 200, rejected: 0 });
      const counts = (await query((k) => k('appointments').select('status').count({ n: '*' }).groupBy('status'))) as { status: string; n: number }[];
      // The source has 33 attended, 16 missed, 8 cancelled and 43 active; every active one ended before
      // the clock (the latest starts 2026-11-05), so all 43 are stored as missed: 16 + 43 = 59.
      expect(Object.fromEntries(counts.map((r) => [r.status, Number(r.n)]))).toEqual({ attended: 33, cancelled: 8, missed: 59 });
      expect(await query((k) => k('patients').count({ n: '*' }).first())).toEqual({ n: 100 });
      expect(await query((k) => k('patients').where({ name: '刘桂荣' }).count({ n: '*' }).first())).toEqual({ n: 1 });
      expect(await query((k) => k('patients').where({ name: 'कुलकर्णी, तृष्णा' }).count({ n: '*' }).first())).toEqual({ n: 1 });
    });

    it('counts in its summary (human and --json) every active appointment it stored as missed', async () => {
      const appointmentsFile = path.join(SHARED, 'appointments', 'example_appointments.json');
      const patientsFile = path.join(SHARED, 'appointments', 'example_patients.json');
      const source = JSON.parse(readFileSync(appointmentsFile, 'utf8')) as { id: string; status: string }[];
      const activeIds = source.filter((a) => a.status === 'active').map((a) => a.id);
      const human = await carepipe(['ingest-appointments', appointmentsFile, patientsFile, '--now', '2026-11-23T12:00:00Z']);
      expect(human.code).toBe(0);
      const storedMissed = (await query((k) => k('appointments').whereIn('id', activeIds).where({ status: 'missed' }).count({ n: '*' }).first())) as {
        n: number;
      };
      expect(Number(storedMissed.n)).toBeGreaterThan(0);
      expect(human.stdout + human.stderr).toContain(`; ${Number(storedMissed.n)} appointments marked missed;`);

      // A second run of the same files marks nothing: those appointments were marked by the first.
      const again = await carepipe(['ingest-appointments', appointmentsFile, patientsFile, '--now', '2026-11-23T12:00:00Z', '--json']);
      expect(again.summary!.missed).toBe(0);
    });

    it('--json reports as missed the active appointments stored as missed, in a batch or at the end of the run', async () => {
      const appointmentsFile = path.join(SHARED, 'appointments', 'example_appointments.json');
      const patientsFile = path.join(SHARED, 'appointments', 'example_patients.json');
      const source = JSON.parse(readFileSync(appointmentsFile, 'utf8')) as { id: string; status: string }[];
      const activeIds = source.filter((a) => a.status === 'active').map((a) => a.id);
      // Small batches: the count must add up across transactions.
      const result = await carepipe(['ingest-appointments', appointmentsFile, patientsFile, '--now', '2026-11-23T12:00:00Z', '--batch-size', '7', '--json']);
      expect(result.code).toBe(0);
      const storedMissed = (await query((k) => k('appointments').whereIn('id', activeIds).where({ status: 'missed' }).count({ n: '*' }).first())) as {
        n: number;
      };
      expect(result.summary!.missed).toBe(Number(storedMissed.n));
      expect(result.summary!.missed).toBe(activeIds.length);
    });
  });
}

describe('ingest-appointments from the built binary', () => {
  const ctx = useTestDatabase('pglite');

  it('prints the summary and exits 1 when records were rejected; LANG=fr words it in French', async () => {
    await ctx.release();
    const result = await runCli(['ingest-appointments', fixture('patients-messy.json'), '--now', NOW], {
      env: { ...ctx.test.env, LANG: 'fr_FR.UTF-8' },
    });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('8 enregistrements lus : 4 écrits, 0 inchangés, 4 rejetés');
    expect(result.stderr).toContain('reason=NHS_NUMBER_CHECK_DIGIT');
  });
});
