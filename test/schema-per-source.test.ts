/**
 * Migration 950 on a database loaded before it (all migrations up to 20261205_840, rows in every
 * table, row history, a ledger and rejects), on both back ends: up moves each table to its source's
 * schema with its rows, history and triggers, merges imaging_studies into imagingstudy; rollback puts
 * everything back where it was.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveSettings, type CommonFlags } from '../src/config.js';
import { openDatabase, type Database } from '../src/db/connection.js';
import { RunLedger } from '../src/db/ledger.js';
import { FolderMigrationSource, migrateLatest, migrateRollback, migrationConfig } from '../src/db/migrations.js';
import { rowHistory } from '../src/db/history.js';
import { SCHEMA_ROLES, schemaLayout, schemasToDrop, type SchemaLayout } from '../src/db/schemas.js';
import { inRunTransaction } from '../src/db/transaction.js';
import { BACKENDS, useTestDatabase, type Backend } from './helpers/db.js';
import { REPO_ROOT, runCli } from './helpers/cli.js';
import { testDatabaseUrl } from './helpers/env.js';

/** The migrations as they were before this change (through 20261205_840, and 20261206_900 of the typed columns). */
class MigrationsBefore950 extends FolderMigrationSource {
  override async getMigrations() {
    return (await super.getMigrations()).filter((m) => m.name < '20261206_950');
  }
}

/** Through 950: the later migrations (row history as superseded images) are not this test's. */
class MigrationsThrough950 extends FolderMigrationSource {
  override async getMigrations() {
    return (await super.getMigrations()).filter((m) => m.name < '20261206_951');
  }
}

const FHIR_TABLES = [
  'allergyintolerance', 'appointment', 'codings', 'condition', 'diagnosticreport', 'diseases', 'encounter', 'fhir_resources',
  'image_labels', 'imagingstudy', 'immunization', 'medicationrequest', 'observation', 'observation_component', 'organization',
  'patient', 'practitioner', 'procedure',
];
const LAYOUT_TABLES: Record<Exclude<keyof SchemaLayout, 'base'>, string[]> = {
  carepipe: ['fhir_files_done', 'fhir_sync_state', 'provider_tokens', 'rejects', 'row_history', 'row_history_tables', 'runs', 'work_items'],
  fhir: FHIR_TABLES,
  clinicians: ['clinicians'],
  directory: ['health_care_workers', 'organization_workers', 'organizations', 'organizations_workers'],
  appointments: ['appointments', 'patients'],
};
/** Every table and view of the database before the change, all in the base schema. */
const ALL_BEFORE = [...Object.values(LAYOUT_TABLES).flat(), 'imaging_studies', 'knex_migrations', 'knex_migrations_lock'].sort();

const NHS_NUMBER = '1373645350';
const imaging = JSON.parse(readFileSync(path.join(REPO_ROOT, 'fixtures/fhir/imaging/study-with-labels.json'), 'utf8')) as {
  entry: { resource: { resourceType: string; id: string } }[];
};
const studies = imaging.entry.map((e) => e.resource).filter((r) => r.resourceType === 'ImagingStudy');

/** The rows of every table, as jsonb text, sorted: what must survive the migration. */
async function snapshot(knex: Database['knex'], tables: string[]): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const table of tables) {
    const result = await knex.raw<{ rows: { r: string }[] }>('select to_jsonb(t)::text as r from ?? t', [table]);
    out[table] = result.rows.map((row) => row.r).sort();
  }
  return out;
}

/** Where each carepipe table and view is: schema → sorted names. */
async function placement(knex: Database['knex'], layout: SchemaLayout): Promise<Record<string, string[]>> {
  const schemas = [layout.base, ...SCHEMA_ROLES.map((role) => layout[role])];
  const result = await knex.raw<{ rows: { schema: string; name: string }[] }>(
    `select n.nspname as schema, c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any(?) and c.relkind in ('r', 'v') order by 1, 2`,
    [schemas],
  );
  const out: Record<string, string[]> = {};
  for (const row of result.rows) (out[row.schema] ??= []).push(row.name);
  return out;
}

