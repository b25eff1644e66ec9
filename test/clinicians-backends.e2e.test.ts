/**
 * The backend registry seen from the command line: --help lists the registered backends, unknown names
 * and modules that are not backends are refused with exit 2 naming what is missing, and a backend loaded
 * with --backend-module runs like a shipped one (a complete listing here, so the inactive marking shows).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { describe, expect, it, vi } from 'vitest';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { runCli } from './helpers/cli.js';

// Each test runs the built binary several times; embedded PGlite on a busy machine needs minutes, not seconds.
vi.setConfig({ testTimeout: 300_000 });

const VALID = `
export default {
  name: 'acme',
  description: 'ACME staff list from the ACME_NAMES setting',
  completeListing: true,
  settings: [{ name: 'names', description: 'comma-separated "Given Family"', required: true }],
  siteUrl: () => 'urn:acme',
  authenticate: async () => null,
  authHeader: () => ({}),
  async *fetchClinicians(ctx) {
    let entry = 0;
    for (const name of ctx.config.names.split(',')) yield { raw: name, source: 'urn:acme', entry: entry++ };
  },
  mapToClinician(raw) {
    const [given, family] = raw.trim().split(/\\s+/);
    if (!family) return { ok: false, reason: 'NAME_MISSING', field: 'name', message: 'no family name', key: given };
    const key = raw.trim().toLowerCase();
    return { ok: true, key, value: { key, givenName: given, familyName: family, title: null, clinic: 'ACME', npi: null, rpps: null, specialty: null, phone: null, email: null, active: true } };
  },
};
`;

const BROKEN = `
export const backend = {
  name: 'broken',
  description: 'no header, no completeness',
  settings: [],
  siteUrl: () => 'urn:broken',
  authenticate: async () => null,
  async *fetchClinicians() {},
  mapToClinician: () => ({}),
};
`;

describe('import-clinicians --help', () => {
  it('lists each registered backend with one line', async () => {
    const result = await runCli(['import-clinicians', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Backends:\n {2}noteworth {10}noteworth provider API: .*\n {2}fhir-practitioner {2}FHIR R4 server: .*\n/);
  });

  it('refuses an unknown backend with exit 2, naming the registered ones', async () => {
    const result = await runCli(['import-clinicians', 'nope']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('unknown backend "nope"; registered: noteworth, fhir-practitioner');
  });
});

for (const backend of BACKENDS) {
  describe(`import-clinicians --backend-module on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    async function query<T>(work: (knex: Knex) => Promise<T>): Promise<T> {
      const db = await ctx.test.connect();
      try {
        return await work(db.knex);
      } finally {
        await db.close();
      }
    }

    it('refuses a module that is not a backend, naming what is missing, before touching the database', async () => {
      const file = path.join(ctx.test.tmp, 'broken.mjs');
      writeFileSync(file, BROKEN);
      await ctx.release();
      const result = await runCli(['import-clinicians', '--backend-module', file, ...ctx.test.args]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`backend "broken" from ${file} is not a clinician backend: missing completeListing (boolean: does one listing hold every clinician?), authHeader() (function)`);
      expect(await query((k) => k('runs').where({ command: 'import-clinicians' }).select('id'))).toEqual([]);
      const missing = await runCli(['import-clinicians', '--backend-module', './no-such.mjs', ...ctx.test.args], { cwd: ctx.test.tmp });
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain(`cannot load backend module ${path.join(ctx.test.tmp, 'no-such.mjs')}: file not found`);
    });

    it('runs a module backend; after its complete listing, one no longer listed is marked inactive, never deleted', async () => {
      writeFileSync(path.join(ctx.test.tmp, 'acme.mjs'), VALID);
      await ctx.release();
      const run = (names: string) =>
        runCli(['import-clinicians', '--backend-module', './acme.mjs', '--json', ...ctx.test.args], { cwd: ctx.test.tmp, env: { ACME_NAMES: names } });
      const first = await run('Ann Lee,Bob Ray');
      expect(first.code, first.stderr).toBe(0);
      const second = await run('Ann Lee');
      expect(second.code, second.stderr).toBe(0);
      expect(JSON.parse(second.stdout)).toMatchObject({ counts: { read: 1, written: 1, unchanged: 1 }, clinicians: { marked_inactive: 1 } });
      const rows = await query((k) => k('clinicians').where({ provider: 'acme' }).orderBy('clinician_key').select('clinician_key', 'active', 'inactive_since', 'source_run'));
      const today = new Date().toISOString().slice(0, 10);
      expect(rows.map((r) => [r.clinician_key, r.active, r.inactive_since && new Date(r.inactive_since).toISOString().slice(0, 10)])).toEqual([
        ['ann lee', true, null],
        ['bob ray', false, today],
      ]);
      expect(String(rows[1].source_run)).toBe(String(JSON.parse(second.stdout).run_id));
      // back in the listing: active again
      const third = await run('Ann Lee,Bob Ray');
      expect(JSON.parse(third.stdout)).toMatchObject({ counts: { written: 1, unchanged: 1 }, clinicians: { updated: 1, marked_inactive: 0 } });
      expect(Number((await query((k) => k('clinicians').where({ provider: 'acme', active: true }).count({ n: '*' }).first()))!.n)).toBe(2);
    });

    it('does not mark anyone inactive when a rejected record could not be keyed', async () => {
      writeFileSync(path.join(ctx.test.tmp, 'acme.mjs'), VALID.replace(", key: given };", " };"));
      await ctx.release();
      const run = (names: string) =>
        runCli(['import-clinicians', '--backend-module', './acme.mjs', '--json', ...ctx.test.args], { cwd: ctx.test.tmp, env: { ACME_NAMES: names } });
      expect((await run('Ann Lee,Bob Ray')).code).toBe(0);
      const second = await run('Ann Lee,Cher');
      expect(second.code).toBe(1);
      expect(JSON.parse(second.stdout).clinicians).toMatchObject({ marked_inactive: 0, inactive_marking: 'skipped: 1 rejected record(s) without a key' });
      expect(await query((k) => k('clinicians').where({ active: false }).select('clinician_key'))).toEqual([]);
      const rejects = await query((k) => k('rejects').select('source', 'entry', 'reason_code', 'raw'));
      expect(rejects).toEqual([{ source: 'urn:acme', entry: 1, reason_code: 'NAME_MISSING', raw: 'Cher' }]);
    });
  });
}
