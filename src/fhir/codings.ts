/**
 * Diagnosis codes for analysts: `coding_system_name(url)` turns a code system's canonical URL (or OID)
 * into the name people use (`ICD-10`, `SNOMED CT`, `LOINC` …); the `codings` table (from the
 * views/codings_*.json ViewDefinitions) gets it as a stored generated column `system_name`, and the
 * `diseases` view gives one row per Condition with its ICD-10, ICD-9 and SNOMED CT codes side by side.
 * A SQL function rather than a mapping in the writer: analysts can call it on any system column, and
 * the generated column can never disagree with the system beside it.
 */
import type { Knex } from 'knex';
import { quoteIdent, tableExists } from '../db/catalog.js';
import type { SourceDeclaration } from '../export/treatments.js';

/** [normalised URL or OID, name]: the URL lower-cased, without scheme, `www.` or trailing slash. */
export const CODE_SYSTEM_NAMES: [string, string][] = [
  ['hl7.org/fhir/sid/icd-10', 'ICD-10'],
  ['hl7.org/fhir/sid/icd-10-cm', 'ICD-10-CM'],
  ['hl7.org/fhir/sid/icd-10-pcs', 'ICD-10-PCS'],
  ['cms.gov/medicare/coding/icd10', 'ICD-10-PCS'],
  ['fhir.de/codesystem/bfarm/icd-10-gm', 'ICD-10-GM'],
  ['fhir.de/codesystem/dimdi/icd-10-gm', 'ICD-10-GM'],
  ['data.esante.gouv.fr/atih/cim10', 'CIM-10'],
  ['hl7.org/fhir/sid/icd-9-cm', 'ICD-9-CM'],
  ['hl7.org/fhir/sid/icd-9', 'ICD-9'],
  ['id.who.int/icd/release/11/mms', 'ICD-11'],
  ['terminology.hl7.org/codesystem/icd-o-3', 'ICD-O-3'],
  ['snomed.info/sct', 'SNOMED CT'],
  ['loinc.org', 'LOINC'],
  ['nlm.nih.gov/research/umls/rxnorm', 'RxNorm'],
  ['ama-assn.org/go/cpt', 'CPT'],
  ['dicom.nema.org/resources/ontology/dcm', 'DICOM'],
  ['whocc.no/atc', 'ATC'],
  ['hl7.org/fhir/sid/ndc', 'NDC'],
  ['hl7.org/fhir/sid/cvx', 'CVX'],
  ['unitsofmeasure.org', 'UCUM'],
  ['radlex.org', 'RadLex'],
  ['nucc.org/provider-taxonomy', 'NUCC'],
  ['urn:oid:2.16.840.1.113883.6.3', 'ICD-10'],
  ['urn:oid:2.16.840.1.113883.6.90', 'ICD-10-CM'],
  ['urn:oid:2.16.840.1.113883.6.4', 'ICD-10-PCS'],
  ['urn:oid:2.16.840.1.113883.6.103', 'ICD-9-CM'],
  ['urn:oid:2.16.840.1.113883.6.96', 'SNOMED CT'],
  ['urn:oid:2.16.840.1.113883.6.1', 'LOINC'],
  ['urn:oid:2.16.840.1.113883.6.88', 'RxNorm'],
  ['urn:oid:2.16.840.1.113883.6.12', 'CPT'],
  ['urn:oid:2.16.840.1.113883.6.73', 'ATC'],
  ['urn:oid:2.16.840.1.113883.6.69', 'NDC'],
  ['urn:oid:2.16.840.1.113883.12.292', 'CVX'],
];

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * The naming rules as one PL/pgSQL function called `name` (migration 640 installed them as
 * coding_system_name itself; since migration 840 they are coding_system_name_normalised, behind the
 * fast path below). IMMUTABLE, so a generated column may use it (no `?` in the SQL: knex.raw reads it
 * as a binding). Besides the list: any DICOM part 16 URL → DICOM (Synthea writes the CID page's URL),
 * HL7 terminology code systems → `HL7 <id>`, FHIR ones → `FHIR <id>`; anything else → null rather
 * than a guess.
 *
 * PL/pgSQL, not SQL: a SQL function with a FROM clause cannot be inlined, and Postgres ran it through
 * the SQL-function executor for every row, about 65 µs per codings row written (two thirds of the
 * database's time in a Synthea load). PL/pgSQL keeps its plans for the session: about 5 µs.
 */
export function systemNameRulesSql(name: string): string {
  return `
create or replace function ${name}(system text) returns text
language plpgsql immutable strict parallel safe as $$
declare
  n text := regexp_replace(lower(btrim(system)), '^https{0,1}://(www\\.){0,1}|/+$', '', 'g');
begin
  return case
    ${CODE_SYSTEM_NAMES.map(([url, name]) => `when n = ${literal(url)} then ${literal(name)}`).join('\n    ')}
    when n like 'dicom.nema.org/medical/dicom/%' then 'DICOM'
    when n like 'terminology.hl7.org/codesystem/%' then 'HL7 ' || substring(btrim(system) from '([^/]+)/*$')
    when n like 'hl7.org/fhir/%' and n not like 'hl7.org/fhir/sid/%' then 'FHIR ' || substring(btrim(system) from '([^/]+)/*$')
  end;
end
$$`;
}

const HL7_CODE_SYSTEMS = 'http://terminology.hl7.org/CodeSystem/';

/**
 * coding_system_name(system) since migration 840: the systems as they are written almost always (the
 * canonical URL, an OID, an HL7 terminology URL) are named by plain comparisons, and only other
 * spellings go through the normalising rules above. A SQL function of one expression, not STRICT, so
 * Postgres inlines it into the generated column and the common case calls no function at all.
 * Measured in psql on a Synthea load's 62k codings rows (six systems, all canonical), inserting with the
 * generated column and its index: 0.65–0.72 s against 0.91–0.94 s through PL/pgSQL alone.
 * Every name it gives is the one the rules give (codings.test.ts compares them).
 */
export const CODING_SYSTEM_NAME_SQL: string[] = [
  systemNameRulesSql('coding_system_name_normalised'),
  // The helper is named with the schema it is created in: an inlined body is resolved with the search
  // path of whoever writes the row, which need not include carepipe's schema. format() puts the schema
  // in; the body holds no other `%`.
  `
do $create$ begin execute format($body$
create or replace function coding_system_name(system text) returns text
language sql immutable parallel safe as $$
  select case
    ${fastSpellings().map(([spelling, name]) => `when system = ${literal(spelling)} then ${literal(name)}`).join('\n    ')}
    when left(system, ${HL7_CODE_SYSTEMS.length}) = ${literal(HL7_CODE_SYSTEMS)} and system = btrim(system)
         and substr(system, ${HL7_CODE_SYSTEMS.length + 1}) <> '' and strpos(substr(system, ${HL7_CODE_SYSTEMS.length + 1}), '/') = 0
         and lower(system) not in (${hl7Listed().map(literal).join(', ')})
      then 'HL7 ' || substr(system, ${HL7_CODE_SYSTEMS.length + 1})
    else %I.coding_system_name_normalised(system)
  end
$$$body$, current_schema());
end $create$`,
];

/** The spellings of the listed systems that the rules normalise to the listed form: `http://`, `http://www.`, the OID. */
export function fastSpellings(): [string, string][] {
  return CODE_SYSTEM_NAMES.flatMap(([normalised, name]): [string, string][] =>
    normalised.startsWith('urn:') ? [[normalised, name]] : [[`http://${normalised}`, name], [`http://www.${normalised}`, name]],
  );
}

/** Listed systems under the HL7 terminology prefix (lower case): they keep their listed name, not `HL7 <id>`. */
function hl7Listed(): string[] {
  const prefix = HL7_CODE_SYSTEMS.toLowerCase().replace(/^http:\/\//, '');
  return CODE_SYSTEM_NAMES.filter(([n]) => n.startsWith(prefix)).map(([n]) => `http://${n}`);
}

const ICD10 = ['ICD-10', 'ICD-10-CM', 'ICD-10-GM', 'CIM-10'];
const ICD9 = ['ICD-9-CM', 'ICD-9'];

/**
 * The best code of a condition among `names`. Joins on the bookkeeping pair (_resource_type,
 * _resource_id), which holds the same values as resource_type/resource_id in codings, so the flat
 * table's own record index serves it and codings needs no second index on the same pair.
 */
function codeOf(names: string[], alias: string): string {
  return `left join lateral (
      select k.code, k.display, k.system_name from codings k
       where k._resource_type = 'Condition' and k._resource_id = c.id and k.element = 'code'
         and k.system_name in (${names.map(literal).join(', ')})
       order by array_position(array[${names.map(literal).join(', ')}], k.system_name), k.code
       limit 1) as ${alias} on true`;
}

/**
 * One row per Condition (not deleted) with its ICD-10, ICD-9 and SNOMED CT codes where it has them,
 * as a view in `schema` (the search path's first when not given).
 */
export function diseasesViewSql(schema?: string): string {
  return `
create or replace view ${schema ? `${quoteIdent(schema)}.` : ''}diseases as
select c.id as condition_id,
       regexp_replace(c.resource #>> '{subject,reference}', '^.*Patient/', '') as patient_id,
       c.resource #>> '{clinicalStatus,coding,0,code}' as clinical_status,
       c.resource #>> '{verificationStatus,coding,0,code}' as verification_status,
       coalesce(c.resource ->> 'onsetDateTime', c.resource #>> '{onsetPeriod,start}') as onset,
       c.resource ->> 'recordedDate' as recorded_date,
       icd10.code as icd10_code, icd10.display as icd10_display, icd10.system_name as icd10_system,
       icd9.code as icd9_code, icd9.display as icd9_display, icd9.system_name as icd9_system,
       snomed.code as snomed_code, snomed.display as snomed_display,
       c.resource #>> '{code,text}' as text,
       c.last_updated
  from fhir_resources c
  ${codeOf(ICD10, 'icd10')}
  ${codeOf(ICD9, 'icd9')}
  ${codeOf(['SNOMED CT'], 'snomed')}
 where c.resource_type = 'Condition' and not c.deleted`;
}

export const DISEASES_VIEW_SQL = diseasesViewSql();

/**
 * Adds `system_name` and the lookup indexes to `codings` and (re)creates `diseases`. Idempotent; a
 * writer that creates or recreates the codings table calls it again. No-op without a codings table.
 */
export async function ensureCodingsExtras(knex: Knex): Promise<boolean> {
  for (const sql of CODING_SYSTEM_NAME_SQL) await knex.raw(sql);
  if (!(await tableExists(knex, 'codings'))) return false;
  await knex.raw('alter table codings add column if not exists system_name text generated always as (coding_system_name(system)) stored');
  await knex.raw('create index if not exists codings_system_code on codings (system_name, code)');
  // beside codings: in the FHIR schema once migration 950 has moved it there
  const result = await knex.raw<{ rows: { schema: string }[] }>(
    `select n.nspname as schema from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass('codings')`,
  );
  await knex.raw(diseasesViewSql(result.rows[0]?.schema));
  return true;
}

/** For export-csv: the diseases view with its research treatments. */
export const diseasesSource: SourceDeclaration = {
  name: 'diseases',
  description: 'one row per condition with its ICD-10, ICD-9 and SNOMED CT codes',
  lastUpdatedColumn: 'last_updated',
  columns: {
    condition_id: 'pseudonym',
    patient_id: 'pseudonym',
    clinical_status: 'keep',
    verification_status: 'keep',
    onset: 'date_shift',
    recorded_date: 'date_shift',
    icd10_code: 'keep',
    icd10_display: 'keep',
    icd10_system: 'keep',
    icd9_code: 'keep',
    icd9_display: 'keep',
    icd9_system: 'keep',
    snomed_code: 'keep',
    snomed_display: 'keep',
    text: 'drop',
    last_updated: 'date_shift',
  },
  patientKey: { column: 'patient_id' },
  elements: {
    condition_id: 'Condition.id',
    patient_id: 'Condition.subject',
    clinical_status: 'Condition.clinicalStatus.coding.code',
    verification_status: 'Condition.verificationStatus.coding.code',
    onset: 'Condition.onsetDateTime',
    recorded_date: 'Condition.recordedDate',
    icd10_code: 'Condition.code.coding.code',
    icd10_display: 'Condition.code.coding.display',
    icd9_code: 'Condition.code.coding.code',
    icd9_display: 'Condition.code.coding.display',
    snomed_code: 'Condition.code.coding.code',
    snomed_display: 'Condition.code.coding.display',
    text: 'Condition.code.text',
    last_updated: 'Condition.meta.lastUpdated',
  },
};
