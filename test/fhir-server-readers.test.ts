/**
 * The FHIR server readers against the fake server over real HTTP: items, checkpoints, incremental
 * cursors, retries under faults, token refresh, final 4xx, and the Bulk Data flow.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFhirServer, type FhirServer, type FhirServerOptions } from '../fixtures/fhir-server.js';
import { createFhirAuth, type FhirAuthConfig } from '../src/fhir/client/auth.js';
import type { FhirItem } from '../src/fhir/read/item.js';
import { readFhirBulk } from '../src/fhir/read/bulk.js';
import { emptyServerStats } from '../src/fhir/client/call.js';
import { readFhirSearch, searchCheckpointKey, type SearchReaderOptions, type SearchState } from '../src/fhir/read/search.js';
import { writeSampleData, type SampleData } from './helpers/fhir-data.js';

const TYPES = ['Patient', 'Encounter', 'Observation'];
const fast = { maxRetries: 8, baseDelayMs: 5, maxDelayMs: 20 };
let tmp: string;
let data: SampleData;
let server: FhirServer | undefined;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-fhir-readers-'));
  data = await writeSampleData(tmp, { Patient: 12, Encounter: 40, Observation: 60 });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(options: FhirServerOptions = {}): Promise<FhirServer> {
  server = await startFhirServer({ dataDir: data.dir, ...options });
  return server;
}

async function collect(items: AsyncIterable<FhirItem>): Promise<FhirItem[]> {
  const out: FhirItem[] = [];
  for await (const item of items) out.push(item);
  return out;
}

const keysOf = (items: FhirItem[]) =>
  items.flatMap((i) => (i.kind === 'resource' ? [`${i.resource.resourceType}/${i.resource.id}`] : [])).sort();
const expectedKeys = () => TYPES.flatMap((t) => data.byType[t].map((r) => `${t}/${r.id as string}`)).sort();
/** The last checkpoint state per key: what the pipeline would have stored. */
const finalStates = (items: FhirItem[]) =>
  new Map(items.flatMap((i) => (i.kind === 'checkpoint' ? [[i.key, i.state as SearchState] as const] : [])));

function search(url: string, extra: Partial<SearchReaderOptions> = {}, auth: FhirAuthConfig = { mode: 'none' }) {
  return readFhirSearch({ baseUrl: url, types: TYPES, count: 10, auth: createFhirAuth(auth, url, fast), retry: fast, ...extra });
}

