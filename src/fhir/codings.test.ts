import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from '../../test/helpers/db.js';
import { ensureCodingsExtras, fastSpellings } from './codings.js';
import { loadViewFile } from './view/index.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

const SYSTEMS: [string, string | null][] = [
  ['http://hl7.org/fhir/sid/icd-10', 'ICD-10'],
  ['http://hl7.org/fhir/sid/icd-10-cm', 'ICD-10-CM'],
  ['http://hl7.org/fhir/sid/icd-9-cm', 'ICD-9-CM'],
  ['http://snomed.info/sct', 'SNOMED CT'],
  ['https://snomed.info/sct/', 'SNOMED CT'],
  ['http://loinc.org', 'LOINC'],
  ['http://www.nlm.nih.gov/research/umls/rxnorm', 'RxNorm'],
  ['http://www.ama-assn.org/go/cpt', 'CPT'],
  ['http://dicom.nema.org/resources/ontology/DCM', 'DICOM'],
  ['http://dicom.nema.org/medical/dicom/current/output/chtml/part16/sect_CID_29.html', 'DICOM'],
  ['http://www.whocc.no/atc', 'ATC'],
  ['http://hl7.org/fhir/sid/cvx', 'CVX'],
  ['http://unitsofmeasure.org', 'UCUM'],
  ['http://www.cms.gov/Medicare/Coding/ICD10', 'ICD-10-PCS'],
  ['urn:oid:2.16.840.1.113883.6.90', 'ICD-10-CM'],
  ['urn:oid:2.16.840.1.113883.6.96', 'SNOMED CT'],
  ['http://terminology.hl7.org/CodeSystem/condition-category', 'HL7 condition-category'],
  ['http://example.org/local-codes', null],
];