/** What a loaded database held before the change, written with the tables where migration 840 left them. */
async function load(db: Database): Promise<number> {
  const { knex } = db;
  const ledger = await RunLedger.start(knex, { command: 'ingest-fhir', args: ['study-with-labels.json'], user: 'alice' });
  await inRunTransaction(knex, ledger, async (trx) => {
    await trx('fhir_resources').insert(
      studies.map((r) => ({ resource_type: r.resourceType, id: r.id, resource: JSON.stringify(r), content_hash: r.id, source: 'study-with-labels.json' })),
    );
    await trx('patient').insert({ id: 'ip-1', gender: 'female', _resource_type: 'Patient', _resource_id: 'ip-1', _row_index: 0 });
    // the two views' rows as the shipped views gave them before the change
    await trx('imagingstudy').insert([
      { id: 'study-chest-ct', status: 'available', patient_id: 'ip-1', started: '2026-10-02T08:15:00Z', number_of_series: 2, number_of_instances: 3, modality: 'CT',
        procedure_system: 'http://loinc.org', procedure: '24627-2', procedure_display: 'CT Chest', body_site: '51185008', body_site_display: 'Thoracic structure',
        _resource_type: 'ImagingStudy', _resource_id: 'study-chest-ct', _row_index: 0 },
      { id: 'study-knee-xr', status: 'available', patient_id: 'ip-1', started: '2025-01-20', number_of_series: null, number_of_instances: null, modality: 'DX',
        body_site: '72696002', body_site_display: 'Knee region structure', _resource_type: 'ImagingStudy', _resource_id: 'study-knee-xr', _row_index: 0 },
    ]);
    await trx('imaging_studies').insert([
      { study_id: 'study-chest-ct', patient_id: 'ip-1', status: 'available', started: '2026-10-02T08:15:00Z', modality: 'CT,SR', body_site_code: '51185008',
        body_site: 'Thoracic structure', series_count: 2, instance_count: 3, description: 'CT chest without contrast', _resource_type: 'ImagingStudy', _resource_id: 'study-chest-ct', _row_index: 0 },
      { study_id: 'study-knee-xr', patient_id: 'ip-1', status: 'available', started: '2025-01-20', modality: 'DX', body_site_code: '72696002',
        body_site: 'Knee region structure', series_count: 1, instance_count: 1, _resource_type: 'ImagingStudy', _resource_id: 'study-knee-xr', _row_index: 0 },
    ]);
    await trx('clinicians').insert({ provider: 'noteworth', clinician_key: 'c1', family_name: 'Hall', first_seen: '2026-11-01T00:00:00Z', last_seen: '2026-11-01T00:00:00Z', source_run: ledger.id });
    await trx('organizations').insert({ finess: '750712184', name: 'Hôpital Saint-Louis', run_id: ledger.id });
    await trx('health_care_workers').insert({ rpps_number: '10001234567', last_name: 'Durand', first_name: 'Anne', profession_name: 'Médecin' });
    await trx('organization_workers').insert({ finess: '750712184', rpps_number: '10001234567', profession_name: 'Médecin' });
    await trx('patients').insert({ nhs_number: NHS_NUMBER, name: 'Dr Glenn Clark', date_of_birth: '1996-02-01', postcode: 'N6 2FA', source: 'patients.json', run_id: ledger.id });
    await trx('appointments').insert({
      id: '7f1c3e2a-0000-4000-8000-000000000001', patient: NHS_NUMBER, status: 'cancelled', starts_at: '2026-11-02T09:00:00Z', duration: 30, source: 'appointments.json', run_id: ledger.id,
    });
  });
  await knex('rejects').insert({ run_id: ledger.id, command: 'ingest-fhir', source: 'study-with-labels.json', entry: 7, reason_code: 'RECORD_INVALID', message: 'no id' });
  await knex('fhir_files_done').insert({ path: '/data/study-with-labels.json', size: 100, sha256: 'ab', run_id: ledger.id });
  await knex('fhir_sync_state').insert({ server: 'https://fhir.example', resource_type: 'Patient', last_updated: '2026-11-01T00:00:00Z', run_id: ledger.id });
  await knex('work_items').insert({ queue: 'ingest-fhir:/data', unit_key: '/data/study-with-labels.json', status: 'done', done_run_id: ledger.id });
  await knex('provider_tokens').insert({ site_url: 'https://noteworth.example', provider: 'noteworth', token: 'secret', obtained_at: '2026-11-01T00:00:00Z' });
  await ledger.finish('partial', 1);
  return ledger.id;
}

