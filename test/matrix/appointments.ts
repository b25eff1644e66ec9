/**
 * `ingest-appointments` in the behaviour matrix: patients and appointments export files written to the
 * test's scratch folder, at a fixed run clock; `--batch-size` small so that a run is several batches
 * (`--batch-size 1` over a few hundred appointments for the SIGINT check); the malformed run has one
 * appointment whose time has no offset (TIMESTAMP_NAIVE).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import type { MatrixCase } from './case.js';

const NOW = '2026-03-01T12:00:00Z';

/** The n-th valid NHS number (modulus 11 check digit), from 900 000 000 up. */
function nhsNumber(n: number): string {
  for (let base = 900_000_000 + n * 11; ; base += 1) {
    const digits = String(base);
    let sum = 0;
    for (let i = 0; i < 9; i += 1) sum += Number(digits[i]) * (10 - i);
    const check = (11 - (sum % 11)) % 11;
    if (check !== 10) return `${digits}${check}`;
  }
}

function exportFiles(dir: string, name: string, patients: number, appointments: number, naiveAt?: number) {
  const people = Array.from({ length: patients }, (_, i) => ({ nhs_number: nhsNumber(i), name: `Patient ${i}`, date_of_birth: '1980-01-01', postcode: 'N1 5ZG' }));
  const visits = Array.from({ length: appointments }, (_, i) => ({
    id: `b0000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    patient: people[i % patients]!.nhs_number,
    status: 'attended',
    time: i === naiveAt ? '2026-02-01T09:00:00' : '2026-02-01T09:00:00+00:00',
    duration: '15m',
    clinician: 'Asha Shah',
    department: 'cardiology',
    postcode: 'N6 2FA',
  }));
  const patientsFile = path.join(dir, `${name}-patients.json`);
  const appointmentsFile = path.join(dir, `${name}-appointments.json`);
  writeFileSync(patientsFile, JSON.stringify(people));
  writeFileSync(appointmentsFile, JSON.stringify(visits));
  return [patientsFile, appointmentsFile];
}

export const appointmentsCase: MatrixCase = {
  command: 'ingest-appointments',
  async prepare(db) {
    const clean = exportFiles(db.tmp, 'clean', 3, 9);
    const malformed = exportFiles(db.tmp, 'malformed', 3, 9, 4);
    const slow = exportFiles(db.tmp, 'slow', 20, 400);
    return {
      clean: ['ingest-appointments', ...clean, '--now', NOW, '--batch-size', '4'],
      cleanCounts: { read: 12, written: 12, rejected: 0 },
      malformed: ['ingest-appointments', ...malformed, '--now', NOW, '--batch-size', '4'],
      malformedReason: 'TIMESTAMP_NAIVE',
      slow: ['ingest-appointments', ...slow, '--now', NOW, '--batch-size', '1'],
      kept: async (knex: Knex) =>
        Number((await knex('patients').count({ n: '*' }).first())!.n) + Number((await knex('appointments').count({ n: '*' }).first())!.n),
      lockName: 'appointments',
      close: async () => undefined,
    };
  },
};
