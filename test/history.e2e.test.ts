import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { RunLedger } from '../src/db/ledger.js';
import { inRunTransaction } from '../src/db/transaction.js';

function patient(family: string) {
  return {
    resource_type: 'Patient',
    id: 'p1',
    resource: JSON.stringify({ resourceType: 'Patient', id: 'p1', name: [{ family }] }),
    content_hash: family,
    source: 'fixtures/patients.ndjson',
  };
}

for (const backend of BACKENDS) {
  describe(`carepipe history on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    async function threeRuns() {
      const { knex } = ctx.db;
      const runs: number[] = [];
      for (const [user, work] of [
        ['alice', async (trx: typeof knex) => void (await trx('fhir_resources').insert(patient('Smith')))],
        ['bob', async (trx: typeof knex) => void (await trx('fhir_resources').where({ id: 'p1' }).update(patient('Smyth')))],
        ['carol', async (trx: typeof knex) => void (await trx('fhir_resources').where({ id: 'p1' }).delete())],
      ] as const) {
        const ledger = await RunLedger.start(knex, { command: 'ingest-fhir', args: [`${user}.ndjson`], user });
        await inRunTransaction(knex, ledger, work);
        await ledger.finish('succeeded', 0);
        runs.push(ledger.id);
      }
      await ctx.release();
      return runs;
    }

    it('--json gives the changes of one row oldest first with the run behind each', async () => {
      const runs = await threeRuns();
      const result = await runCli(['history', 'fhir_resources', 'Patient/p1', '--json', ...ctx.test.args]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const out = JSON.parse(result.stdout);
      expect(out.key_columns).toEqual(['resource_type', 'id']);
      expect(out.changes.map((c: { operation: string; run: { id: number; user: string; command: string; arguments: string[] } }) => [c.operation, c.run.id, c.run.user, c.run.command, c.run.arguments])).toEqual([
        ['I', runs[0], 'alice', 'ingest-fhir', ['alice.ndjson']],
        ['U', runs[1], 'bob', 'ingest-fhir', ['bob.ndjson']],
        ['D', runs[2], 'carol', 'ingest-fhir', ['carol.ndjson']],
      ]);
      expect(out.changes[1].fields).toEqual([
        { path: 'resource.name[0].family', before: 'Smith', after: 'Smyth' },
        { path: 'content_hash', before: 'Smith', after: 'Smyth' },
      ]);
      expect(out.changes[2].after).toBeNull();
      expect(out.changes[2].before.resource.name[0].family).toBe('Smyth');
    });

    it('prints a readable diff for people', async () => {
      const runs = await threeRuns();
      const result = await runCli(['history', 'fhir_resources', 'Patient/p1', ...ctx.test.args]);
      expect(result.code).toBe(0);
      const lines = result.stdout.trimEnd().split('\n');
      const headers = lines.filter((l) => !l.startsWith('  '));
      expect(headers).toHaveLength(3);
      expect(headers[0]).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+Z  insert  run ${runs[0]} ingest-fhir alice.ndjson by alice at \\S+Z \\(db user \\S+\\)$`));
      expect(headers[1]).toContain(`update  run ${runs[1]} ingest-fhir bob.ndjson by bob`);
      expect(headers[2]).toContain(`delete  run ${runs[2]} ingest-fhir carol.ndjson by carol`);
      expect(lines).toContain('  + resource.name[0].family: "Smith"');
      expect(lines).toContain('  ~ resource.name[0].family: "Smith" → "Smyth"');
      expect(lines).toContain('  - resource.name[0].family: "Smyth"');
      expect(result.stdout).not.toContain('\u001b[');
    });

    it('says so when a row has no recorded change, and exits 2 on a table without history', async () => {
      await ctx.release();
      const none = await runCli(['history', 'fhir_resources', 'Patient/nobody', ...ctx.test.args]);
      expect(none.code).toBe(0);
      expect(none.stdout).toBe('no recorded changes for fhir_resources Patient/nobody\n');
      const bad = await runCli(['history', 'runs', '1', ...ctx.test.args]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('runs has no row history; tables with history: fhir_resources');
    });
  });
}
