import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { runCli, runMain } from './helpers/cli.js';
import { RunLedger } from '../src/db/ledger.js';

for (const backend of BACKENDS) {
  describe(`carepipe sql on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    /** Three rejects: text that looks like a formula, a NULL field, a record key with a comma. */
    async function loadRejects() {
      const ledger = await RunLedger.start(ctx.db.knex, { command: 'ingest-fhir', args: [], user: 'alice' });
      await ledger.finish('partial', 1);
      const run_id = ledger.id;
      await ctx.db.knex('rejects').insert([
        { run_id, command: 'ingest-fhir', source: 'a.ndjson', line: 1, reason_code: 'RECORD_INVALID', message: '=HYPERLINK("x")', record_key: 'k,1' },
        { run_id, command: 'ingest-fhir', source: 'a.ndjson', line: 2, reason_code: 'RECORD_INVALID', message: 'plain', record_key: null },
        { run_id, command: 'ingest-fhir', source: 'b.ndjson', line: -3, reason_code: 'FIELD_INVALID', message: '', record_key: 'k3' },
      ]);
      await ctx.release();
    }

    it('prints CSV through the CSV writer: header, CRLF, formula guard on text, not on numbers, NULL empty', async () => {
      await loadRejects();
      const result = await runCli(['sql', 'select line, message, record_key from rejects order by source, line', '--format', 'csv', ...ctx.test.args]);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe('line,message,record_key\r\n' + `1,"'=HYPERLINK(""x"")","k,1"\r\n` + '2,plain,\r\n' + '-3,"",k3\r\n');
    });

    it('--format json prints an array of row objects with typed values', async () => {
      await loadRejects();
      const result = await runCli(['sql', "select count(*) as n, bool_and(line > 0) as all_positive, '{\"a\":[1]}'::jsonb as doc, null::text as nothing from rejects", '--format', 'json', ...ctx.test.args]);
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual([{ n: 3, all_positive: false, doc: { a: [1] }, nothing: null }]);
    });

    it('prints a table with a row count for people', async () => {
      await loadRejects();
      const result = await runMain(['sql', "select source, count(*) as n from rejects group by source order by source", ...ctx.test.args]);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe('source    n\n--------  -\na.ndjson  2\nb.ndjson  1\n(2 rows)\n');
    });

    it('--json prints exactly one object holding the columns and the rows', async () => {
      await loadRejects();
      const result = await runCli(['sql', 'select line from rejects order by line', '--json', ...ctx.test.args]);
      expect(result.code).toBe(0);
      expect(result.stdout.trimEnd().split('\n')).toHaveLength(1);
      expect(JSON.parse(result.stdout)).toEqual({
        command: 'sql',
        run_id: null,
        columns: [{ name: 'line', type_oid: 23 }],
        rows: [{ line: -3 }, { line: 1 }, { line: 2 }],
        row_count: 3,
        statement: 'SELECT',
        changed: null,
        status: 'succeeded',
        exit_code: 0,
      });
    });

    it('streams a result larger than one cursor batch, in order and complete', async () => {
      await ctx.release();
      const result = await runMain(['sql', 'select g from generate_series(1, 25) g', '--format', 'csv', '--batch-size', '10', ...ctx.test.args]);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(['g', ...Array.from({ length: 25 }, (_, i) => String(i + 1))].map((l) => `${l}\r\n`).join(''));
    });

    it('reads the statement from stdin with - and from --file; a ? is an operator, not a binding', async () => {
      await loadRejects();
      const stdin = await runCli(['sql', '-', '--format', 'csv', ...ctx.test.args], { input: "select '{\"a\":1}'::jsonb ? 'a' as has_a;\n" });
      expect(stdin.code).toBe(0);
      expect(stdin.stdout).toBe('has_a\r\nt\r\n');
      const file = path.join(ctx.test.tmp, 'count.sql');
      writeFileSync(file, '-- how many rejects\nselect count(*) as n from rejects;\n');
      const fromFile = await runMain(['sql', '--file', file, '--format', 'csv', ...ctx.test.args]);
      expect(fromFile.code).toBe(0);
      expect(fromFile.stdout).toBe('n\r\n3\r\n');
    });

    it('a SQL error exits 2 with Postgres message and position; with --json one object holding it', async () => {
      await ctx.release();
      const human = await runCli(['sql', 'select nope from rejects', ...ctx.test.args]);
      expect(human.code).toBe(2);
      expect(human.stdout).toBe('');
      expect(human.stderr).toContain('carepipe: SQL error: column "nope" does not exist (at character 8)');
      const json = await runCli(['sql', 'select nope from rejects', '--json', ...ctx.test.args]);
      expect(json.code).toBe(2);
      expect(json.stdout.trimEnd().split('\n')).toHaveLength(1);
      expect(JSON.parse(json.stdout)).toEqual({
        status: 'failed',
        exit_code: 2,
        error: { code: 'SQL_ERROR', message: 'SQL error: column "nope" does not exist (at character 8)', position: 8, sqlstate: '42703' },
      });
    });

    it('an error after rows were streamed still leaves exactly one JSON object', async () => {
      await ctx.release();
      const result = await runCli(['sql', 'select 10 / (3 - g) as q from generate_series(1, 5) g', '--json', '--batch-size', '1', ...ctx.test.args]);
      expect(result.code).toBe(2);
      const out = JSON.parse(result.stdout);
      expect(out.rows).toEqual([{ q: 5 }, { q: 10 }]);
      expect(out).toMatchObject({ status: 'failed', exit_code: 2, error: { code: 'SQL_ERROR' } });
      expect(out.error.message).toContain('division by zero');
    });

    it('is read-only by default: a change exits 2, says --write, and leaves the table as it was', async () => {
      await loadRejects();
      const result = await runCli(['sql', "delete from rejects where source = 'a.ndjson'", ...ctx.test.args]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('read-only transaction; pass --write to change data');
      const db = await ctx.test.connect();
      try {
        expect(await db.knex('rejects').count({ n: '*' })).toEqual([{ n: 3 }]);
        expect(await db.knex('runs').where({ command: 'sql' })).toEqual([]);
      } finally {
        await db.close();
      }
    });

    it('--write commits, records a run without the statement, and names that run in row history', async () => {
      await ctx.db.knex('fhir_resources').insert({
        resource_type: 'Patient',
        id: 'p1',
        resource: JSON.stringify({ resourceType: 'Patient', id: 'p1' }),
        content_hash: 'h1',
        source: 'first.ndjson',
      });
      await loadRejects();
      const update = await runCli(['sql', "update fhir_resources set source = 'moved.ndjson' where id = 'p1'", '--write', ...ctx.test.args]);
      expect(update.stderr).toBe('');
      expect(update.code).toBe(0);
      expect(update.stdout).toBe('UPDATE 1\n');
      const deleted = await runCli(['sql', "delete from rejects where source = 'a.ndjson' returning line", '--write', '--format', 'csv', ...ctx.test.args]);
      expect(deleted.code).toBe(0);
      expect(deleted.stdout).toBe('line\r\n1\r\n2\r\n');
      const db = await ctx.test.connect();
      try {
        expect(await db.knex('rejects').count({ n: '*' })).toEqual([{ n: 1 }]);
        expect(await db.knex('fhir_resources').where({ id: 'p1' }).pluck('source')).toEqual(['moved.ndjson']);
        const runs = await db.knex('runs').where({ command: 'sql' }).orderBy('id');
        expect(runs.map((r) => [r.status, r.exit_code, r.arguments, r.details, r.written_count])).toEqual([
          ['succeeded', 0, ['<statement not recorded>', '--write', '--format', 'table'], { statement: 'UPDATE' }, 1],
          ['succeeded', 0, ['<statement not recorded>', '--write', '--format', 'csv'], { statement: 'DELETE' }, 2],
        ]);
        expect(JSON.stringify(runs)).not.toContain('ndjson');
        const history = await db.knex('row_history').where({ table_name: 'fhir_resources', row_key: 'Patient/p1', operation: 'U' });
        expect(history.map((h) => h.run_id)).toEqual([runs[0].id]);
      } finally {
        await db.close();
      }
    });

    it('a failed --write keeps Postgres wording, which can quote values, out of the ledger', async () => {
      await ctx.release();
      const result = await runCli(['sql', "update fhir_resources set source = 'x' where '943-476-5919'::date < now()", '--write', ...ctx.test.args]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('943-476-5919');
      const db = await ctx.test.connect();
      try {
        const runs = await db.knex('runs').where({ command: 'sql' });
        expect(runs.map((r) => [r.status, r.exit_code, r.error])).toEqual([['failed', 2, expect.stringMatching(/^SQL error, SQLSTATE \w{5}/)]]);
        expect(JSON.stringify(runs)).not.toContain('943');
      } finally {
        await db.close();
      }
    });

    it('needs exactly one statement source: none, or an argument and --file, is a usage error', async () => {
      await ctx.release();
      const none = await runMain(['sql', ...ctx.test.args]);
      expect(none.code).toBe(2);
      expect(none.stderr).toContain('sql needs one statement');
      const both = await runMain(['sql', 'select 1', '--file', 'x.sql', '--json', ...ctx.test.args]);
      expect(both.code).toBe(2);
      expect(JSON.parse(both.stdout)).toMatchObject({ status: 'failed', exit_code: 2, error: { code: 'USAGE' } });
    });
  });
}
