// The shipped codings, imagingstudy and image_labels ViewDefinitions, evaluated by the view engine
// over the fixtures in fixtures/fhir/coded and fixtures/fhir/imaging.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadViewFile, type CompiledView } from './view/index.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const VIEWS = path.join(ROOT, 'views');

function views(name: string): CompiledView[] {
  return readdirSync(VIEWS)
    .filter((f) => f.endsWith('.json'))
    .map((f) => loadViewFile(path.join(VIEWS, f)))
    .filter((v) => v.name === name);
}

function bundle(file: string): unknown[] {
  const json = JSON.parse(readFileSync(path.join(ROOT, 'fixtures/fhir', file), 'utf8')) as { entry: { resource: unknown }[] };
  return json.entry.map((e) => e.resource);
}

function rows(name: string, resources: unknown[]): Record<string, unknown>[] {
  const compiled = views(name);
  return resources.flatMap((r) => compiled.flatMap((v) => v.evaluate(r)));
}

describe('views sharing a table', () => {
  it.each(['codings', 'image_labels'])('every %s view has the same columns with the same types', (name) => {
    const compiled = views(name);
    expect(compiled.length).toBeGreaterThan(1);
    const shape = (v: CompiledView) => v.columns.map((c) => [c.name, c.sqlType, c.collection]);
    for (const v of compiled) expect(shape(v)).toEqual(shape(compiled[0]!));
  });

  it('the codings views cover Condition, Observation, Procedure, DiagnosticReport and ImagingStudy', () => {
    expect(views('codings').map((v) => v.resource).sort()).toEqual(['Condition', 'DiagnosticReport', 'ImagingStudy', 'Observation', 'Procedure']);
  });

  it('every column of the shipped views declares its research treatment', () => {
    for (const file of readdirSync(VIEWS).filter((f) => /^(codings|image_labels|imagingstudy)/.test(f))) {
      const text = readFileSync(path.join(VIEWS, file), 'utf8');
      const columns = [...text.matchAll(/"name": "(\w+)",\s*"path"/g)].length;
      const tags = [...text.matchAll(/"name": "research",\s*"value": "(keep|drop|pseudonym|year|postcode_outward|date_shift|birth_date)"/g)].length;
      expect({ file, tags }).toEqual({ file, tags: columns });
    }
  });
});

describe('codings', () => {
  const coded = rows('codings', bundle('coded/bundle.json'));

  it('gives a condition with ICD-10, ICD-9-CM and SNOMED codings one row per coding, with its patient', () => {
    expect(coded.filter((r) => r.resource_id === 'cond-diabetes')).toEqual([
      { resource_type: 'Condition', resource_id: 'cond-diabetes', patient_id: 'cp-1', element: 'code', system: 'http://hl7.org/fhir/sid/icd-10', code: 'E11.9', display: 'Type 2 diabetes mellitus without complications' },
      { resource_type: 'Condition', resource_id: 'cond-diabetes', patient_id: 'cp-1', element: 'code', system: 'http://hl7.org/fhir/sid/icd-9-cm', code: '250.00', display: 'Diabetes mellitus without mention of complication, type II' },
      { resource_type: 'Condition', resource_id: 'cond-diabetes', patient_id: 'cp-1', element: 'code', system: 'http://snomed.info/sct', code: '44054006', display: 'Diabetes mellitus type 2' },
      { resource_type: 'Condition', resource_id: 'cond-diabetes', patient_id: 'cp-1', element: 'category', system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'encounter-diagnosis', display: 'Encounter Diagnosis' },
    ]);
  });

  it('names the element of each coding: severity, Observation value and interpretation, Procedure reason, report conclusion', () => {
    const pick = (id: string) => coded.filter((r) => r.resource_id === id).map((r) => `${r.element} ${r.code}`);
    expect(pick('cond-asthma')).toEqual(['code J45.909', 'severity 255604002']);
    expect(pick('obs-hba1c')).toEqual(['code 4548-4', 'category laboratory', 'interpretation H']);
    expect(pick('obs-smoking')).toEqual(['code 72166-2', 'value 8517006']);
    expect(pick('proc-colonoscopy')).toEqual(['code 45378', 'code 73761001', 'reasonCode Z12.11']);
    expect(pick('dr-lipids')).toEqual(['code 57698-3', 'conclusionCode 55822004']);
    expect(pick('cond-text-only')).toEqual([]);
  });

  it('reads the modality, procedure, reason and series codings of an ImagingStudy', () => {
    const study = rows('codings', bundle('imaging/study-with-labels.json')).filter((r) => r.resource_id === 'study-chest-ct');
    expect(study.map((r) => `${r.element} ${r.code}`)).toEqual([
      'modality CT',
      'procedureCode 24627-2',
      'reasonCode 49727002',
      'series.modality CT',
      'series.modality SR',
      'series.bodySite 51185008',
      'series.bodySite 51185008',
    ]);
  });
});

