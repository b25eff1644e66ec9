import type { Knex } from 'knex';
import { attachHistory, createHistoryFunctions } from '../src/db/history-legacy.js';
import { SCHEMA_ROLES, TABLE_SCHEMAS, schemaLayout, searchPath, type SchemaLayout } from '../src/db/schemas.js';
import { ensureFlatTable, fromTextSql } from '../src/fhir/write/flat-table.js';
import { IMAGING_STUDIES } from './20261123_620_clinical_view_tables.js';

/**
 * One schema per source: the tables of each move out of the base schema (public, or `--db-schema`)
 * into `fhir`, `clinicians`, `directory` and `appointments`, carepipe's bookkeeping into `carepipe`
 * (see src/db/schemas.ts). ALTER … SET SCHEMA moves a table with its rows, indexes, constraints,
 * sequences and triggers; views keep pointing at their tables; row history records plain table names,
 * which stay unique, so its rows still find their tables. knex's migration table and the SQL functions
 * stay in the base schema.
 *
 * imagingstudy and imaging_studies held the same studies: imagingstudy keeps them, with the columns
 * only imaging_studies had or computed better (counts of the series listed when the study gives none,
 * every series' modality and body site, the description). The history recorded under imaging_studies
 * stays, findable as before (`carepipe history imaging_studies ImagingStudy/ID`).
 */
export async function up(knex: Knex): Promise<void> {
  const layout = schemaLayout(await baseSchema(knex));
  for (const role of SCHEMA_ROLES) await knex.raw('create schema if not exists ??', [layout[role]]);
  for (const relation of await relationsIn(knex, layout.base)) {
    const role = TABLE_SCHEMAS[relation.name] ?? (relation.flat ? 'fhir' : undefined);
    if (role) await moveRelation(knex, relation, layout.base, layout[role]);
  }
  // the trigger functions resolve row_history through the search path they are created with
  await knex.raw(`set local search_path to ${searchPath(layout).map((s) => `"${s}"`).join(', ')}`);
  await createHistoryFunctions(knex);
  if (await existsIn(knex, layout.fhir, 'imaging_studies')) await mergeImagingStudies(knex, layout);
}

export async function down(knex: Knex): Promise<void> {
  const layout = schemaLayout(await baseSchema(knex));
  if (await existsIn(knex, layout.fhir, 'imagingstudy')) await splitImagingStudies(knex, layout);
  for (const role of SCHEMA_ROLES) {
    for (const relation of await relationsIn(knex, layout[role])) await moveRelation(knex, relation, layout[role], layout.base);
  }
  for (const fn of ['carepipe_history_statement()', 'carepipe_history_row()']) {
    await knex.raw(`alter function ${fn} reset search_path`);
  }
  // without cascade: a schema still holding something of a user's stops the rollback, losing nothing
  for (const role of SCHEMA_ROLES) await knex.raw('drop schema if exists ??', [layout[role]]);
}

/** The schema knex keeps its migration table in: public, or `--db-schema`. */
async function baseSchema(knex: Knex): Promise<string> {
  const result = await knex.raw<{ rows: { schema: string }[] }>(
    `select n.nspname as schema from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass('knex_migrations')`,
  );
  const schema = result.rows[0]?.schema;
  if (!schema) throw new Error('no knex_migrations table on the search path');
  return schema;
}

interface Relation {
  name: string;
  /** r table, v view, m materialized view, p partitioned table */
  kind: string;
  /** a FHIR flat table: it has the bookkeeping column `_resource_id` */
  flat: boolean;
}

async function relationsIn(knex: Knex, schema: string): Promise<Relation[]> {
  const result = await knex.raw<{ rows: Relation[] }>(
    `select c.relname as name, c.relkind::text as kind,
            exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = '_resource_id' and not a.attisdropped) as flat
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ? and c.relkind in ('r', 'v', 'm', 'p') and c.relname not like 'knex\\_migrations%'
      order by c.relname`,
    [schema],
  );
  return result.rows;
}

async function moveRelation(knex: Knex, relation: Relation, from: string, to: string): Promise<void> {
  const what = relation.kind === 'v' ? 'view' : relation.kind === 'm' ? 'materialized view' : 'table';
  await knex.raw(`alter ${what} ??.?? set schema ??`, [from, relation.name, to]);
}

async function existsIn(knex: Knex, schema: string, table: string): Promise<boolean> {
  const result = await knex.raw<{ rows: { oid: string | null }[] }>('select to_regclass(?)::text as oid', [`"${schema}"."${table}"`]);
  return result.rows[0]?.oid != null;
}

