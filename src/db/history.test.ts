import { describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { BACKENDS, useTestDatabase } from '../../test/helpers/db.js';
import { attachHistory, diffRow, ensureHistory, primaryKeyColumns, rowHistory } from './history.js';
import { migrateLatest, migrationConfig } from './migrations.js';
import { CLINICAL_TABLES } from '../../migrations/20261123_600_row_history.js';
import { RunLedger } from './ledger.js';
import { inRunTransaction } from './transaction.js';

function resourceRow(id: string, family: string, runId?: number) {
  const resource = { resourceType: 'Patient', id, name: [{ family }] };
  return {
    resource_type: 'Patient',
    id,
    resource: JSON.stringify(resource),
    content_hash: family,
    source: 'test.ndjson',
    // left out when not given: the column defaults to the run of the transaction
    ...(runId === undefined ? {} : { run_id: runId }),
  };
}

async function history(knex: Knex, table: string) {
  return knex('row_history').where({ table_name: table }).orderBy('id').select('row_key', 'operation', 'before', 'after', 'run_id');
}

for (const backend of BACKENDS) {
  describe(`row history on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    it('the migration attaches fhir_resources by its primary key', async () => {
      const row = await ctx.db.knex('row_history_tables').where({ table_name: 'fhir_resources' }).first();
      expect(row.key_columns).toEqual(['resource_type', 'id']);
    });

    it('stores only superseded images, each with the run that replaced it, and derives insert, update and delete', async () => {
      const { knex } = ctx.db;
      const ledger = await RunLedger.start(knex, { command: 'ingest-fhir', args: ['a.ndjson'], user: 'alice' });
      await inRunTransaction(knex, ledger, async (trx) => {
        await trx('fhir_resources').insert([resourceRow('p1', 'Smith'), resourceRow('p2', 'Jones')]);
      });
      // a first insert writes no history; the row names its run itself (the column defaults to the run)
      expect(await history(knex, 'fhir_resources')).toEqual([]);
      expect((await knex('fhir_resources').orderBy('id').pluck('run_id')).map(Number)).toEqual([ledger.id, ledger.id]);
      const second = await RunLedger.start(knex, { command: 'ingest-fhir', args: ['b.ndjson'], user: 'bob' });
      await inRunTransaction(knex, second, async (trx) => {
        await trx('fhir_resources')
          .where({ resource_type: 'Patient', id: 'p1' })
          .update({ resource: JSON.stringify({ resourceType: 'Patient', id: 'p1', name: [{ family: 'Smyth' }] }), content_hash: 'Smyth' });
        await trx('fhir_resources').where({ resource_type: 'Patient', id: 'p2' }).delete();
      });

      const rows = await history(knex, 'fhir_resources');
      expect(rows.map((r) => [r.row_key, r.operation, r.run_id])).toEqual([
        ['Patient/p1', 'U', second.id],
        ['Patient/p2', 'D', second.id],
      ]);
      expect(rows[0].before.resource.name[0].family).toBe('Smith');
      expect(rows[0].after).toBeNull();
      expect(rows[1].before.id).toBe('p2');
      expect(rows[1].after).toBeNull();

      const changes = await rowHistory(knex, 'fhir_resources', 'Patient/p1');
      expect(changes.map((c) => [c.operation, c.run_command, c.run_user])).toEqual([
        ['I', 'ingest-fhir', 'alice'],
        ['U', 'ingest-fhir', 'bob'],
      ]);
      expect(changes[0]!.after!.resource).toEqual({ resourceType: 'Patient', id: 'p1', name: [{ family: 'Smith' }] });
      expect(diffRow(changes[1]!.before, changes[1]!.after)).toEqual([
        { path: 'resource.name[0].family', before: 'Smith', after: 'Smyth' },
        { path: 'content_hash', before: 'Smith', after: 'Smyth' },
      ]);
      const user = (await knex.raw('select current_user as u')).rows[0].u;
      expect(changes.map((c) => c.db_user)).toEqual([user, user]);
      const deleted = await rowHistory(knex, 'fhir_resources', 'Patient/p2');
      expect(deleted.map((c) => [c.operation, c.run_id, c.before?.id ?? null, c.after?.id ?? null])).toEqual([
        ['I', ledger.id, null, 'p2'],
        ['D', second.id, 'p2', null],
      ]);
    });

    it('a batch that rolls back leaves neither rows nor history', async () => {
      const { knex } = ctx.db;
      const ledger = await RunLedger.start(knex, { command: 'ingest-fhir', args: [], user: 'alice' });
      await expect(
        inRunTransaction(knex, ledger, async (trx) => {
          await trx('fhir_resources').insert(resourceRow('p1', 'Smith'));
          // the second copy of the same key fails the batch
          await trx('fhir_resources').insert(resourceRow('p1', 'Smith'));
        }),
      ).rejects.toThrow(/duplicate key/);
      expect(await knex('fhir_resources').count({ n: '*' }).first()).toEqual({ n: 0 });
      expect(await history(knex, 'fhir_resources')).toEqual([]);
    });

    it('an upsert stores the image it replaced and nothing for rows it inserts or leaves as they were', async () => {
      const { knex } = ctx.db;
      const upsert = (trx: Knex, rows: ReturnType<typeof resourceRow>[]) =>
        trx('fhir_resources').insert(rows).onConflict(['resource_type', 'id']).merge(['resource', 'content_hash', 'run_id']);
      const first = await RunLedger.start(knex, { command: 'ingest-fhir', args: [], user: 'alice' });
      await inRunTransaction(knex, first, (trx) => upsert(trx, [resourceRow('p1', 'Smith', first.id), resourceRow('p2', 'Jones', first.id)]));
      const second = await RunLedger.start(knex, { command: 'ingest-fhir', args: [], user: 'alice' });
      // p1 unchanged (written again as it was), p2 changed, p3 new
      await inRunTransaction(knex, second, (trx) =>
        upsert(trx, [resourceRow('p1', 'Smith', first.id), resourceRow('p2', 'Jonas', second.id), resourceRow('p3', 'Brown', second.id)]),
      );
      const rows = await history(knex, 'fhir_resources');
      expect(rows.map((r) => [r.row_key, r.operation, r.run_id, r.before.content_hash])).toEqual([['Patient/p2', 'U', second.id, 'Jones']]);
      const ops = async (key: string) => (await rowHistory(knex, 'fhir_resources', key)).map((c) => [c.operation, c.run_id]);
      expect(await ops('Patient/p1')).toEqual([['I', first.id]]);
      expect(await ops('Patient/p2')).toEqual([['I', first.id], ['U', second.id]]);
      expect(await ops('Patient/p3')).toEqual([['I', second.id]]);
    });

    it('a change outside a run: an insert derived with no run and an unknown user, an update stored with the database user', async () => {
      const { knex } = ctx.db;
      await knex('fhir_resources').insert(resourceRow('p1', 'Smith'));
      expect(await knex('row_history').count({ n: '*' }).first()).toEqual({ n: 0 });
      await knex('fhir_resources').update({ content_hash: 'Smyth' });
      const [row] = await knex('row_history').select('run_id', 'db_user', 'changed_at');
      expect(row.run_id).toBeNull();
      const user = await knex.raw('select current_user as u');
      expect(row.db_user).toBe(user.rows[0].u);
      expect(row.changed_at).toBeInstanceOf(Date);
      const changes = await rowHistory(knex, 'fhir_resources', 'Patient/p1');
      expect(changes.map((c) => [c.operation, c.run_id, c.db_user])).toEqual([
        ['I', null, null],
        ['U', null, user.rows[0].u],
      ]);
      expect(changes[0]!.changed_at).toBeInstanceOf(Date);
    });

    it('records a flat table keyed by resource, whose key is not unique, and attaching again records once', async () => {
      const { knex } = ctx.db;
      await knex.schema.createTable('observation_flat', (t) => {
        t.text('_resource_type').notNullable();
        t.text('_resource_id').notNullable();
        t.text('code');
        t.text('value');
      });
      // as ingest-fhir does for a --view table it creates: keyed by the bookkeeping columns
      expect(await ensureHistory(knex, 'observation_flat')).toBe(true);
      expect(await ensureHistory(knex, 'observation_flat')).toBe(false);
      await attachHistory(knex, 'observation_flat', ['_resource_type', '_resource_id']);
      const ledger = await RunLedger.start(knex, { command: 'ingest-fhir', args: [], user: 'alice' });
      await inRunTransaction(knex, ledger, async (trx) => {
        await trx('observation_flat').insert([
          { _resource_type: 'Observation', _resource_id: 'o1', code: 'systolic', value: '120' },
          { _resource_type: 'Observation', _resource_id: 'o1', code: 'diastolic', value: '80' },
        ]);
        await trx('observation_flat').where({ _resource_id: 'o1', code: 'diastolic' }).update({ value: '85' });
        // same value again: no change
        await trx('observation_flat').where({ _resource_id: 'o1', code: 'systolic' }).update({ value: '120' });
      });
      const rows = await history(knex, 'observation_flat');
      expect(rows.map((r) => [r.row_key, r.operation, r.before?.value ?? null, r.after?.value ?? null])).toEqual([
        ['Observation/o1', 'I', null, '120'],
        ['Observation/o1', 'I', null, '80'],
        ['Observation/o1', 'U', '80', '85'],
      ]);
      expect(rows.every((r) => r.run_id === ledger.id)).toBe(true);
    });

    it('the migration attaches whichever clinical and flat tables exist when it runs', async () => {
      const { knex } = ctx.db;
      // undo the migrations from the history one on, add a flat table of a user's view, migrate again
      const applied = async () => (await knex('knex_migrations').orderBy('id').pluck('name')) as string[];
      while ((await applied()).some((n) => n >= '20261123_600')) await knex.migrate.down(migrationConfig);
      expect((await knex.raw(`select to_regclass('row_history')::text as t`)).rows[0].t).toBeNull();
      await knex.schema.createTable('my_view', (t) => {
        t.text('reading');
        t.text('_resource_type').notNullable();
        t.text('_resource_id').notNullable();
      });
      await migrateLatest(ctx.db);
      const present: string[] = [];
      for (const table of CLINICAL_TABLES) {
        if ((await knex.raw('select to_regclass(?)::text as t', [table])).rows[0].t) present.push(table);
      }
      expect(present).toContain('fhir_resources');
      const attached = new Map(((await knex('row_history_tables').select('table_name', 'key_columns')) as { table_name: string; key_columns: string[] }[]).map((r) => [r.table_name, r.key_columns]));
      for (const table of [...present, 'my_view', 'encounter', 'codings']) expect(attached.has(table), table).toBe(true);
      // flat tables of shipped views derive their history (no triggers); a --view table's ViewDefinition is not known
      expect((await knex('row_history_tables').where({ table_name: 'encounter' }).first('views')).views).not.toBeNull();
      expect(attached.get('my_view')).toEqual(['_resource_type', '_resource_id']);
      expect(attached.has('runs')).toBe(false);
      // the flat tables migration numbered the user's table's rows and keyed it like the shipped ones
      expect(await primaryKeyColumns(knex, 'my_view')).toEqual(['_resource_type', '_resource_id', '_row_index']);
      await knex('my_view').insert({ reading: '5', _resource_type: 'Observation', _resource_id: 'o9', _row_index: 0 });
      await knex('encounter').insert({ id: 'e1', _resource_type: 'Encounter', _resource_id: 'e1', _row_index: 0 });
      expect(await knex('row_history').count({ n: '*' }).first()).toEqual({ n: 0 });
      const triggers = await knex.raw(`select tgname from pg_trigger where tgrelid in ('my_view'::regclass, 'encounter'::regclass, 'codings'::regclass)`);
      expect(triggers.rows).toEqual([]);
    });

    it('does not record an update that only moves the last-seen marks of a re-import', async () => {
      const { knex } = ctx.db;
      await knex.schema.createTable('seen_things', (t) => {
        t.text('key').primary();
        t.text('name');
        t.timestamp('last_seen_at', { useTz: true });
        t.bigInteger('last_seen_run_id');
      });
      await attachHistory(knex, 'seen_things', ['key']);
      await knex('seen_things').insert({ key: 'k1', name: 'Hélène', last_seen_at: '2026-11-01T00:00:00Z', last_seen_run_id: 1 });
      await knex('seen_things').update({ last_seen_at: '2026-11-02T00:00:00Z', last_seen_run_id: 2 });
      await knex('seen_things').update({ name: "Hélène D'Artagnan", last_seen_at: '2026-11-03T00:00:00Z', last_seen_run_id: 3 });
      const rows = await history(knex, 'seen_things');
      expect(rows.map((r: { operation: string }) => r.operation)).toEqual(['I', 'U']);
      // the row as it was just before the change, marks of the unrecorded re-import included
      expect(rows[1].before).toMatchObject({ name: 'Hélène', last_seen_run_id: 2 });
      expect(rows[1].after).toMatchObject({ name: "Hélène D'Artagnan", last_seen_run_id: 3 });
    });

    it('refuses a key with the wrong number of parts, naming the key columns', async () => {
      await expect(rowHistory(ctx.db.knex, 'fhir_resources', 'p1')).rejects.toThrow(/the key of fhir_resources is resource_type\/id/);
      await expect(rowHistory(ctx.db.knex, 'no_such_table', 'x')).rejects.toThrow(/no_such_table has no row history; tables with history: .*\bfhir_resources\b/);
    });
  });
}
