/**
 * Where carepipe's tables live: each source in a Postgres schema of its own (`fhir`, `clinicians`,
 * `directory`, `appointments`) and carepipe's bookkeeping (runs, rejects, row history, files done, sync
 * state, work items, provider tokens) in `carepipe`. The base schema (`public`, or `--db-schema NAME`)
 * keeps knex's migration table and the SQL functions, which the code re-creates by plain name.
 *
 * With `--db-schema NAME` the schemas are `NAME_fhir`, `NAME_clinicians`, … `NAME_carepipe`: one
 * server holds several carepipe databases side by side (the test suite gives each test its own).
 *
 * Every connection's search_path lists the base schema first, then the others, so unqualified SQL —
 * carepipe's queries and a user's own — finds every table by its plain name; plain names are unique
 * across the schemas. Whatever creates a table names its schema.
 */
import type { Knex } from 'knex';
import { CarepipeError } from '../errors.js';
import { quoteIdent } from './catalog.js';

/** The schemas of one carepipe database. */
export interface SchemaLayout {
  /** knex's migration table and the SQL functions; unqualified CREATEs land here. */
  base: string;
  carepipe: string;
  fhir: string;
  clinicians: string;
  directory: string;
  appointments: string;
}

export type SchemaRole = Exclude<keyof SchemaLayout, 'base'>;

export const SCHEMA_ROLES: readonly SchemaRole[] = ['carepipe', 'fhir', 'clinicians', 'directory', 'appointments'];

/** The layout around a base schema: plain role names beside `public`, `NAME_role` beside any other. */
export function schemaLayout(base: string): SchemaLayout {
  const name = (role: SchemaRole) => (base === 'public' ? role : `${base}_${role}`);
  return {
    base,
    carepipe: name('carepipe'),
    fhir: name('fhir'),
    clinicians: name('clinicians'),
    directory: name('directory'),
    appointments: name('appointments'),
  };
}

/** A connection's search_path: the base schema first (so current_schema() is it), then the rest. */
export function searchPath(layout: SchemaLayout): string[] {
  return [layout.base, ...SCHEMA_ROLES.map((role) => layout[role])];
}

/**
 * Every schema of the database on base `base` (a `--db-schema`), the base last: what to drop, in
 * order, to remove it all. Never `public`, which is the server's as much as carepipe's.
 */
export function schemasToDrop(base: string): string[] {
  const layout = schemaLayout(base);
  return [...SCHEMA_ROLES.map((role) => layout[role]), ...(base === 'public' ? [] : [base])];
}

/**
 * The tables of fixed name and the schema each lives in. FHIR flat tables (any table with the
 * bookkeeping column `_resource_id`, `--view` tables included) live in `fhir` too.
 */
export const TABLE_SCHEMAS: Record<string, SchemaRole> = {
  runs: 'carepipe',
  rejects: 'carepipe',
  row_history: 'carepipe',
  row_history_tables: 'carepipe',
  fhir_files_done: 'carepipe',
  fhir_sync_state: 'carepipe',
  work_items: 'carepipe',
  // a secret: kept out of the clinicians schema that analysts may be granted
  provider_tokens: 'carepipe',
  flat_views: 'carepipe',
  fhir_resources: 'fhir',
  diseases: 'fhir',
  clinicians: 'clinicians',
  organizations: 'directory',
  health_care_workers: 'directory',
  organization_workers: 'directory',
  organizations_workers: 'directory',
  patients: 'appointments',
  appointments: 'appointments',
};

/**
 * The plain name of a table given as `table` or `schema.table` (`fhir.patient`): the schema must be
 * one of this database's and hold that table, so `clinicians.patient` is refused rather than read as
 * `patient`. Plain names are what the ledger, row history and export-csv's sources go by.
 */
export async function plainTableName(knex: Knex | Knex.Transaction, name: string, layout: SchemaLayout): Promise<string> {
  const dot = name.indexOf('.');
  if (dot < 0) return name;
  const schema = name.slice(0, dot);
  const table = name.slice(dot + 1);
  const schemas = searchPath(layout);
  if (!schemas.includes(schema)) {
    throw new CarepipeError('USAGE', `${name}: ${schema} is not one of carepipe's schemas (${schemas.join(', ')})`, { table: name });
  }
  const result = await knex.raw<{ rows: { qualified: string | null; plain: string | null }[] }>(
    'select to_regclass(?)::oid::text as qualified, to_regclass(?)::oid::text as plain',
    [`${quoteIdent(schema)}.${quoteIdent(table)}`, quoteIdent(table)],
  );
  const row = result.rows[0];
  if (!row?.qualified || row.qualified !== row.plain) {
    throw new CarepipeError('USAGE', `${name}: there is no table ${table} in schema ${schema}`, { table: name });
  }
  return table;
}
