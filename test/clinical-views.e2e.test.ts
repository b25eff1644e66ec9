/**
 * codings, diseases, imagingstudy and image_labels filled by `carepipe ingest-fhir` (the built
 * binary) from the coded and imaging fixtures, and the row history an ingest run leaves, on both back ends.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { REPO_ROOT, runCli } from './helpers/cli.js';

const CODED = path.join(REPO_ROOT, 'fixtures/fhir/coded');
const IMAGING = path.join(REPO_ROOT, 'fixtures/fhir/imaging');

for (const backend of BACKENDS) {
  describe(`clinical views through ingest-fhir on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    async function ingest(...paths: string[]) {
      const result = await runCli(['ingest-fhir', ...paths, '--json', ...ctx.test.args]);
      expect(result.stderr).not.toMatch(/level.:.error/);
      expect(result.code).toBe(0);
      return JSON.parse(result.stdout) as { run_id: number };
    }

    it('fills codings with system names, diseases, imagingstudy and image_labels', async () => {
      await ctx.release();
      await ingest(CODED, IMAGING);
      const db = await ctx.test.connect();
      try {
        const { knex } = db;
        expect(await knex('codings').where({ resource_id: 'cond-diabetes' }).orderBy('system_name').select('element', 'system_name', 'code')).toEqual([
          { element: 'category', system_name: 'HL7 condition-category', code: 'encounter-diagnosis' },
          { element: 'code', system_name: 'ICD-10', code: 'E11.9' },
          { element: 'code', system_name: 'ICD-9-CM', code: '250.00' },
          { element: 'code', system_name: 'SNOMED CT', code: '44054006' },
        ]);
        expect(await knex('codings').where({ resource_id: 'study-chest-ct', element: 'modality' }).first('system_name', 'code')).toEqual({ system_name: 'DICOM', code: 'CT' });
        expect(await knex('diseases').where({ condition_id: 'cond-diabetes' }).first('patient_id', 'icd10_code', 'icd9_code', 'snomed_code')).toEqual({
          patient_id: 'cp-1',
          icd10_code: 'E11.9',
          icd9_code: '250.00',
          snomed_code: '44054006',
        });
        expect(await knex('diseases').count({ n: '*' }).first()).toEqual({ n: 4 });
        expect(await knex('imagingstudy').orderBy('id').select('id', 'patient_id', 'modality', 'body_site_display', 'number_of_series', 'number_of_instances')).toEqual([
          { id: 'study-chest-ct', patient_id: 'ip-1', modality: 'CT,SR', body_site_display: 'Thoracic structure', number_of_series: 2, number_of_instances: 3 },
          { id: 'study-knee-xr', patient_id: 'ip-1', modality: 'DX', body_site_display: 'Knee region structure', number_of_series: 1, number_of_instances: 1 },
        ]);
        const labels = await knex('image_labels').orderBy(['source_id', 'label_code']).select('study_id', 'source_id', 'label_code', 'labelled_by');
        expect(labels).toEqual([
          { study_id: 'study-chest-ct', source_id: 'label-emphysema', label_code: '87433001', labelled_by: 'Practitioner/rad-1' },
          { study_id: 'study-chest-ct', source_id: 'label-nodule', label_code: '427359005', labelled_by: 'Practitioner/rad-1' },
          { study_id: 'study-chest-ct', source_id: 'label-nodule', label_code: 'R91.1', labelled_by: 'Practitioner/rad-1' },
          { study_id: 'study-chest-ct', source_id: 'study-chest-ct', label_code: '24627-2', labelled_by: 'Practitioner/rad-1' },
          { study_id: 'study-chest-ct', source_id: 'study-chest-ct', label_code: '49727002', labelled_by: 'Practitioner/rad-1' },
        ]);
      } finally {
        await db.close();
      }
      const csv = await runCli(['export-csv', 'diseases', '--profile', 'research', '--where', 'icd9_code=250.00', '--eol', 'lf', ...ctx.test.args], {
        env: { ...ctx.test.env, CAREPIPE_PSEUDONYM_KEY: 'a research key of some length' },
      });
      expect(csv.code).toBe(0);
      const [header, row, ...rest] = csv.stdout.trimEnd().split('\n');
      expect(header).toBe('condition_id,patient_id,clinical_status,verification_status,onset,recorded_date,icd10_code,icd10_display,icd10_system,icd9_code,icd9_display,icd9_system,snomed_code,snomed_display,last_updated');
      const match = /^[0-9a-f]{64},[0-9a-f]{64},active,,(\d{4}-\d\d-\d\d),(\d{4}-\d\d-\d\d),E11\.9,Type 2 diabetes mellitus without complications,ICD-10,250\.00,"Diabetes mellitus without mention of complication, type II",ICD-9-CM,44054006,Diabetes mellitus type 2,\d{4}-\d\d-\d\dT[^,]+$/.exec(row!);
      expect(match).not.toBeNull();
      // Onset 2009-05-14 and recorded 2009-05-20 (the fixture), shifted by the patient's one offset: six days apart still.
      const shift = (Date.parse(match![1]!) - Date.parse('2009-05-14')) / 86_400_000;
      expect(shift).not.toBe(0);
      expect(Math.abs(shift)).toBeLessThanOrEqual(182);
      expect((Date.parse(match![2]!) - Date.parse(match![1]!)) / 86_400_000).toBe(6);
      expect(rest).toEqual([]);
    }, 180_000);

    it('records what each ingest run changed, and history shows a condition resolved by a later run', async () => {
      await ctx.release();
      const first = await ingest(CODED);
      // a later copy of the diabetes condition: resolved
      const bundle = JSON.parse(readFileSync(path.join(CODED, 'bundle.json'), 'utf8')) as { entry: { resource: Record<string, unknown> }[] };
      const condition = bundle.entry.map((e) => e.resource).find((r) => r.id === 'cond-diabetes')!;
      const later = {
        ...condition,
        meta: { versionId: '2', lastUpdated: '2026-06-01T10:00:00Z' },
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'resolved' }] },
      };
      const dir = path.join(ctx.test.tmp, 'later');
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'Condition.ndjson'), `${JSON.stringify(later)}\n`);
      const second = await ingest(dir);

      const result = await runCli(['history', 'fhir_resources', 'Condition/cond-diabetes', '--json', ...ctx.test.args]);
      expect(result.code).toBe(0);
      const changes = (JSON.parse(result.stdout) as { changes: { operation: string; run: { id: number; command: string }; fields: { path: string; before?: unknown; after?: unknown }[] }[] }).changes;
      expect(changes.map((c) => [c.operation, c.run.id, c.run.command])).toEqual([
        ['I', first.run_id, 'ingest-fhir'],
        ['U', second.run_id, 'ingest-fhir'],
      ]);
      expect(changes[1]!.fields).toContainEqual({ path: 'resource.clinicalStatus.coding[0].code', before: 'active', after: 'resolved' });
      // the flat table's history, derived from those versions through its view: the old row and the new
      const flat = await runCli(['history', 'condition', 'Condition/cond-diabetes', '--json', ...ctx.test.args]);
      expect(flat.code, flat.stderr).toBe(0);
      const rows = (JSON.parse(flat.stdout) as { changes: { operation: string; run: { id: number }; before: { clinical_status: string } | null; after: { clinical_status: string } | null }[] }).changes;
      expect(rows.map((c) => [c.operation, c.run.id, (c.before ?? c.after)!.clinical_status])).toEqual([
        ['I', first.run_id, 'active'],
        ['D', second.run_id, 'active'],
        ['I', second.run_id, 'resolved'],
      ]);

      // an unchanged second load of the same files records nothing
      const db = await ctx.test.connect();
      const before = await db.knex('row_history').count({ n: '*' }).first();
      await db.close();
      const again = await runCli(['ingest-fhir', CODED, '--full-refresh', '--json', ...ctx.test.args]);
      expect(again.code).toBe(0);
      const db2 = await ctx.test.connect();
      try {
        expect(await db2.knex('row_history').count({ n: '*' }).first()).toEqual(before);
        // only the superseded resource is stored: flat tables and codings derive theirs
        const perTable = await db2.knex('row_history').where({ run_id: second.run_id }).groupBy('table_name').orderBy('table_name').select('table_name').count({ n: '*' });
        expect(perTable.map((r) => (r as { table_name: string }).table_name)).toEqual(['fhir_resources']);
      } finally {
        await db2.close();
      }
      // five runs of the binary: each opens the embedded database afresh
    }, 240_000);
  });
}
