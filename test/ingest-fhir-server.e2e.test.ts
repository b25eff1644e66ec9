/**
 * `carepipe ingest-fhir --server` end to end: the built binary against the fake FHIR server over real
 * HTTP, on both back ends. A pull gives the same rows as the file ingest of the same data; the next run
 * asks only for what changed; faults are retried and counted; a killed run resumes exactly; Bulk Data
 * works; every auth mode; a final 4xx fails with the server's words and exit 4.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFhirServer, type FhirServer, type FhirServerOptions, type StoredResource } from '../fixtures/fhir-server.js';
import { resolveSettings } from '../src/config.js';
import { openDatabase, type Database } from '../src/db/connection.js';
import { BIN, childEnv, runCli, type CliResult } from './helpers/cli.js';
import { BACKENDS, createTestDatabase, useTestDatabase, type TestDatabase } from './helpers/db.js';
import { writeSampleData, type SampleData } from './helpers/fhir-data.js';

const TYPES = 'Patient,Encounter,Observation';
const COUNTS = { Patient: 12, Encounter: 40, Observation: 60 };
const TOTAL = 112;
/** PGlite opens in a few seconds per CLI run on a shared 2-core machine; several runs per test. */
const LONG = 240_000;

interface Snapshot {
  resources: string[];
  tables: Record<string, string[]>;
}

/** Every stored resource and every flat row, as sorted JSON text (run ids, sources and load times left out). */
async function snapshot(db: Database): Promise<Snapshot> {
  const { knex } = db;
  const resources = (await knex('fhir_resources')
    .select('resource_type', 'id', 'version_id', knex.raw('last_updated::text as last_updated'), knex.raw('resource::text as resource'), 'content_hash', 'deleted')
    .orderBy(['resource_type', 'id'])) as Record<string, unknown>[];
  const flat = (await knex.raw(
    `select table_name from information_schema.columns where column_name = '_resource_id' and table_schema = ? order by table_name`,
    [db.schemas.fhir],
  )) as { rows: { table_name: string }[] };
  const tables: Snapshot['tables'] = {};
  for (const { table_name } of flat.rows) {
    const rows = (await knex(table_name).select('*')) as Record<string, unknown>[];
    if (rows.length) tables[table_name] = rows.map((r) => JSON.stringify(r)).sort();
  }
  return { resources: resources.map((r) => JSON.stringify(r)), tables };
}

function json(result: CliResult): Record<string, unknown> {
  try {
    return JSON.parse(result.stdout) as Record<string, unknown>;
  } catch {
    throw new Error(`not a JSON summary (exit ${result.code}): ${result.stdout}\n${result.stderr}`);
  }
}

