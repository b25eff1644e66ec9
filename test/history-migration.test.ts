/**
 * Migration 20261207_100 (row history as superseded images) on a database loaded before it, on both
 * back ends: the migrations before it, runs that insert, update, delete and insert again (written as
 * the ingest writes, and as a hand-written insert that names no run), flat rows with their history;
 * then up (redundant insert rows and update afters gone, flat history derived, every change shown as
 * before), down (the old shape: every change shown as before, old triggers recording inserts) and up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { resolveSettings, type CommonFlags } from '../src/config.js';
import { openDatabase, type Database } from '../src/db/connection.js';
import { RunLedger } from '../src/db/ledger.js';
import { FolderMigrationSource, migrationConfig } from '../src/db/migrations.js';
import { rowHistory } from '../src/db/history.js';
import { tableRowHistory } from '../src/fhir/derived-history.js';
import { schemasToDrop } from '../src/db/schemas.js';
import { inRunTransaction } from '../src/db/transaction.js';
import { BACKENDS, type Backend } from './helpers/db.js';
import { testDatabaseUrl } from './helpers/env.js';

const MIGRATION = '20261207_100_history_superseded_images';

class MigrationsBefore extends FolderMigrationSource {
  override async getMigrations() {
    return (await super.getMigrations()).filter((m) => m.name < MIGRATION);
  }
}

const NHS_NUMBER = '1373645350';

function patient(id: string, family: string) {
  return { resourceType: 'Patient', id, name: [{ family }], gender: 'female' };
}

/** A fhir_resources row as the ingest writes it (run and time named), or as a hand-written insert (neither). */
function resourceRow(id: string, family: string, runId?: number) {
  return {
    resource_type: 'Patient',
    id,
    resource: JSON.stringify(patient(id, family)),
    content_hash: family,
    source: 'patients.ndjson',
    ...(runId === undefined ? {} : { run_id: runId }),
  };
}

/** Runs as the code before the change wrote them: history in full, flat rows replaced per changed resource. */
async function load(knex: Knex): Promise<void> {
  const run = async (user: string, work: (trx: Knex.Transaction, id: number) => Promise<unknown>) => {
    const ledger = await RunLedger.start(knex, { command: 'ingest-fhir', args: [`${user}.ndjson`], user });
    await inRunTransaction(knex, ledger, (trx) => work(trx, ledger.id));
    await ledger.finish('succeeded', 0);
  };
  await run('alice', async (trx, id) => {
    await trx('fhir_resources').insert([resourceRow('p1', 'Smith', id), resourceRow('p2', 'Jones')]);
    await trx('patient').insert([
      { id: 'p1', family_name: 'Smith', gender: 'female', _resource_type: 'Patient', _resource_id: 'p1', _row_index: 0 },
      { id: 'p2', family_name: 'Jones', gender: 'female', _resource_type: 'Patient', _resource_id: 'p2', _row_index: 0 },
    ]);
    await trx('patients').insert({ nhs_number: NHS_NUMBER, name: 'Glenn Clark', postcode: 'N6 2FA', source: 'patients.json', run_id: id });
    await trx('clinicians').insert({ provider: 'noteworth', clinician_key: 'c1', family_name: 'Hall', first_seen: '2026-11-01T00:00:00Z', last_seen: '2026-11-01T00:00:00Z', source_run: id });
  });
  await run('bob', async (trx, id) => {
    await trx('fhir_resources').where({ id: 'p1' }).update({ ...resourceRow('p1', 'Smyth', id), loaded_at: trx.fn.now() });
    await trx('patient').where({ _resource_id: 'p1' }).delete();
    await trx('patient').insert({ id: 'p1', family_name: 'Smyth', gender: 'female', _resource_type: 'Patient', _resource_id: 'p1', _row_index: 0 });
    await trx('fhir_resources').where({ id: 'p2' }).delete();
    await trx('patient').where({ _resource_id: 'p2' }).delete();
    await trx('patients').where({ nhs_number: NHS_NUMBER }).update({ postcode: 'N6 2FB', run_id: id });
  });
  await run('carol', async (trx, id) => {
    await trx('fhir_resources').insert(resourceRow('p2', 'Jonas', id));
    await trx('patient').insert({ id: 'p2', family_name: 'Jonas', gender: 'female', _resource_type: 'Patient', _resource_id: 'p2', _row_index: 0 });
    await trx('fhir_resources').where({ id: 'p1' }).update({ ...resourceRow('p1', 'Smythe', id), loaded_at: trx.fn.now() });
  });
  // by hand, outside any run
  await knex('clinicians').where({ clinician_key: 'c1' }).update({ family_name: 'Hall-Jones' });
}

const KEYS: [string, string][] = [
  ['fhir_resources', 'Patient/p1'],
  ['fhir_resources', 'Patient/p2'],
  ['patients', NHS_NUMBER],
  ['clinicians', 'noteworth/c1'],
];

/** What `carepipe history` shows for each key: every change with its run, user, time, before and after. */
async function shown(knex: Knex): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const [table, key] of KEYS) {
    out[`${table} ${key}`] = (await rowHistory(knex, table, key)).map((c) => ({
      operation: c.operation,
      run: c.run_id,
      command: c.run_command,
      user: c.run_user,
      db_user: c.db_user,
      at: c.changed_at?.toISOString(),
      before: c.before,
      after: c.after,
    }));
  }
  return out;
}