for (const backend of BACKENDS) {
  describe(`codings and diseases on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    it('coding_system_name names the common code systems from their canonical URLs and OIDs', async () => {
      const result = await ctx.db.knex.raw('select s as system, coding_system_name(s) as name from unnest(?::text[]) with ordinality as u(s, i) order by i', [
        SYSTEMS.map(([url]) => url),
      ]);
      expect(result.rows.map((r: { system: string; name: string | null }) => [r.system, r.name])).toEqual(SYSTEMS);
    });

    it('the fast path of coding_system_name gives the names of the normalising rules, spelling by spelling', async () => {
      const spellings = [
        ...fastSpellings().map(([s]) => s),
        ...SYSTEMS.map(([s]) => s),
        'http://terminology.hl7.org/CodeSystem/icd-o-3',
        'http://terminology.hl7.org/CodeSystem/ICD-O-3',
        'http://terminology.hl7.org/CodeSystem/v3-ActCode',
        'http://terminology.hl7.org/CodeSystem/v2-0203/',
        'http://terminology.hl7.org/CodeSystem/',
        'http://terminology.hl7.org/CodeSystem/a/b',
        'http://terminology.hl7.org/CodeSystem/observation-category ',
        'HTTP://LOINC.ORG',
        ' http://loinc.org',
        'http://hl7.org/fhir/administrative-gender',
        '',
        null,
      ];
      const result = await ctx.db.knex.raw(
        'select s, coding_system_name(s) as fast, coding_system_name_normalised(s) as rules from unnest(?::text[]) as u(s)',
        [spellings as string[]], // the null travels as a NULL element
      );
      const rows = result.rows as { s: string | null; fast: string | null; rules: string | null }[];
      expect(rows).toHaveLength(spellings.length);
      expect(rows.filter((r) => r.fast !== r.rules)).toEqual([]);
      // the comparison is not vacuous: most spellings have a name, and the listed HL7 one keeps its own
      expect(rows.filter((r) => r.fast !== null).length).toBeGreaterThan(fastSpellings().length);
      expect(rows.find((r) => r.s === 'http://terminology.hl7.org/CodeSystem/icd-o-3')?.fast).toBe('ICD-O-3');
      expect(rows.find((r) => r.s === 'http://terminology.hl7.org/CodeSystem/v3-ActCode')?.fast).toBe('HL7 v3-ActCode');
      // A session whose search path lacks carepipe's schema can still write codings rows: the inlined
      // body names its helper with the schema (here: call it schema-qualified from pg_catalog's path).
      const schema = (await ctx.db.knex.raw('select current_schema() as s')).rows[0].s as string;
      const named = await ctx.db.knex.transaction(async (trx) => {
        await trx.raw('set local search_path = pg_catalog');
        return (await trx.raw(`select "${schema}".coding_system_name(s) as n from unnest(?::text[]) as u(s)`, [['http://example.org/x', 'HTTP://LOINC.ORG/']])).rows;
      });
      expect(named).toEqual([{ n: null }, { n: 'LOINC' }]);
    });

    it('the diseases view gives one row per condition with ICD-10, ICD-9 and SNOMED codes side by side', async () => {
      const { knex } = ctx.db;
      // the codings table of migration 620, filled here by the views as ingest-fhir fills it
      const views = readdirSync(path.join(ROOT, 'views')).filter((f) => f.startsWith('codings_')).map((f) => loadViewFile(path.join(ROOT, 'views', f)));
      expect(await ensureCodingsExtras(knex)).toBe(true); // idempotent
      const bundle = JSON.parse(readFileSync(path.join(ROOT, 'fixtures/fhir/coded/bundle.json'), 'utf8')) as { entry: { resource: { resourceType: string; id: string } }[] };
      for (const { resource } of bundle.entry) {
        await knex('fhir_resources').insert({ resource_type: resource.resourceType, id: resource.id, resource: JSON.stringify(resource), content_hash: resource.id, source: 'bundle.json' });
        const rows = views.flatMap((v) => v.evaluate(resource)).map((r, i) => ({ _resource_type: resource.resourceType, _resource_id: resource.id, _row_index: i, ...r }));
        if (rows.length > 0) await knex('codings').insert(rows);
      }
      const named = await knex('codings').where({ resource_id: 'proc-colonoscopy' }).orderBy('code').select('code', 'system_name');
      expect(named).toEqual([
        { code: '45378', system_name: 'CPT' },
        { code: '73761001', system_name: 'SNOMED CT' },
        { code: 'Z12.11', system_name: 'ICD-10' },
      ]);
      const diseases = await knex('diseases')
        .orderBy('condition_id')
        .select('condition_id', 'patient_id', 'clinical_status', 'onset', 'icd10_code', 'icd10_system', 'icd9_code', 'icd9_system', 'snomed_code', 'text');
      expect(diseases).toEqual([
        { condition_id: 'cond-asthma', patient_id: 'cp-1', clinical_status: 'active', onset: '1975', icd10_code: 'J45.909', icd10_system: 'ICD-10-CM', icd9_code: null, icd9_system: null, snomed_code: null, text: null },
        { condition_id: 'cond-diabetes', patient_id: 'cp-1', clinical_status: 'active', onset: '2009-05-14', icd10_code: 'E11.9', icd10_system: 'ICD-10', icd9_code: '250.00', icd9_system: 'ICD-9-CM', snomed_code: '44054006', text: 'Type 2 diabetes' },
        { condition_id: 'cond-snomed-only', patient_id: 'cp-1', clinical_status: 'resolved', onset: '2020-01-03T09:00:00+01:00', icd10_code: null, icd10_system: null, icd9_code: null, icd9_system: null, snomed_code: '444814009', text: null },
        { condition_id: 'cond-text-only', patient_id: 'cp-1', clinical_status: null, onset: null, icd10_code: null, icd10_system: null, icd9_code: null, icd9_system: null, snomed_code: null, text: 'feels tired' },
      ]);
      // a deleted condition leaves the view
      await knex('fhir_resources').where({ id: 'cond-asthma' }).update({ deleted: true });
      expect(await knex('diseases').pluck('condition_id')).not.toContain('cond-asthma');
    });
  });
}