describe('FHIR search reader', () => {
  it('yields every resource once, with a checkpoint after each page holding the cursor and next page', async () => {
    const s = await start();
    const stats = emptyServerStats();
    const items = await collect(search(s.url, { stats }));
    expect(keysOf(items)).toEqual(expectedKeys());
    const checkpoints = items.filter((i) => i.kind === 'checkpoint');
    // 12 → 2 pages, 40 → 4, 60 → 6
    expect(checkpoints.length).toBe(12);
    expect(stats).toMatchObject({ pages: 12, requests: 12, retries: 0 });
    const first = checkpoints[0] as Extract<FhirItem, { kind: 'checkpoint' }>;
    expect(first.key).toBe(searchCheckpointKey(s.url, 'Patient'));
    expect(first.state).toEqual({ lastUpdated: data.byType.Patient[9].meta && (data.byType.Patient[9].meta as { lastUpdated: string }).lastUpdated, nextUrl: expect.stringContaining('_page_after=') });
    const lastPatient = data.byType.Patient[11].meta as { lastUpdated: string };
    expect(finalStates(items).get(searchCheckpointKey(s.url, 'Patient'))).toEqual({ lastUpdated: lastPatient.lastUpdated, nextUrl: null });
    expect(s.stats.searches[0]).toBe('/Patient?_count=10&_sort=_lastUpdated');
  });

  it('asks only for what changed since the stored cursor', async () => {
    const s = await start();
    const states = finalStates(await collect(search(s.url)));
    const changed = s.upsert({ ...(data.byType.Encounter[3] as { resourceType: string; id: string }), status: 'cancelled' });
    s.upsert({ resourceType: 'Patient', id: 'new-patient', gender: 'unknown' });
    s.resetStats();
    const items = await collect(search(s.url, { states }));
    expect(keysOf(items)).toEqual(['Encounter/' + changed.id, 'Patient/new-patient']);
    expect(s.stats.requests).toEqual({ 'search:Patient': 1, 'search:Encounter': 1, 'search:Observation': 1 });
    const cursor = (data.byType.Observation[59].meta as { lastUpdated: string }).lastUpdated;
    expect(s.stats.searches[2]).toBe(`/Observation?_count=10&_sort=_lastUpdated&_lastUpdated=gt${encodeURIComponent(cursor)}`);
    // --since overrides the cursor, --full-refresh ignores it.
    expect(keysOf(await collect(search(s.url, { states, since: '2000-01-01T00:00:00Z' }))).length).toBe(data.total + 1);
    expect(keysOf(await collect(search(s.url, { states, fullRefresh: true }))).length).toBe(data.total + 1);
  });

  it('resumes from the next page of a stored checkpoint without gaps or duplicates', async () => {
    const s = await start();
    const items = await collect(search(s.url));
    // Stop after the third Encounter page as a killed run would: Patient done, Encounter mid-way.
    const checkpoints = items.filter((i) => i.kind === 'checkpoint');
    const stopAt = items.indexOf(checkpoints[4]);
    const states = finalStates(items.slice(0, stopAt + 1));
    const before = keysOf(items.slice(0, stopAt + 1));
    s.resetStats();
    const after = keysOf(await collect(search(s.url, { states })));
    expect([...before, ...after].sort()).toEqual(expectedKeys());
    expect(new Set(after).size).toBe(after.length);
    expect(after.filter((k) => before.includes(k))).toEqual([]);
    expect(s.stats.searches.some((q) => q.startsWith('/Encounter') && q.includes('_page_after='))).toBe(true);
  });

  it('starts again from the cursor when a stored next-page link has expired', async () => {
    const s = await start();
    const cursor = (data.byType.Patient[4].meta as { lastUpdated: string }).lastUpdated;
    const states = new Map([[searchCheckpointKey(s.url, 'Patient'), { lastUpdated: cursor, nextUrl: `${s.url}/expired-page/41` }]]);
    const items = await collect(search(s.url, { types: ['Patient'], states }));
    expect(keysOf(items)).toEqual(data.byType.Patient.slice(5).map((r) => `Patient/${r.id as string}`).sort());
    expect(s.stats.searches).toEqual([`/Patient?_count=10&_sort=_lastUpdated&_lastUpdated=gt${encodeURIComponent(cursor)}`]);
  });

  it('loads everything under 30% faults and counts one retry per failed attempt', async () => {
    const s = await start({ faults: { rate: 0.3, seed: 42, slowMs: 50, retryAfterSeconds: 0 } });
    const stats = emptyServerStats();
    const retried: string[] = [];
    const items = await collect(search(s.url, { count: 4, stats, onRetry: (e) => retried.push(e.reason) }));
    expect(keysOf(items)).toEqual(expectedKeys());
    const failing = Object.entries(s.stats.faults).reduce((n, [kind, count]) => n + (kind === 'slow' ? 0 : count), 0);
    expect(failing).toBeGreaterThan(4);
    expect(stats.retries).toBe(failing);
    expect(retried.length).toBe(failing);
    expect(retried).toEqual(expect.arrayContaining([expect.stringMatching(/HTTP (429|503)|network error|malformed JSON/)]));
  });

  it('honours Retry-After on 429', async () => {
    const s = await start({ faults: { rate: 1, kinds: ['429'], retryAfterSeconds: 1, limit: 1 } });
    const waits: number[] = [];
    await collect(search(s.url, { types: ['Patient'], onRetry: (e) => waits.push(e.waitMs) }));
    expect(waits).toEqual([1000]);
  });

  it('fails at once on a 4xx other than 401/408/429 with the OperationOutcome text', async () => {
    const s = await start();
    const stats = emptyServerStats();
    await expect(collect(search(s.url, { types: ['patient'], stats }))).rejects.toMatchObject({
      code: 'SOURCE_FAILED',
      message: `GET ${s.url}/patient?_count=10&_sort=_lastUpdated answered HTTP 404: GET /patient is not supported by this server`,
    });
    expect(stats.retries).toBe(0);
  });

  it('sends a bearer token or basic credentials, and reports a refused token without retrying', async () => {
    let s = await start({ auth: { mode: 'bearer', tokens: ['t0ken'] } });
    expect(keysOf(await collect(search(s.url, {}, { mode: 'bearer', token: 't0ken' })))).toEqual(expectedKeys());
    const stats = emptyServerStats();
    const refused = collect(search(s.url, { stats }, { mode: 'bearer', token: 'wrong' }));
    await expect(refused).rejects.toMatchObject({ code: 'SOURCE_FAILED', message: expect.stringContaining('answered HTTP 401: bearer token not accepted') });
    await expect(refused).rejects.not.toMatchObject({ message: expect.stringContaining('wrong') });
    expect(stats.retries).toBe(0);
    await s.close();
    s = await start({ auth: { mode: 'basic', username: 'etl', password: 'pw' } });
    expect(keysOf(await collect(search(s.url, {}, { mode: 'basic', username: 'etl', password: 'pw' })))).toEqual(expectedKeys());
  });

  it('gets a SMART backend services token and refreshes it once on 401', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const s = await start({
      auth: { mode: 'smart', clientId: 'carepipe', publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(), tokenMaxCalls: 5 },
    });
    const stats = emptyServerStats();
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const items = await collect(search(s.url, { stats }, { mode: 'smart', clientId: 'carepipe', privateKey: pem }));
    expect(keysOf(items)).toEqual(expectedKeys());
    // 12 pages, 5 calls per token: the token expires twice mid-pull.
    expect(s.stats.tokensIssued).toBe(3);
    expect(stats.tokenRefreshes).toBe(2);
    expect(stats.retries).toBe(0);
    expect(s.stats.requests['smart-config']).toBe(1);
  });
});