describe('imagingstudy and image_labels', () => {
  const imaging = bundle('imaging/study-with-labels.json');

  it('gives one row per study with modality, procedure, body site and counts, counting series when the study does not say', () => {
    expect(rows('imagingstudy', imaging)).toEqual([
      {
        id: 'study-chest-ct', last_updated: null, status: 'available', patient_id: 'ip-1', encounter_id: null, started: '2026-10-02T08:15:00Z',
        number_of_series: 2, number_of_instances: 3, modality: 'CT,SR', procedure_system: 'http://loinc.org', procedure: '24627-2',
        procedure_display: 'CT Chest', body_site: '51185008', body_site_display: 'Thoracic structure', study_uid: null,
        description: 'CT chest without contrast',
      },
      {
        id: 'study-knee-xr', last_updated: null, status: 'available', patient_id: 'ip-1', encounter_id: null, started: '2025-01-20',
        number_of_series: 1, number_of_instances: 1, modality: 'DX', procedure_system: null, procedure: null,
        procedure_display: null, body_site: '72696002', body_site_display: 'Knee region structure', study_uid: null,
        description: null,
      },
    ]);
  });

  it('labels a study from Observations pointing at it and from its reason and procedure codes', () => {
    const labels = rows('image_labels', imaging).map((r) => [r.study_id, r.source_type, r.source_id, r.source_element, r.label_code, r.label_display, r.labelled_by, r.labelled_at]);
    expect(labels).toEqual([
      ['study-chest-ct', 'ImagingStudy', 'study-chest-ct', 'reasonCode', '49727002', 'Cough', 'Practitioner/rad-1', '2026-10-02T08:15:00Z'],
      ['study-chest-ct', 'ImagingStudy', 'study-chest-ct', 'procedureCode', '24627-2', 'CT Chest', 'Practitioner/rad-1', '2026-10-02T08:15:00Z'],
      ['study-chest-ct', 'Observation', 'label-nodule', 'value', '427359005', 'Solitary nodule of lung', 'Practitioner/rad-1', '2026-10-02T11:40:00Z'],
      ['study-chest-ct', 'Observation', 'label-nodule', 'value', 'R91.1', 'Solitary pulmonary nodule', 'Practitioner/rad-1', '2026-10-02T11:40:00Z'],
      ['study-chest-ct', 'Observation', 'label-emphysema', 'code', '87433001', 'Pulmonary emphysema', 'Practitioner/rad-1', '2026-10-02T11:45:00Z'],
    ]);
  });
});

describe('elements that look like choices', () => {
  it("a DiagnosticReport's conclusion does not read its conclusionCode", () => {
    const report = (bundle('coded/bundle.json') as { id?: string }[]).find((r) => r.id === 'dr-lipids');
    const [row] = loadViewFile(path.join(VIEWS, 'diagnosticreport.json')).evaluate(report);
    expect(row).toMatchObject({ conclusion: null });
  });
});
