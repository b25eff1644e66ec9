/**
 * The origin rule and the size cap of the one HTTP layer, through the built binary: a FHIR server whose
 * `next` links (or a stored next page) point to a second local server on another port. Without
 * --allow-origin the run stops with exit 4 naming both origins and the second server receives nothing
 * (so no Authorization header); with it, the pull goes on. --max-response-mb stops a large answer with
 * exit 4. Both servers listen on 127.0.0.1 only.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startFhirServer, type FhirServer, type StoredResource } from '../fixtures/fhir-server.js';
import { runCli, type CliResult } from './helpers/cli.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';

const TOKEN = 'origin-test-bearer-7c1d';
const LONG = 240_000;

/** A second server on another port: records every request, answers one Patient as the last page. */
async function startOtherServer(): Promise<{ url: string; requests: { url: string; headers: IncomingHttpHeaders }[]; close: () => Promise<void> }> {
  const requests: { url: string; headers: IncomingHttpHeaders }[] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', headers: req.headers });
    const bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      entry: [{ resource: { resourceType: 'Patient', id: 'from-other-origin', meta: { lastUpdated: '2026-01-01T00:00:00Z' } }, search: { mode: 'match' } }],
    };
    res.writeHead(200, { 'content-type': 'application/fhir+json' });
    res.end(JSON.stringify(bundle));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function patients(n: number): StoredResource[] {
  return Array.from({ length: n }, (_, i) => ({
    resourceType: 'Patient',
    id: `p${i}`,
    meta: { lastUpdated: `2025-01-0${1 + (i % 9)}T00:00:00Z` },
    name: [{ family: `Family${i}` }],
  }));
}

for (const backend of BACKENDS) {
  describe(`the HTTP origin rule on ${backend}`, () => {
    const ctx = useTestDatabase(backend);
    let fhir: FhirServer | undefined;
    let other: Awaited<ReturnType<typeof startOtherServer>> | undefined;
    afterEach(async () => {
      await fhir?.close();
      await other?.close();
      fhir = undefined;
      other = undefined;
    });

    const pull = (extra: string[] = []): Promise<CliResult> =>
      runCli(['ingest-fhir', '--server', fhir!.url, '--type', 'Patient', '--page-size', '2', '--token', TOKEN, '--max-retries', '0', ...ctx.test.args, ...extra]);

    async function storedIds(): Promise<string[]> {
      const db = await ctx.test.connect();
      try {
        return ((await db.knex('fhir_resources').where({ resource_type: 'Patient' }).orderBy('id').pluck('id')) as string[]).sort();
      } finally {
        await db.close();
      }
    }

    it('stops with exit 4 naming both origins when a next link leaves the server, and sends the other origin nothing', async () => {
      other = await startOtherServer();
      fhir = await startFhirServer({ resources: patients(3), auth: { mode: 'bearer', tokens: [TOKEN] }, linkBaseUrl: other.url });
      await ctx.release();

      const refused = await pull();
      expect(refused.code, refused.stderr).toBe(4);
      expect(refused.stderr).toContain(`to ${other.url}`);
      expect(refused.stderr).toContain(`the configured server is ${fhir.url}`);
      expect(refused.stderr).toContain(`--allow-origin ${other.url}`);
      expect(other.requests).toEqual([]);
      // The first page, on the server's own origin, is committed before the refusal.
      expect(await storedIds()).toEqual(['p0', 'p1']);

      const allowed = await pull(['--allow-origin', other.url]);
      expect(allowed.code, allowed.stderr).toBe(0);
      expect(other.requests.length).toBe(1);
      expect(other.requests[0]!.headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(await storedIds()).toEqual(['from-other-origin', 'p0', 'p1']);
    }, LONG);

    it('refuses a next page stored in fhir_sync_state that points to another origin, and takes --allow-origin from the config file', async () => {
      other = await startOtherServer();
      fhir = await startFhirServer({ resources: patients(3), auth: { mode: 'bearer', tokens: [TOKEN] } });
      await ctx.db.knex('fhir_sync_state').insert({ server: fhir.url, resource_type: 'Patient', last_updated: null, next_url: `${other.url}/Patient?_page_after=x` });
      await ctx.release();

      const refused = await pull();
      expect(refused.code, refused.stderr).toBe(4);
      expect(refused.stderr).toContain(`to ${other.url}`);
      expect(other.requests).toEqual([]);

      const { writeFileSync } = await import('node:fs');
      const config = `${ctx.test.tmp}/carepipe.config.json`;
      writeFileSync(config, JSON.stringify({ allowOrigins: [other.url] }));
      const allowed = await pull(['--config', config]);
      expect(allowed.code, allowed.stderr).toBe(0);
      expect(other.requests.map((r) => r.url)).toEqual(['/Patient?_page_after=x']);
      expect(await storedIds()).toEqual(['from-other-origin']);
    }, LONG);

    it('import-clinicians fhir-practitioner refuses a next link to another origin the same way', async () => {
      other = await startOtherServer();
      const roles = Array.from({ length: 3 }, (_, i) => ({ resourceType: 'PractitionerRole', id: `r${i}`, practitioner: { reference: `Practitioner/d${i}` } }));
      fhir = await startFhirServer({ resources: roles, linkBaseUrl: other.url });
      await ctx.release();
      const result = await runCli(['import-clinicians', 'fhir-practitioner', '--base-url', fhir.url, '--timeout', '8', '--max-retries', '0', ...ctx.test.args], {
        env: { FHIR_PRACTITIONER_PAGE_SIZE: '2' },
      });
      expect(result.code, result.stderr).toBe(4);
      expect(result.stderr).toContain(`to ${other.url}`);
      expect(result.stderr).toContain(`the configured server is ${fhir.url}`);
      expect(other.requests).toEqual([]);
    }, LONG);

    it('stops with exit 4 when an answer is larger than --max-response-mb', async () => {
      fhir = await startFhirServer({ resources: patients(40).map((p) => ({ ...p, text: { status: 'generated', div: `<div>${'x'.repeat(2000)}</div>` } })) });
      await ctx.release();
      const result = await runCli(['ingest-fhir', '--server', fhir.url, '--type', 'Patient', '--page-size', '40', '--max-retries', '0', '--max-response-mb', '0.05', ...ctx.test.args]);
      expect(result.code, result.stderr).toBe(4);
      expect(result.stderr).toMatch(/answered more than 0\.05 MB: stopped reading \(raise --max-response-mb/);
      const fine = await runCli(['ingest-fhir', '--server', fhir.url, '--type', 'Patient', '--page-size', '40', ...ctx.test.args]);
      expect(fine.code, fine.stderr).toBe(0);
    }, LONG);
  });
}
