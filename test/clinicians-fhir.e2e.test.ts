/**
 * `carepipe import-clinicians fhir-practitioner` against the fake FHIR server (fixtures/fhir-server.ts)
 * over real HTTP, on both databases: the mapping of Practitioner and PractitionerRole, paging, the
 * inactive marking after a complete listing, SMART backend-services tokens stored and reused, a token
 * expiring mid-run, retries under 30% faults with nothing lost, rejects, exit 4, no secret printed.
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { startFhirServer, type FhirServer, type FhirServerOptions, type StoredResource } from '../fixtures/fhir-server.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { runCli, type CliResult } from './helpers/cli.js';

/** Practitioner `pN` with an NPI, a work phone and an email; p3 has an RPPS number instead. */
function practitioner(n: number, extra: Partial<StoredResource> = {}): StoredResource {
  return {
    resourceType: 'Practitioner',
    id: `p${n}`,
    active: true,
    identifier: n === 3 ? [{ system: 'urn:oid:1.2.250.1.71.4.2.1', value: '10001234567' }] : [{ system: 'http://hl7.org/fhir/sid/us-npi', value: `99990000${n}` }],
    name: [{ use: 'official', family: `Family${n}`, given: [`Given${n}`, 'Middle'], prefix: ['Dr.'] }],
    telecom: [
      { system: 'phone', value: `+1 555 000 ${n}`, use: 'work' },
      { system: 'email', value: `given${n}@clinic.example` },
    ],
    ...extra,
  };
}

/** The role of `pN` at a clinic, with a specialty. */
function role(n: number, extra: Partial<StoredResource> = {}): StoredResource {
  return {
    resourceType: 'PractitionerRole',
    id: `r${n}`,
    active: true,
    practitioner: { reference: `Practitioner/p${n}` },
    organization: { reference: 'Organization/o1', display: n % 2 ? 'North Clinic' : 'South Clinic' },
    specialty: [{ coding: [{ system: 'http://snomed.info/sct', code: '394814009', display: 'General practice' }] }],
    ...extra,
  };
}

function staff(count: number): StoredResource[] {
  return Array.from({ length: count }, (_, i) => [practitioner(i + 1), role(i + 1)]).flat();
}

interface ClinicianRow {
  provider: string;
  clinician_key: string;
  given_name: string | null;
  family_name: string | null;
  title: string | null;
  clinic: string | null;
  npi: string | null;
  rpps: string | null;
  specialty: string | null;
  phone: string | null;
  email: string | null;
  active: boolean;
  inactive_since: Date | string | null;
  source_run: string | number;
}

