/**
 * The fake FHIR server behaves like the real ones carepipe meets: paging, _lastUpdated, auth, $export, faults.
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { startFhirServer, type FhirServer, type StoredResource } from '../fixtures/fhir-server.js';

const patients: StoredResource[] = Array.from({ length: 7 }, (_, i) => ({
  resourceType: 'Patient',
  id: `p${i}`,
  meta: { lastUpdated: `2024-0${1 + (i % 3)}-01T00:00:00.000Z`, versionId: '1' },
  gender: i % 2 ? 'male' : 'female',
}));

let server: FhirServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function pages(url: string): Promise<{ ids: string[]; requests: number }> {
  const ids: string[] = [];
  let next: string | undefined = url;
  let requests = 0;
  while (next) {
    const res = await fetch(next);
    requests++;
    const bundle = (await res.json()) as { entry?: { resource: StoredResource }[]; link: { relation: string; url: string }[] };
    ids.push(...(bundle.entry ?? []).map((e) => e.resource.id));
    next = bundle.link.find((l) => l.relation === 'next')?.url;
  }
  return { ids, requests };
}

describe('fake FHIR server', () => {
  it('pages a search sorted by lastUpdated then id and filters on _lastUpdated', async () => {
    server = await startFhirServer({ resources: patients });
    const all = await pages(`${server.url}/Patient?_count=3`);
    expect(all.ids).toEqual(['p0', 'p3', 'p6', 'p1', 'p4', 'p2', 'p5']);
    expect(all.requests).toBe(3);
    const later = await pages(`${server.url}/Patient?_count=3&_lastUpdated=gt2024-02-01T00:00:00Z`);
    expect(later.ids).toEqual(['p2', 'p5']);
    expect(server.stats.requests['search:Patient']).toBe(4);
  });

  it('keeps paging stable when a resource changes mid-pull, and PUT bumps version and lastUpdated', async () => {
    server = await startFhirServer({ resources: patients });
    const first = (await (await fetch(`${server.url}/Patient?_count=3`)).json()) as { link: { relation: string; url: string }[] };
    const res = await fetch(`${server.url}/Patient/p0`, { method: 'PUT', body: JSON.stringify({ ...patients[0], gender: 'other' }) });
    const updated = (await res.json()) as StoredResource;
    expect(updated.meta?.versionId).toBe('2');
    const rest = await pages(first.link.find((l) => l.relation === 'next')!.url);
    expect(rest.ids).toEqual(['p1', 'p4', 'p2', 'p5', 'p0']);
  });

  it('answers an unknown search parameter with 400 and an OperationOutcome', async () => {
    server = await startFhirServer({ resources: patients });
    const res = await fetch(`${server.url}/Patient?birthdate=2000`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ diagnostics: 'search parameter birthdate is not supported' }] });
  });

  it('checks bearer and basic credentials', async () => {
    server = await startFhirServer({ resources: patients, auth: { mode: 'bearer', tokens: ['s3cret'] } });
    expect((await fetch(`${server.url}/Patient`)).status).toBe(401);
    expect((await fetch(`${server.url}/Patient`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
    await server.close();
    server = await startFhirServer({ resources: patients, auth: { mode: 'basic', username: 'etl', password: 'pw' } });
    expect((await fetch(`${server.url}/Patient`, { headers: { authorization: 'Basic ' + btoa('etl:nope') } })).status).toBe(401);
    expect((await fetch(`${server.url}/Patient`, { headers: { authorization: 'Basic ' + btoa('etl:pw') } })).status).toBe(200);
  });

  it('issues SMART backend tokens for a valid private_key_jwt only, and expires them after N calls', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    server = await startFhirServer({ resources: patients, auth: { mode: 'smart', clientId: 'etl', publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(), tokenMaxCalls: 2 } });
    const config = (await (await fetch(`${server.url}/.well-known/smart-configuration`)).json()) as { token_endpoint: string };
    const assertion = (key = privateKey, aud = config.token_endpoint) =>
      new SignJWT({}).setProtectedHeader({ alg: 'ES384' }).setIssuer('etl').setSubject('etl').setAudience(aud).setJti(randomUUID()).setExpirationTime('5m').sign(key);
    const ask = async (jwt: string) =>
      fetch(config.token_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.read', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt }),
      });
    const wrongKey = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    expect((await ask(await assertion(wrongKey))).status).toBe(401);
    const granted = await ask(await assertion());
    expect(granted.status).toBe(200);
    const { access_token } = (await granted.json()) as { access_token: string };
    const auth = { authorization: `Bearer ${access_token}` };
    expect((await fetch(`${server.url}/Patient`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${server.url}/Patient`, { headers: auth })).status).toBe(200);
    const expired = await fetch(`${server.url}/Patient`, { headers: auth });
    expect(expired.status).toBe(401);
    expect(server.stats).toMatchObject({ tokensIssued: 1, tokenRefused: 1, unauthorized: 1 });
  });

  it('runs a Bulk Data export: 202, polling with X-Progress, manifest, ndjson files, delete', async () => {
    server = await startFhirServer({ resources: patients, exportPolls: 2, exportLinesPerFile: 4 });
    expect((await fetch(`${server.url}/$export`)).status).toBe(400);
    const kick = await fetch(`${server.url}/$export?_type=Patient&_since=2024-01-15T00:00:00Z`, { headers: { prefer: 'respond-async' } });
    expect(kick.status).toBe(202);
    const status = kick.headers.get('content-location')!;
    const first = await fetch(status);
    expect([first.status, first.headers.get('x-progress'), first.headers.get('retry-after')]).toEqual([202, 'in progress: 33%', '0']);
    await fetch(status);
    const done = await fetch(status);
    expect(done.status).toBe(200);
    const manifest = (await done.json()) as { output: { type: string; url: string; count: number }[] };
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([['Patient', 4]]);
    const lines = (await (await fetch(manifest.output[0].url)).text()).trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as StoredResource).id)).toEqual(['p1', 'p4', 'p2', 'p5']);
    expect((await fetch(status, { method: 'DELETE' })).status).toBe(202);
    expect((await fetch(status)).status).toBe(404);
  });

  it('injects the same faults for the same seed', async () => {
    const pattern = async () => {
      server = await startFhirServer({ resources: patients, faults: { rate: 0.5, seed: 7, kinds: ['429', '503', 'malformed'] } });
      const statuses: string[] = [];
      for (let i = 0; i < 12; i++) {
        const res = await fetch(`${server.url}/Patient`);
        const text = await res.text();
        statuses.push(res.status === 200 ? (text.includes('proxy error') ? 'malformed' : 'ok') : `${res.status}:${res.headers.get('retry-after')}`);
      }
      await server.close();
      server = undefined;
      return statuses;
    };
    const a = await pattern();
    expect(a).toEqual(await pattern());
    expect(a.filter((s) => s !== 'ok').length).toBeGreaterThan(2);
    expect(a).toContain('ok');
  });

  it('drops the connection mid-body', async () => {
    server = await startFhirServer({ resources: patients, faults: { rate: 1, kinds: ['drop'], limit: 1 } });
    await expect(fetch(`${server.url}/Patient`).then((r) => r.text())).rejects.toThrow();
    expect((await fetch(`${server.url}/Patient`)).status).toBe(200);
  });
});