async function mergeImagingStudies(knex: Knex, layout: SchemaLayout): Promise<void> {
  await knex.raw('alter table ??.imagingstudy add column if not exists description text', [layout.fhir]);
  await knex.raw(
    `update ??.imagingstudy i
        set number_of_series = s.series_count, number_of_instances = s.instance_count, modality = s.modality,
            body_site = s.body_site_code, body_site_display = s.body_site, description = s.description
       from ??.imaging_studies s
      where s._resource_type = i._resource_type and s._resource_id = i._resource_id and s.study_id = i.id`,
    [layout.fhir, layout.fhir],
  );
  // a study only imaging_studies had (none when both views were filled by the same ingests); started
  // through text, whatever type migration 900 gave each table
  const types = await columnTypes(knex, layout.fhir, 'imagingstudy');
  const sourceTypes = await columnTypes(knex, layout.fhir, 'imaging_studies');
  const rowIndex = types._row_index ? ', _row_index' : '';
  // A partial date (`2020`) in a text column becomes the first instant of its period, as ingest stores it.
  const target = types.started === 'timestamp with time zone' ? 'timestamptz' : types.started === 'date' ? 'date' : undefined;
  const started = sourceTypes.started === 'text' && target ? fromTextSql('started', target) : `s.started::text::${types.started}`;
  await knex.raw(
    `insert into ??.imagingstudy (id, status, patient_id, encounter_id, started, number_of_series, number_of_instances,
                                  modality, body_site, body_site_display, description, _resource_type, _resource_id${rowIndex})
     select s.study_id, s.status, s.patient_id, s.encounter_id, ${started}, s.series_count, s.instance_count,
            s.modality, s.body_site_code, s.body_site, s.description, s._resource_type, s._resource_id${rowIndex ? ', 0' : ''}
       from ??.imaging_studies s
      where not exists (select 1 from ??.imagingstudy i where i._resource_type = s._resource_type and i._resource_id = s._resource_id)`,
    [layout.fhir, layout.fhir, layout.fhir],
  );
  await knex.raw('drop table ??.imaging_studies', [layout.fhir]);
}

/** Back to the two tables, imagingstudy's columns as views/imagingstudy.json gave them before (from the stored resources). */
async function splitImagingStudies(knex: Knex, layout: SchemaLayout): Promise<void> {
  await ensureFlatTable(knex, IMAGING_STUDIES, layout.fhir);
  const types = await columnTypes(knex, layout.fhir, 'imaging_studies');
  const rowIndex = types._row_index ? ', _row_index' : '';
  await knex.raw(
    `insert into ??.imaging_studies (study_id, patient_id, encounter_id, status, started, modality, body_site_code, body_site,
                                     series_count, instance_count, description, _resource_type, _resource_id${rowIndex})
     select i.id, i.patient_id, i.encounter_id, i.status, coalesce(r.resource ->> 'started', i.started::text)::${types.started}, i.modality,
            i.body_site, i.body_site_display, i.number_of_series, i.number_of_instances, i.description, i._resource_type, i._resource_id${rowIndex ? ', i._row_index' : ''}
       from ??.imagingstudy i left join ??.fhir_resources r on r.resource_type = i._resource_type and r.id = i._resource_id`,
    [layout.fhir, layout.fhir, layout.fhir],
  );
  // history from here on, as migration 620 attached it (after the copy: the copy is not a change),
  // recorded since the time it was first attached (up kept that row for the history before the merge)
  // (as text: a JS Date would drop the microseconds)
  const attached = await knex('row_history_tables').where({ table_name: 'imaging_studies' }).first(knex.raw('attached_at::text as at'));
  await attachHistory(knex, 'imaging_studies', ['_resource_type', '_resource_id']);
  if (attached) {
    await knex('row_history_tables').where({ table_name: 'imaging_studies' }).update({ attached_at: knex.raw('?::timestamptz', [attached.at]) });
  }
  await knex.raw(
    `update ??.imagingstudy i
        set number_of_series = (r.resource ->> 'numberOfSeries')::integer,
            number_of_instances = (r.resource ->> 'numberOfInstances')::integer,
            modality = r.resource #>> '{series,0,modality,code}',
            body_site = r.resource #>> '{series,0,bodySite,code}',
            body_site_display = r.resource #>> '{series,0,bodySite,display}'
       from ??.fhir_resources r
      where r.resource_type = i._resource_type and r.id = i._resource_id`,
    [layout.fhir, layout.fhir],
  );
  await knex.raw('alter table ??.imagingstudy drop column description', [layout.fhir]);
}

/** The SQL type of each column of a table, as format_type writes it. */
async function columnTypes(knex: Knex, schema: string, table: string): Promise<Record<string, string>> {
  const result = await knex.raw<{ rows: { name: string; type: string }[] }>(
    `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type from pg_attribute a
      where a.attrelid = to_regclass(?) and a.attnum > 0 and not a.attisdropped`,
    [`"${schema}"."${table}"`],
  );
  return Object.fromEntries(result.rows.map((r) => [r.name, r.type]));
}