const storedOperations = async (knex: Knex, table: string) =>
  (await knex('row_history').where({ table_name: table }).orderBy('id').select('row_key', 'operation', knex.raw('after is null as no_after'))).map(
    (r: { row_key: string; operation: string; no_after: boolean }) => `${r.row_key} ${r.operation}${r.operation === 'U' && r.no_after ? '' : r.operation === 'U' ? '+after' : ''}`,
  );

for (const backend of BACKENDS) {
  describe(`migration ${MIGRATION} on ${backend}`, () => {
    let db: Database;
    let tmp: string;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-history-'));
      ({ db, cleanup } = await freshDatabase(backend, tmp));
      await db.knex.migrate.latest({ ...migrationConfig, migrationSource: new MigrationsBefore() });
    });
    afterEach(async () => {
      await db.close();
      await cleanup();
      rmSync(tmp, { recursive: true, force: true });
    });

    it('keeps every version as superseded images, derives flat history, and rolls back to the full history', async () => {
      const { knex } = db;
      await load(knex);
      const before = await shown(knex);
      expect(before['fhir_resources Patient/p1']!.map((c) => (c as { operation: string }).operation)).toEqual(['I', 'U', 'U']);
      expect(before['fhir_resources Patient/p2']!.map((c) => (c as { operation: string }).operation)).toEqual(['I', 'D', 'I']);
      const count = async () => Number((await knex('row_history').count({ n: '*' }).first())!.n);
      const storedBefore = await count();

      await knex.migrate.up({ ...migrationConfig, name: MIGRATION });
      // the same changes, now derived from fewer rows: p1's insert and its updates' afters are found
      // elsewhere; p2's hand-written insert named no run, so it stays, and so does the clinician's
      // (its time is not its first_seen)
      expect(await shown(knex)).toEqual(before);
      expect(await storedOperations(knex, 'fhir_resources')).toEqual([
        'Patient/p2 I',
        'Patient/p1 U',
        'Patient/p2 D',
        'Patient/p1 U',
      ]);
      expect(await storedOperations(knex, 'patients')).toEqual([`${NHS_NUMBER} U`]);
      expect(await storedOperations(knex, 'clinicians')).toEqual(['noteworth/c1 I', 'noteworth/c1 U']);
      expect(await storedOperations(knex, 'patient')).toEqual([]);
      expect(await count()).toBeLessThan(storedBefore);
      // the flat table: no triggers, its history derived from the resource's versions through its view
      const flat = await tableRowHistory(knex, 'patient', 'Patient/p1');
      expect(flat.map((c) => [c.operation, c.run_user, (c.before ?? c.after)!.family_name])).toEqual([
        ['I', 'alice', 'Smith'],
        ['D', 'bob', 'Smith'],
        ['I', 'bob', 'Smyth'],
        ['D', 'carol', 'Smyth'],
        ['I', 'carol', 'Smythe'],
      ]);
      await knex('patient').where({ _resource_id: 'p1' }).update({ family_name: 'by hand' });
      expect(await storedOperations(knex, 'patient')).toEqual([]);

      await knex.migrate.down({ ...migrationConfig, name: MIGRATION });
      expect(await shown(knex)).toEqual(before);
      // an insert row again before each version inserted (ids numbered again in that order)
      expect(await storedOperations(knex, 'fhir_resources')).toEqual([
        'Patient/p2 I',
        'Patient/p1 I',
        'Patient/p1 U+after',
        'Patient/p2 D',
        'Patient/p1 U+after',
        'Patient/p2 I',
      ]);
      // the flat table's history re-expanded as the triggers wrote it, and recorded again
      expect(await storedOperations(knex, 'patient')).toEqual([
        ...['I', 'D', 'I', 'D', 'I'].map((op) => `Patient/p1 ${op}`),
        ...['I', 'D', 'I'].map((op) => `Patient/p2 ${op}`),
      ]);
      await knex('fhir_resources').insert(resourceRow('p3', 'Brown'));
      expect(await storedOperations(knex, 'fhir_resources')).toContain('Patient/p3 I');
      await knex('fhir_resources').where({ id: 'p3' }).delete();

      await knex.migrate.up({ ...migrationConfig, name: MIGRATION });
      const again = await shown(knex);
      expect(again).toEqual(before);
    }, 180_000);
  });
}

/** A database of its own, not the migrated template: the test migrates it itself. */
async function freshDatabase(backend: Backend, tmp: string): Promise<{ db: Database; cleanup: () => Promise<void> }> {
  if (backend === 'pglite') {
    const flags: CommonFlags = { dataDir: path.join(tmp, 'db') };
    return { db: await openDatabase(resolveSettings(flags, {}, tmp)), cleanup: async () => undefined };
  }
  const url = testDatabaseUrl();
  const base = `t_${randomBytes(6).toString('hex')}`;
  const db = await openDatabase(resolveSettings({ databaseUrl: url, dbSchema: base }, {}, tmp));
  return {
    db,
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
