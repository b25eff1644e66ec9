/**
 * `carepipe view run`: a ViewDefinition over FHIR files, rows on stdout, no database. Runs the built binary.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, runCli } from './helpers/cli.js';

const PATIENT_VIEW = path.join(REPO_ROOT, 'fixtures/view-run/patient.json');
const BP_VIEW = path.join(REPO_ROOT, 'fixtures/view-run/blood-pressure.json');
const SAMPLE = path.join(REPO_ROOT, 'fixtures/fhir/sample');

let cwd: string;
beforeAll(() => {
  cwd = mkdtempSync(path.join(os.tmpdir(), 'carepipe-view-run-'));
});
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

describe('carepipe view run', () => {
  it('prints one JSON object per row, keys in column order, typed, null for empty (ndjson when stdout is not a terminal)', async () => {
    const result = await runCli(['view', 'run', '--view', PATIENT_VIEW, SAMPLE], { cwd });
    expect(result.stderr).toContain('3 rows from 3 Patient resources (41 read in 2 files), 0 rejected');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      [
        '{"id":"00000000-0000-4000-8000-000000000100","family":"Martin","given":["Alice","May"],"gender":"female","birth_date":"1984-03-12","deceased":false,"organization_id":"org-1"}',
        '{"id":"00000000-0000-4000-8000-000000000200","family":"Nguyen","given":["Bob"],"gender":"male","birth_date":"1950-11-02","deceased":true,"organization_id":"org-1"}',
        '{"id":"00000000-0000-4000-8000-000000000300","family":"Dubois","given":["Chloé"],"gender":"female","birth_date":"2019-07-21","deceased":false,"organization_id":"org-1"}',
        '',
      ].join('\n'),
    );
    // No database was opened, so none was created.
    expect(existsSync(path.join(cwd, '.carepipe'))).toBe(false);
  });

  it('prints CSV with a header, one row per forEach item', async () => {
    const result = await runCli(['view', 'run', '--view', BP_VIEW, '--format', 'csv', path.join(SAMPLE, 'transaction-bundle.json')], { cwd });
    expect(result.code).toBe(0);
    const u = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
    expect(result.stdout).toBe(
      [
        'id,patient_id,code,value,unit',
        ...[1, 2, 3].flatMap((p) => [
          `${u(p * 100 + 3)},${u(p * 100)},8480-6,${130 + p * 5},mm[Hg]`,
          `${u(p * 100 + 3)},${u(p * 100)},8462-4,${80 + p},mm[Hg]`,
        ]),
        '',
      ].join('\n'),
    );
  });

  it('prints the CSV header alone when no resource gives a row', async () => {
    const result = await runCli(['view', 'run', '--view', PATIENT_VIEW, '--format', 'csv', path.join(SAMPLE, 'Observation.ndjson')], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('id,family,given,gender,birth_date,deceased,organization_id\n');
  });

  it('prints a text table on request', async () => {
    const result = await runCli(['view', 'run', '--view', PATIENT_VIEW, '--format', 'table', SAMPLE], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n').slice(0, 3)).toEqual([
      'id                                    family  given            gender  birth_date  deceased  organization_id',
      '------------------------------------  ------  ---------------  ------  ----------  --------  ---------------',
      '00000000-0000-4000-8000-000000000100  Martin  ["Alice","May"]  female  1984-03-12  false     org-1',
    ]);
  });

  it('reads stdin with -, and keeps the digits of decimals', async () => {
    const input = [
      '{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"status":"final","code":{"text":"x"},"component":[{"code":{"coding":[{"code":"a"}]},"valueQuantity":{"value":1.50,"unit":"mg"}}]}',
      '{"resourceType":"Observation","id":"o2","status":"final","code":{"text":"x"},"component":[{"code":{"coding":[{"code":"b"}]},"valueQuantity":{"value":120}}]}',
      '',
    ].join('\n');
    const result = await runCli(['view', 'run', '--view', BP_VIEW, '-'], { cwd, input });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      // decimals as FHIR JSON writes them: numbers, with the digits of the input
      '{"id":"o1","patient_id":"p1","code":"a","value":1.50,"unit":"mg"}\n{"id":"o2","patient_id":null,"code":"b","value":120,"unit":null}\n',
    );
  });

  it('warns about each bad record naming file and line or entry, prints the good rows, exits 1', async () => {
    const result = await runCli(['view', 'run', '--view', PATIENT_VIEW, '--format', 'csv', path.join(REPO_ROOT, 'fixtures/fhir/malformed')], { cwd });
    expect(result.code).toBe(1);
    const dir = path.join(REPO_ROOT, 'fixtures/fhir/malformed');
    const warnings = result.stderr.split('\n').filter((l) => l.includes('level=warn'));
    expect(warnings).toHaveLength(5);
    expect(warnings[0]).toContain(`${dir}/invalid-json-line.ndjson:2: invalid JSON`);
    expect(warnings[0]).toContain('reason=INVALID_JSON');
    expect(warnings[1]).toContain(`${dir}/missing-resource-type.ndjson:2 field resourceType: the resource has no resourceType`);
    expect(warnings[2]).toContain(`${dir}/truncated-bundle.json entry 2: invalid JSON`);
    expect(warnings[3]).toContain(`${dir}/unresolved-reference.json entry 2 field subject.reference`);
    expect(warnings[3]).toContain('reason=UNRESOLVED_REFERENCE');
    expect(warnings[4]).toContain(`${dir}/wrong-type-birthdate.ndjson:2 field birth_date: column birth_date: expected a date`);
    expect(warnings[4]).toContain('reason=INVALID_VALUE');
    // A resource without id is shown (a view can be tried on examples), its key empty.
    expect(result.stdout.split('\n').slice(1, -1).map((l) => l.split(',')[0])).toEqual([
      'mal-json-1',
      'mal-json-3',
      'mal-id-1',
      '',
      'mal-id-3',
      'mal-rt-1',
      'mal-rt-3',
      'mal-trunc-1',
      'mal-trunc-2',
      'mal-ref-1',
      'mal-type-1',
      'mal-type-3',
    ]);
  });

  it('rejects an invalid ViewDefinition with exit 2, naming the bad element', async () => {
    const result = await runCli(['view', 'run', '--view', path.join(REPO_ROOT, 'fixtures/view-run/invalid.json'), SAMPLE], { cwd });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`carepipe: select[1].column[0].path: unknown function 'foo' (${path.join(REPO_ROOT, 'fixtures/view-run/invalid.json')})\n`);
  });

  it('exits 2 for a missing input or an unknown format', async () => {
    const missing = await runCli(['view', 'run', '--view', PATIENT_VIEW, 'nowhere.ndjson'], { cwd });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('carepipe: no such file or folder: nowhere.ndjson');
    const format = await runCli(['view', 'run', '--view', PATIENT_VIEW, '--format', 'xml', SAMPLE], { cwd });
    expect(format.code).toBe(2);
    expect(format.stderr).toContain('--format must be ndjson, csv or table');
  });

  it('evaluates over the Synthea Bulk Data export', async () => {
    const file = path.join(REPO_ROOT, '..', 'shared', 'fhir', 'synthea-bulk', 'Patient.ndjson');
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').length;
    const result = await runCli(['view', 'run', '--view', PATIENT_VIEW, file], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout.trimEnd().split('\n')).toHaveLength(lines);
  });
});