for (const backend of BACKENDS) {
  describe(`migration 950 (a schema per source) on ${backend}`, () => {
    let db: Database;
    let tmp: string;
    let base: string;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-schema-'));
      ({ db, base, cleanup } = await freshDatabase(backend, tmp));
      await db.knex.migrate.latest({ ...migrationConfig, migrationSource: new MigrationsBefore950() });
    });
    afterEach(async () => {
      await db.close();
      await cleanup();
      rmSync(tmp, { recursive: true, force: true });
    });

    it('moves every table to its schema with its rows, history, ledger and rejects, and rolls back to the old place', async () => {
      const { knex } = db;
      const layout = schemaLayout(base);
      const runId = await load(db);
      const kept = ALL_BEFORE.filter((t) => !['imagingstudy', 'imaging_studies', 'knex_migrations', 'knex_migrations_lock'].includes(t));
      const before = await snapshot(knex, [...kept, 'imagingstudy', 'imaging_studies']);
      const historyBefore = before.row_history!;
      expect(historyBefore.length).toBeGreaterThan(8);
      expect(await placement(knex, layout)).toEqual({ [base]: ALL_BEFORE });

      const [, ran] = (await knex.migrate.latest({ ...migrationConfig, migrationSource: new MigrationsThrough950() })) as [number, string[]];
      expect(ran).toEqual(['20261206_950_schema_per_source']);

      // each source in its schema, the bookkeeping in carepipe; the base keeps knex's tables only
      expect(await placement(knex, layout)).toEqual({
        [base]: ['knex_migrations', 'knex_migrations_lock'],
        ...Object.fromEntries(SCHEMA_ROLES.map((role) => [layout[role], LAYOUT_TABLES[role]])),
      });
      // every row kept, found by plain name through the search path
      const after = await snapshot(knex, kept);
      for (const table of kept.filter((t) => t !== 'row_history')) expect(after[table], table).toEqual(before[table]);
      expect(after.row_history).toEqual(expect.arrayContaining(historyBefore));
      // the studies of both tables in one, with what only imaging_studies had
      expect(await knex('imagingstudy').orderBy('id').select('id', 'number_of_series', 'number_of_instances', 'modality', 'body_site', 'body_site_display', 'description', 'procedure')).toEqual([
        { id: 'study-chest-ct', number_of_series: 2, number_of_instances: 3, modality: 'CT,SR', body_site: '51185008', body_site_display: 'Thoracic structure', description: 'CT chest without contrast', procedure: '24627-2' },
        { id: 'study-knee-xr', number_of_series: 1, number_of_instances: 1, modality: 'DX', body_site: '72696002', body_site_display: 'Knee region structure', description: null, procedure: null },
      ]);
      // history, ledger and rejects still point at the right rows
      expect((await rowHistory(knex, 'patients', NHS_NUMBER)).map((c) => [c.operation, c.run_id, c.run_command])).toEqual([['I', runId, 'ingest-fhir']]);
      expect((await rowHistory(knex, 'imaging_studies', 'ImagingStudy/study-knee-xr')).map((c) => [c.operation, c.run_id])).toEqual([['I', runId]]);
      expect(await knex('rejects as j').join('runs as r', 'r.id', 'j.run_id').select('r.command', 'j.entry')).toEqual([{ command: 'ingest-fhir', entry: 7 }]);
      expect(await knex('organizations_workers').select('organization_name', 'last_name')).toEqual([{ organization_name: 'Hôpital Saint-Louis', last_name: 'Durand' }]);

      // triggers moved with their tables: history is recorded, even from a session whose search path
      // lists only the base schema (a user's psql), and a cancelled appointment stays cancelled
      await knex.transaction(async (trx) => {
        await trx.raw('set local search_path to ??', [base]);
        await trx.raw('update ??.patients set postcode = ? where nhs_number = ?', [layout.appointments, 'N6 2FB', NHS_NUMBER]);
      });
      expect((await rowHistory(knex, 'patients', NHS_NUMBER)).map((c) => [c.operation, c.after?.postcode])).toEqual([['I', 'N6 2FA'], ['U', 'N6 2FB']]);
      await expect(knex('appointments').update({ status: 'active' })).rejects.toThrow(/APPOINTMENT_CANCELLED_IS_FINAL/);
      await knex('patients').where({ nhs_number: NHS_NUMBER }).update({ postcode: 'N6 2FA' });

      // rollback: everything back in the base schema, the schemas gone, the rows as they were
      // later migrations of the same batch (none of which moves tables) roll back with it
      expect((await migrateRollback(db)).ran).toContain('20261206_950_schema_per_source');
      expect(await placement(knex, layout)).toEqual({ [base]: ALL_BEFORE });
      const back = await snapshot(knex, [...kept, 'imagingstudy', 'imaging_studies']);
      for (const table of Object.keys(before).filter((t) => t !== 'row_history')) expect(back[table], table).toEqual(before[table]);
      expect(back.row_history).toEqual(expect.arrayContaining(historyBefore));
      const functions = await knex.raw<{ rows: { config: string[] | null }[] }>(
        `select proconfig as config from pg_proc where proname in ('carepipe_history_statement', 'carepipe_history_row') and pronamespace = to_regnamespace(?)`,
        [base],
      );
      expect(functions.rows).toEqual([{ config: null }, { config: null }]);
      // and the rolled-back imaging_studies records its changes again
      await knex('imaging_studies').where({ study_id: 'study-knee-xr' }).update({ status: 'cancelled' });
      expect((await rowHistory(knex, 'imaging_studies', 'ImagingStudy/study-knee-xr')).map((c) => c.operation)).toEqual(['I', 'U']);
    }, 120_000);

    it('a study only imaging_studies had keeps a partial start as the first instant of its year', async () => {
      const { knex } = db;
      await knex('imaging_studies').insert({
        study_id: 'study-hand-us', patient_id: 'ip-1', status: 'available', started: '2019', modality: 'US', _resource_type: 'ImagingStudy', _resource_id: 'study-hand-us', _row_index: 0,
      });
      await migrateLatest(db);
      const [row] = await knex('imagingstudy').where({ id: 'study-hand-us' }).select(knex.raw(`to_char(started at time zone 'UTC', 'YYYY-MM-DD HH24:MI') as started`));
      expect(row).toEqual({ started: '2019-01-01 00:00' });
    }, 120_000);
  });
}