describe('FHIR Bulk Data reader', () => {
  it('kicks off, polls, streams every file, stores the transaction time as cursor and deletes the job', async () => {
    const s = await start({ exportPolls: 2, exportLinesPerFile: 25 });
    const progress: string[] = [];
    const stats = emptyServerStats();
    const items = await collect(readFhirBulk({ baseUrl: s.url, types: TYPES, auth: createFhirAuth({ mode: 'none' }, s.url), retry: fast, stats, onProgress: (p) => progress.push(p) }));
    expect(keysOf(items)).toEqual(expectedKeys());
    expect(progress).toEqual(['in progress: 33%', 'in progress: 67%']);
    // Patient 1 file, Encounter 2, Observation 3
    expect(stats.files).toBe(6);
    expect(s.stats.requests).toMatchObject({ 'export-kickoff': 1, 'export-status': 3, 'export-file': 6, 'export-delete': 1 });
    const checkpoints = items.filter((i) => i.kind === 'checkpoint') as Extract<FhirItem, { kind: 'checkpoint' }>[];
    expect(checkpoints.map((c) => c.key)).toEqual(TYPES.map((t) => searchCheckpointKey(s.url, t)));
    const { lastUpdated } = checkpoints[0].state as SearchState;
    expect(Date.parse(lastUpdated!)).toBeGreaterThan(Date.parse('2025-01-01'));

    // The next export asks _since the stored instant and finds only what changed.
    s.upsert({ ...(data.byType.Observation[0] as { resourceType: string; id: string }), status: 'amended' });
    const again = await collect(readFhirBulk({ baseUrl: s.url, types: TYPES, auth: createFhirAuth({ mode: 'none' }, s.url), retry: fast, states: finalStates(items) }));
    expect(keysOf(again)).toEqual([`Observation/${data.byType.Observation[0].id as string}`]);
  });

  it('survives faults on polling and cut downloads without duplicates', async () => {
    const s = await start({ exportPolls: 1, exportLinesPerFile: 25, faults: { rate: 0.4, seed: 3, kinds: ['503', '429', 'drop'], routes: ['export-status', 'export-file'] } });
    const stats = emptyServerStats();
    const items = await collect(readFhirBulk({ baseUrl: s.url, types: TYPES, auth: createFhirAuth({ mode: 'none' }, s.url), retry: fast, stats }));
    const keys = keysOf(items);
    expect(keys).toEqual(expectedKeys());
    expect(stats.retries).toBe(Object.values(s.stats.faults).reduce((a, b) => a + b, 0));
    expect(stats.retries).toBeGreaterThan(0);
    expect(s.stats.exportsDeleted).toBe(1);
  });

  it('fails with the server\'s words when the kick-off is refused, and deletes nothing', async () => {
    const s = await start({ auth: { mode: 'bearer', tokens: ['good'] } });
    const items = readFhirBulk({ baseUrl: s.url, types: ['Patient'], auth: createFhirAuth({ mode: 'bearer', token: 'bad' }, s.url), retry: fast });
    await expect(collect(items)).rejects.toMatchObject({
      code: 'SOURCE_FAILED',
      message: `GET ${s.url}/$export?_outputFormat=application%2Ffhir%2Bndjson&_type=Patient answered HTTP 401: bearer token not accepted`,
    });
    expect(s.stats.requests['export-delete']).toBeUndefined();
  });
});
