/**
 * fhir_sync_state on both back ends: saved in the caller's transaction (gone with a rollback), read
 * back with the cursor's exact instant, file checkpoints ignored.
 */
import { describe, expect, it } from 'vitest';
import { clearSyncState, loadSyncStates, parseServerKey, saveSyncState } from '../src/fhir/sync-state.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';

const SERVER = 'http://127.0.0.1:8090/fhir';

describe.each(BACKENDS)('fhir_sync_state on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  it('keeps a checkpoint only when its transaction commits, and reads the cursor back to the microsecond', async () => {
    const { knex } = ctx.db;
    await knex.transaction(async (trx) => {
      await saveSyncState(trx, { key: `server:${SERVER}:Patient`, state: { lastUpdated: '2024-03-01T10:00:00.123456Z', nextUrl: null } }, null);
      await trx.rollback();
    }).catch(() => undefined);
    expect((await loadSyncStates(knex, SERVER)).size).toBe(0);

    await knex.transaction(async (trx) => {
      expect(await saveSyncState(trx, { key: `server:${SERVER}:Patient`, state: { lastUpdated: '2024-03-01T12:00:00.123456+02:00', nextUrl: `${SERVER}/Patient?_page_after=x` } }, null)).toBe(true);
      expect(await saveSyncState(trx, { key: 'file:/data/a.ndjson', state: { path: '/data/a.ndjson' } }, null)).toBe(false);
    });
    await saveSyncState(knex, { key: `server:${SERVER}:Patient`, state: { lastUpdated: '2024-03-02T00:00:00.5Z', nextUrl: null } }, null);
    await saveSyncState(knex, { key: `server:${SERVER}:Encounter`, state: { lastUpdated: null, nextUrl: `${SERVER}/Encounter?p=2` } }, null);
    await saveSyncState(knex, { key: 'server:http://other:Patient', state: { lastUpdated: '2020-01-01T00:00:00Z', nextUrl: null } }, null);
    const states = await loadSyncStates(knex, SERVER);
    expect(Object.fromEntries(states)).toEqual({
      [`server:${SERVER}:Patient`]: { lastUpdated: '2024-03-02T00:00:00.500000Z', nextUrl: null },
      [`server:${SERVER}:Encounter`]: { lastUpdated: null, nextUrl: `${SERVER}/Encounter?p=2` },
    });
    await clearSyncState(knex, SERVER, ['Encounter']);
    expect([...(await loadSyncStates(knex, SERVER)).keys()]).toEqual([`server:${SERVER}:Patient`]);
  });

  it('stores the microsecond instant a rolled-forward cursor names', async () => {
    const { knex } = ctx.db;
    await saveSyncState(knex, { key: `server:${SERVER}:Observation`, state: { lastUpdated: '2024-03-01T12:00:00.123456+02:00', nextUrl: null } }, null);
    expect((await loadSyncStates(knex, SERVER)).get(`server:${SERVER}:Observation`)?.lastUpdated).toBe('2024-03-01T10:00:00.123456Z');
  });
});

describe('server checkpoint keys', () => {
  it('split into server URL and resource type', () => {
    expect(parseServerKey(`server:${SERVER}:Patient`)).toEqual({ server: SERVER, resourceType: 'Patient' });
    expect(parseServerKey('file:/x.ndjson')).toBeUndefined();
  });
});