for (const backend of BACKENDS) {
  describe(`import-clinicians fhir-practitioner on ${backend}`, () => {
    const ctx = useTestDatabase(backend);
    let server: FhirServer | undefined;
    afterEach(async () => {
      await server?.close();
      server = undefined;
    });

    async function start(options: FhirServerOptions): Promise<FhirServer> {
      server = await startFhirServer(options);
      await ctx.release();
      return server;
    }

    function run(extra: string[] = [], env: Record<string, string> = {}): Promise<CliResult> {
      return runCli(['import-clinicians', 'fhir-practitioner', '--json', '--timeout', '8', '--retry-delay', '10', ...ctx.test.args, ...extra], {
        env: { FHIR_PRACTITIONER_BASE_URL: server!.url, ...env },
      });
    }

    async function query<T>(work: (knex: Knex) => Promise<T>): Promise<T> {
      const db = await ctx.test.connect();
      try {
        return await work(db.knex);
      } finally {
        await db.close();
      }
    }

    const clinicians = () => query((k) => k<ClinicianRow>('clinicians').where({ provider: 'fhir-practitioner' }).orderBy('clinician_key'));
    const day = (value: Date | string | null) => (value === null ? null : new Date(value).toISOString().slice(0, 10));

    /** A SMART client key pair: the private key in a PEM file for carepipe, the public one for the server. */
    function smartClient(): { file: string; publicKey: string } {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const file = path.join(ctx.test.tmp, 'client-key.pem');
      writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
      return { file, publicKey: publicKey.export({ type: 'spki', format: 'pem' }) as string };
    }

    it('maps Practitioner and PractitionerRole over several pages into clinicians', async () => {
      const fhir = await start({ resources: staff(5) });
      const result = await run([], { FHIR_PRACTITIONER_PAGE_SIZE: '2' });
      expect(result.code, result.stderr).toBe(0);
      expect(fhir.stats.searches.filter((s) => s.startsWith('/Practitioner?'))).toHaveLength(3);
      expect(fhir.stats.searches.filter((s) => s.startsWith('/PractitionerRole?'))).toHaveLength(3);
      const rows = await clinicians();
      expect(rows.map((r) => r.clinician_key)).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
      expect(rows[0]).toMatchObject({
        given_name: 'Given1 Middle',
        family_name: 'Family1',
        title: 'Dr.',
        clinic: 'North Clinic',
        npi: '999900001',
        rpps: null,
        specialty: 'General practice',
        phone: '+1 555 000 1',
        email: 'given1@clinic.example',
        active: true,
        inactive_since: null,
      });
      expect(rows[2]).toMatchObject({ npi: null, rpps: '10001234567' });
      const again = await run();
      expect(JSON.parse(again.stdout)).toMatchObject({ counts: { read: 5, written: 0, unchanged: 5 } });
    });

    it('marks a practitioner the complete listing no longer returns as inactive, with the day, and keeps the row', async () => {
      const fhir = await start({ resources: staff(4) });
      expect((await run()).code).toBe(0);
      fhir.remove('Practitioner', 'p2');
      fhir.remove('PractitionerRole', 'r2');
      const second = await run();
      expect(second.code, second.stderr).toBe(0);
      const summary = JSON.parse(second.stdout);
      expect(summary).toMatchObject({ counts: { read: 3, written: 1, unchanged: 3 }, clinicians: { marked_inactive: 1, complete_listing: true } });
      const rows = await clinicians();
      expect(rows.map((r) => [r.clinician_key, r.active, day(r.inactive_since)])).toEqual([
        ['p1', true, null],
        ['p2', false, new Date().toISOString().slice(0, 10)],
        ['p3', true, null],
        ['p4', true, null],
      ]);
      expect(String(rows[1]!.source_run)).toBe(String(summary.run_id));
    });

    it('takes active=false from the provider as inactive', async () => {
      await start({ resources: [...staff(2), { ...practitioner(3), active: false }] });
      expect((await run()).code).toBe(0);
      const rows = await clinicians();
      expect(rows.map((r) => [r.clinician_key, r.active, r.inactive_since === null])).toEqual([
        ['p1', true, true],
        ['p2', true, true],
        ['p3', false, false],
      ]);
    });

    it('obtains a SMART backend-services token once and reuses it while it is valid: no token call on the second run', async () => {
      const client = smartClient();
      const fhir = await start({ resources: staff(3), auth: { mode: 'smart', clientId: 'carepipe', publicKey: client.publicKey } });
      const env = { FHIR_PRACTITIONER_CLIENT_ID: 'carepipe', FHIR_PRACTITIONER_PRIVATE_KEY: client.file };
      const first = await run([], env);
      expect(first.code, first.stderr).toBe(0);
      expect(fhir.stats.tokensIssued).toBe(1);
      expect(fhir.stats.requests['smart-config']).toBe(1);
      const [stored] = await query((k) => k('provider_tokens').select('*'));
      expect(stored).toMatchObject({ site_url: fhir.url, provider: 'fhir-practitioner' });
      expect(new Date(stored.expires_at).getTime() - Date.now()).toBeGreaterThan(200_000);
      const second = await run([], env);
      expect(second.code, second.stderr).toBe(0);
      expect(fhir.stats.tokensIssued).toBe(1);
      expect(fhir.stats.requests.token).toBe(1);
      expect(JSON.parse(second.stdout).clinicians.http).toMatchObject({ token: 'stored', auth_calls: 0 });
      // the token and the key never reach the output or the ledger
      const ledger = JSON.stringify(await query((k) => k('runs').select('*')));
      const pem = (await import('node:fs')).readFileSync(client.file, 'utf8').split('\n')[1]!;
      for (const output of [first.stdout, first.stderr, second.stdout, second.stderr, ledger]) {
        expect(output).not.toContain(stored.token);
        expect(output).not.toContain(pem);
      }
    });

    it('re-authenticates once when the token expires mid-run (401) and stores the new one', async () => {
      const client = smartClient();
      const fhir = await start({ resources: staff(6), auth: { mode: 'smart', clientId: 'carepipe', publicKey: client.publicKey, tokenMaxCalls: 2 } });
      const result = await run(['--client-id', 'carepipe', '--private-key', client.file, '--token-url', `${server!.url}/auth/token`], { FHIR_PRACTITIONER_PAGE_SIZE: '3' });
      expect(result.code, result.stderr).toBe(0);
      expect(fhir.stats.unauthorized).toBe(1);
      expect(fhir.stats.tokensIssued).toBe(2);
      expect(JSON.parse(result.stdout).clinicians.http).toMatchObject({ auth_calls: 2, reauthentications: 1 });
      expect(await clinicians()).toHaveLength(6);
      const ledger = JSON.stringify(await query((k) => k('runs').select('arguments')));
      expect(ledger).not.toContain(client.file);
    });

    it('loses nothing under 30% faults (429, 503, dropped connections, malformed pages): every failure retried and counted', async () => {
      const fhir = await start({ resources: staff(12), faults: { rate: 0.3, seed: 7, kinds: ['429', '503', 'drop', 'malformed'] } });
      const result = await run(['--max-retries', '8'], { FHIR_PRACTITIONER_PAGE_SIZE: '2' });
      expect(result.code, result.stderr).toBe(0);
      const injected = Object.values(fhir.stats.faults).reduce((a, b) => a + b, 0);
      expect(injected).toBeGreaterThanOrEqual(3);
      const http = JSON.parse(result.stdout).clinicians.http;
      expect(http.failed_attempts).toBe(injected);
      expect(result.stderr.split('\n').filter((l) => l.includes('"event":"retry"'))).toHaveLength(injected);
      expect((await clinicians()).map((r) => r.clinician_key)).toEqual(['p1', 'p10', 'p11', 'p12', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9']);
      expect((await clinicians()).every((r) => r.clinic !== null)).toBe(true);
    });

    it('rejects a practitioner without a name with its id, exits 1, and does not take it as gone', async () => {
      const fhir = await start({ resources: staff(3) });
      expect((await run()).code).toBe(0);
      fhir.upsert({ resourceType: 'Practitioner', id: 'p3', active: true });
      const result = await run();
      expect(result.code).toBe(1);
      const rejects = await query((k) => k('rejects').select('record_key', 'field', 'reason_code', 'source', 'raw'));
      expect(rejects).toEqual([
        { record_key: 'p3', field: 'Practitioner.name', reason_code: 'NAME_MISSING', source: `${fhir.url}/Practitioner?_count=100`, raw: expect.stringContaining('"id":"p3"') },
      ]);
      expect(JSON.parse(result.stdout)).toMatchObject({ status: 'partial', clinicians: { marked_inactive: 0 } });
      expect((await clinicians()).map((r) => [r.clinician_key, r.active, r.family_name])).toEqual([
        ['p1', true, 'Family1'],
        ['p2', true, 'Family2'],
        ['p3', true, 'Family3'],
      ]);
    });

    it('exits 4 naming the call and the reason when retries run out', async () => {
      await start({ resources: staff(2), faults: { rate: 1, kinds: ['503'] } });
      const result = await run(['--max-retries', '1']);
      expect(result.code).toBe(4);
      expect(result.stderr).toContain(`carepipe: GET ${server!.url}/PractitionerRole?_count=100 failed after 2 attempts: HTTP 503`);
      expect(result.stderr).toMatch(/"event":"retry".*"attempt":1.*"status":503/);
      const [run1] = await query((k) => k('runs').select('status', 'exit_code', 'error'));
      expect(run1).toMatchObject({ status: 'failed', exit_code: 4, error: expect.stringContaining('failed after 2 attempts: HTTP 503') });
    });
  });
}