for (const backend of BACKENDS) {
  describe(`a schema per source through the CLI on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    it('keeps the FHIR tables in their schema, and commands take a table by its plain or its schema-qualified name', async () => {
      const layout = ctx.db.schemas;
      await ctx.release();
      const ingest = await runCli(['ingest-fhir', path.join(REPO_ROOT, 'fixtures/fhir/coded'), path.join(REPO_ROOT, 'fixtures/fhir/imaging'), '--json', ...ctx.test.args]);
      expect(ingest.code).toBe(0);

      const db = await ctx.test.connect();
      try {
        // what `\dt fhir.*` shows: the FHIR tables and nothing else; the base keeps knex's tables only
        const tablesOf = async (schema: string) =>
          (await db.knex('information_schema.tables').where({ table_schema: schema, table_type: 'BASE TABLE' }).orderBy('table_name').pluck('table_name')) as string[];
        expect(await tablesOf(layout.fhir)).toEqual(FHIR_TABLES.filter((t) => t !== 'diseases'));
        expect(await tablesOf(layout.base)).toEqual(['knex_migrations', 'knex_migrations_lock']);
        expect(await db.knex('patient').count({ n: '*' }).first()).toEqual({ n: 2 });
      } finally {
        await db.close();
      }

      const plain = await runCli(['export-csv', 'patient', '--columns', 'id,gender', '--eol', 'lf', ...ctx.test.args]);
      const qualified = await runCli(['export-csv', `${layout.fhir}.patient`, '--columns', 'id,gender', '--eol', 'lf', ...ctx.test.args]);
      expect(plain.code).toBe(0);
      expect(plain.stdout).toBe('id,gender\ncp-1,female\nip-1,male\n');
      expect(qualified).toMatchObject({ code: 0, stdout: plain.stdout });

      // carepipe sql: the connection's search path finds the plain name, and the qualified one is SQL's own
      const sql = await runCli(['sql', 'select id, gender from patient order by id', '--format', 'csv', ...ctx.test.args]);
      const sqlQualified = await runCli(['sql', `select id, gender from ${layout.fhir}.patient order by id`, '--format', 'csv', ...ctx.test.args]);
      expect(sql.code, sql.stderr).toBe(0);
      expect(sql.stdout).toBe('id,gender\r\ncp-1,female\r\nip-1,male\r\n');
      expect(sqlQualified).toMatchObject({ code: 0, stdout: sql.stdout });

      const history = await runCli(['history', 'fhir_resources', 'Patient/cp-1', '--json', ...ctx.test.args]);
      const historyQualified = await runCli(['history', `${layout.fhir}.fhir_resources`, 'Patient/cp-1', '--json', ...ctx.test.args]);
      expect(history.code).toBe(0);
      expect(JSON.parse(history.stdout).changes.map((c: { operation: string }) => c.operation)).toEqual(['I']);
      expect(historyQualified).toMatchObject({ code: 0, stdout: history.stdout });

      const wrongSchema = await runCli(['export-csv', `${layout.clinicians}.patient`, ...ctx.test.args]);
      expect(wrongSchema.code).toBe(2);
      expect(wrongSchema.stderr).toContain(`${layout.clinicians}.patient: there is no table patient in schema ${layout.clinicians}`);
      const unknownSchema = await runCli(['history', 'elsewhere.patient', 'Patient/cp-1', ...ctx.test.args]);
      expect(unknownSchema.code).toBe(2);
      expect(unknownSchema.stderr).toContain("elsewhere.patient: elsewhere is not one of carepipe's schemas");
    }, 180_000);
  });
}

/** A database of its own, not the migrated template: the test migrates it itself. */
async function freshDatabase(backend: Backend, tmp: string): Promise<{ db: Database; base: string; cleanup: () => Promise<void> }> {
  if (backend === 'pglite') {
    const flags: CommonFlags = { dataDir: path.join(tmp, 'db') };
    return { db: await openDatabase(resolveSettings(flags, {}, tmp)), base: 'public', cleanup: async () => undefined };
  }
  const url = testDatabaseUrl();
  const base = `t_${randomBytes(6).toString('hex')}`;
  const db = await openDatabase(resolveSettings({ databaseUrl: url, dbSchema: base }, {}, tmp));
  return {
    db,
    base,
    cleanup: async () => {
      const admin = await openDatabase(resolveSettings({ databaseUrl: url }, {}, tmp));
      try {
        for (const name of schemasToDrop(base)) await admin.knex.raw('drop schema if exists ?? cascade', [name]);
      } finally {
        await admin.close();
      }
    },
  };
}