describe.each(BACKENDS)('ingest-fhir --server on %s', (backend) => {
  const ctx = useTestDatabase(backend);
  let data: SampleData;
  let server: FhirServer | undefined;

  beforeEach(async () => {
    data = await writeSampleData(path.join(ctx.test.tmp, 'fhir'), COUNTS);
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  const start = async (options: FhirServerOptions = {}) => (server = await startFhirServer({ dataDir: data.dir, ...options }));
  const pull = (url: string, extra: string[] = [], env: Record<string, string> = {}) =>
    runCli(['ingest-fhir', '--server', url, '--type', TYPES, '--page-size', '10', '--json', ...ctx.test.args, ...extra], { env });
  const openWaiting = async <T>(work: (db: Database) => Promise<T>): Promise<T> => {
    const db = await openDatabase(resolveSettings({ ...ctx.test.flags, wait: true }, {}, ctx.test.tmp), { wait: true });
    try {
      return await work(db);
    } finally {
      await db.close();
    }
  };
  const open = async <T>(work: (db: Database) => Promise<T>): Promise<T> => {
    const db = await ctx.test.connect();
    try {
      return await work(db);
    } finally {
      await db.close();
    }
  };

  it('pulls the same rows as the file ingest of the same data, and the next run fetches only what changed', async () => {
    await ctx.release();
    const s = await start();
    const first = await pull(s.url);
    expect(first.code, first.stderr).toBe(0);
    expect(json(first)).toMatchObject({ counts: { read: TOTAL, written: TOTAL, rejected: 0 }, server: { pages: 12, retries: 0 } });

    const files: TestDatabase = await createTestDatabase(backend);
    try {
      const fileRun = await runCli(['ingest-fhir', data.dir, ...files.args]);
      expect(fileRun.code, fileRun.stderr).toBe(0);
      const fromFiles = await (async () => {
        const db = await files.connect();
        try {
          return await snapshot(db);
        } finally {
          await db.close();
        }
      })();
      const fromServer = await open(snapshot);
      expect(fromServer.resources.length).toBe(TOTAL);
      expect(Object.keys(fromServer.tables)).toEqual(expect.arrayContaining(['encounter', 'observation', 'patient']));
      expect(fromServer).toEqual(fromFiles);
    } finally {
      await files.cleanup();
    }

    // Nothing changed: one request per type, nothing read.
    s.resetStats();
    const again = await pull(s.url);
    expect(again.code, again.stderr).toBe(0);
    expect(json(again)).toMatchObject({ counts: { read: 0, written: 0 } });
    expect(s.stats.requests).toEqual({ 'search:Patient': 1, 'search:Encounter': 1, 'search:Observation': 1 });

    // Two changes at the source: only they come.
    const changed = s.upsert({ ...(data.byType.Observation[5] as StoredResource), status: 'amended' });
    s.upsert({ resourceType: 'Patient', id: 'added-later', gender: 'female' });
    s.resetStats();
    const third = await pull(s.url);
    expect(json(third)).toMatchObject({ counts: { read: 2, written: 2 } });
    expect(s.stats.total).toBe(3);
    const stored = await open((db) =>
      db.knex('fhir_resources').where({ resource_type: 'Observation', id: changed.id }).first('version_id'),
    );
    expect(stored).toMatchObject({ version_id: '2' });
    const cursor = await open((db) => db.knex('fhir_sync_state').where({ server: s.url, resource_type: 'Observation' }).first('next_url', 'run_id'));
    expect(cursor).toMatchObject({ next_url: null });
  }, LONG);

  it('loads everything with 30% of requests failing, and counts the retries in the summary', async () => {
    await ctx.release();
    const s = await start({ faults: { rate: 0.3, seed: 11, slowMs: 50, retryAfterSeconds: 0 } });
    const result = await pull(s.url, ['--max-retries', '10', '--page-size', '4']);
    expect(result.code, result.stderr).toBe(0);
    const failing = Object.entries(s.stats.faults).reduce((n, [kind, c]) => n + (kind === 'slow' ? 0 : c), 0);
    expect(failing).toBeGreaterThan(2);
    expect(json(result)).toMatchObject({ counts: { read: TOTAL, written: TOTAL }, server: { retries: failing } });
    const count = await open(async (db) => Number(((await db.knex('fhir_resources').count({ n: '*' }).first()) as { n: number | string }).n));
    expect(count).toBe(TOTAL);
    const details = await open((db) => db.knex('runs').orderBy('id', 'desc').first('details'));
    const parsed = typeof details.details === 'string' ? JSON.parse(details.details) : details.details;
    expect(parsed.server.retries).toBe(failing);
  }, LONG);

  it('resumes a run killed mid-pull from the last committed page, without gaps or duplicates', async () => {
    await ctx.release();
    // Slow pages so that the kill lands mid-pull.
    const s = await start({ faults: { rate: 1, kinds: ['slow'], slowMs: 120, routes: ['search'] } });
    const child = spawn(process.execPath, [BIN, 'ingest-fhir', '--server', s.url, '--type', TYPES, '--page-size', '10', ...ctx.test.args], {
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    // The pipeline holds two batches in flight: the fourth Encounter page is asked for only once the first
    // page's batch has committed, so a kill after it always finds an Encounter next page stored.
    while ((s.stats.requests['search:Encounter'] ?? 0) < 4) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    // The killed process's lock on the embedded database goes stale rather than being released: wait for it.
    // On a server, a COMMIT the killed client sent just before dying may still be applied after it
    // died: read the state until it stops moving.
    const state = () =>
      openWaiting(async (db) => ({
        rows: Number(((await db.knex('fhir_resources').count({ n: '*' }).first()) as { n: number | string }).n),
        encounter: await db.knex('fhir_sync_state').where({ resource_type: 'Encounter' }).first('next_url'),
      }));
    let before = await state();
    for (;;) {
      await new Promise((r) => setTimeout(r, 300));
      const again = await state();
      if (again.rows === before.rows && again.encounter?.next_url === before.encounter?.next_url) break;
      before = again;
    }
    expect(before.rows).toBeGreaterThanOrEqual(12);
    expect(before.rows).toBeLessThan(TOTAL);

    s.setFaults(null);
    s.resetStats();
    const resumed = await pull(s.url, ['--wait']);
    expect(resumed.code, resumed.stderr).toBe(0);
    const summary = json(resumed) as { counts: { read: number; written: number } };
    // Only the pages not committed before the kill are fetched again.
    expect(summary.counts.read).toBeLessThan(TOTAL);
    // The fourth Encounter page was asked for only after the first page's batch had committed (the
    // pipeline awaits the commit two batches back before reading on), so a next page was stored.
    expect(before.encounter?.next_url).toContain('_page_after=');
    expect(s.stats.searches.find((q) => q.startsWith('/Encounter'))).toBe(new URL(before.encounter.next_url).pathname + new URL(before.encounter.next_url).search);
    expect(s.stats.requests['search:Patient']).toBe(1);
    const after = await open(async (db) => (await db.knex('fhir_resources').select('resource_type', 'id')) as { resource_type: string; id: string }[]);
    const keys = after.map((r) => `${r.resource_type}/${r.id}`).sort();
    const expected = Object.entries(data.byType).flatMap(([t, rs]) => rs.map((r) => `${t}/${r.id as string}`)).sort();
    expect(keys).toEqual(expected);
  }, LONG);

  it('stops on SIGTERM after a committed page with exit 130, and the next run finishes the pull', async () => {
    await ctx.release();
    const s = await start({ faults: { rate: 1, kinds: ['slow'], slowMs: 150, routes: ['search'] } });
    const child = spawn(process.execPath, [BIN, 'ingest-fhir', '--server', s.url, '--type', TYPES, '--page-size', '10', ...ctx.test.args], {
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    while ((s.stats.requests['search:Encounter'] ?? 0) < 2) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGTERM');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/interrupted/);
    s.setFaults(null);
    const rest = await pull(s.url);
    expect(rest.code, rest.stderr).toBe(0);
    const count = await open(async (db) => Number(((await db.knex('fhir_resources').count({ n: '*' }).first()) as { n: number | string }).n));
    expect(count).toBe(TOTAL);
    expect((json(rest) as { counts: { read: number } }).counts.read).toBeLessThan(TOTAL);
  }, LONG);

  it('loads through a Bulk Data export, deletes the job, and asks _since the export time next', async () => {
    await ctx.release();
    const s = await start({ exportPolls: 2, exportLinesPerFile: 25 });
    const result = await pull(s.url, ['--bulk']);
    expect(result.code, result.stderr).toBe(0);
    expect(json(result)).toMatchObject({ counts: { read: TOTAL, written: TOTAL }, server: { files: 6 } });
    expect(s.stats.requests).toMatchObject({ 'export-kickoff': 1, 'export-status': 3, 'export-file': 6, 'export-delete': 1 });
    expect(s.stats.exports[0]).toBe('/$export?_outputFormat=application%2Ffhir%2Bndjson&_type=Patient%2CEncounter%2CObservation');
    s.upsert({ ...(data.byType.Patient[0] as StoredResource), gender: 'other' });
    const next = await pull(s.url, ['--bulk']);
    expect(json(next)).toMatchObject({ counts: { read: 1, written: 1 } });
    expect(s.stats.exports[1]).toMatch(/&_since=20\d\d-/);
  }, LONG);

  it('authenticates with a bearer token from the environment, never writing it to the ledger', async () => {
    await ctx.release();
    const s = await start({ auth: { mode: 'bearer', tokens: ['tok-from-env', 'tok-from-flag'] } });
    const viaEnv = await pull(s.url, [], { CAREPIPE_FHIR_TOKEN: 'tok-from-env' });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    const viaFlag = await pull(s.url, ['--token', 'tok-from-flag', '--full-refresh']);
    expect(viaFlag.code, viaFlag.stderr).toBe(0);
    const runs = await open((db) => db.knex('runs').select(db.knex.raw('arguments::text as args'), db.knex.raw('details::text as details')));
    const ledgerText = JSON.stringify(runs);
    expect(ledgerText).toContain('--token');
    expect(ledgerText).not.toContain('tok-from');
    expect(viaFlag.stdout + viaFlag.stderr + viaEnv.stdout + viaEnv.stderr).not.toContain('tok-from');
    const refused = await pull(s.url, ['--token', 'tok-wrong', '--full-refresh']);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('answered HTTP 401: bearer token not accepted');
    expect(refused.stderr).not.toContain('tok-wrong');
  }, LONG);

  it('authenticates with basic credentials and with SMART backend services, refreshing an expired token', async () => {
    await ctx.release();
    let s = await start({ auth: { mode: 'basic', username: 'etl', password: 'pa55' } });
    const basic = await pull(s.url, ['--basic-user', 'etl'], { CAREPIPE_FHIR_PASSWORD: 'pa55' });
    expect(basic.code, basic.stderr).toBe(0);
    await s.close();

    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const keyFile = path.join(ctx.test.tmp, 'smart.key');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    s = await start({ auth: { mode: 'smart', clientId: 'carepipe-etl', publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(), tokenMaxCalls: 5 } });
    const smart = await pull(s.url, ['--smart-client-id', 'carepipe-etl', '--smart-key', keyFile, '--full-refresh']);
    expect(smart.code, smart.stderr).toBe(0);
    expect(json(smart)).toMatchObject({ counts: { read: TOTAL }, server: { token_refreshes: 2, retries: 0 } });
    expect(s.stats.tokensIssued).toBe(3);
  }, LONG);

  it('fails at once with the OperationOutcome text and exit 4 on a 400', async () => {
    await ctx.release();
    const s = await start();
    const result = await runCli(['ingest-fhir', '--server', s.url, '--type', 'Patient', '--page-size', '5000', ...ctx.test.args]);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(`answered HTTP 400: _count=5000 exceeds the maximum page size of 1000`);
    expect(s.stats.requests['search:Patient']).toBe(1);
  }, LONG);
});
