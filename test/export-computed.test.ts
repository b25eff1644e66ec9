/**
 * The plumbing of computed export sources (a declaration with query() and chart()), on both back
 * ends, with a small source of the test's own: export parameters reach the query, the figures come
 * out as CSV, --chart calls chart() with the same parameters.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { RunLedger } from '../src/db/ledger.js';
import { Reporter } from '../src/cli/output.js';
import { CarepipeError } from '../src/errors.js';
import { runExportCsv, type ExportCsvOptions } from '../src/export/export-csv.js';
import type { ExportParams, SourceDeclaration } from '../src/export/treatments.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { runCli } from './helpers/cli.js';

/** Visits per group and period, and minutes lost to missed visits: a miniature missed-appointments. */
const visitsSource: SourceDeclaration = {
  name: 'test-visit-figures',
  description: 'visits and minutes lost per group and period (test only)',
  columns: { group: 'keep', period: 'keep', visits: 'keep', missed: 'keep', minutes_lost: 'keep' },
  query(params: ExportParams) {
    const by = params.by ?? 'department';
    if (!['department', 'clinician'].includes(by)) throw new CarepipeError('USAGE', `--by must be department or clinician`);
    const period = params.period ?? 'month';
    if (!['week', 'month'].includes(period)) throw new CarepipeError('USAGE', `--period must be week or month`);
    return {
      sql: `select ?? as "group", to_char(date_trunc(?, at), 'YYYY-MM-DD') as period, count(*)::int as visits,
                   count(*) filter (where missed)::int as missed, coalesce(sum(minutes) filter (where missed), 0)::int as minutes_lost
              from test_visits
             where at >= coalesce(?::date, '-infinity') and at < coalesce(?::date, ?::timestamptz)
             group by 1, 2 order by 1, 2`,
      bindings: [by, period, params.from ?? null, params.to ?? null, params.now!.toISOString()],
    };
  },
  async chart(knex, params, file) {
    const { sql, bindings } = this.query!(params);
    const result = (await knex.raw(sql, bindings as never[])) as { rows: { group: string; period: string; missed: number }[] };
    const series = result.rows.map((r) => `<circle data-group="${r.group}" data-period="${r.period}" r="${r.missed}"/>`).join('');
    writeFileSync(file, `<svg xmlns="http://www.w3.org/2000/svg">${series}</svg>`);
  },
};

/** A source whose query would change the database: a sequence's nextval, and the transaction's read-only flag. */
const writingSource: SourceDeclaration = {
  name: 'test-writing',
  description: 'advances a sequence (test only)',
  columns: { n: 'keep', read_only: 'keep' },
  query: () => ({ sql: `select nextval('test_counter') as n, current_setting('transaction_read_only') as read_only`, bindings: [] }),
};

/** The transaction's read-only flag, as a source. */
const readOnlySource: SourceDeclaration = {
  name: 'test-read-only',
  description: 'the read-only flag of the export transaction (test only)',
  columns: { read_only: 'keep' },
  query: () => ({ sql: `select current_setting('transaction_read_only') as read_only`, bindings: [] }),
};

describe.each(BACKENDS)('computed export sources on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  async function exportVisits(options: Partial<ExportCsvOptions>, now = new Date('2026-11-20T00:00:00Z')) {
    const stdout = new PassThrough();
    let csv = '';
    stdout.setEncoding('utf8').on('data', (d: string) => (csv += d));
    const io = { stdout, stderr: new PassThrough(), stdin: new PassThrough(), env: {}, cwd: ctx.test.tmp, isTTY: false, stdoutIsTTY: false };
    const ledger = await RunLedger.start(ctx.db.knex, { command: 'export-csv', args: [], user: 'test' });
    const result = await runExportCsv(
      { source: 'test-visit-figures', where: [], profile: 'clinical', format: {}, formulaGuard: true, timezone: 'UTC', params: {}, ...options },
      {
        knex: ctx.db.knex,
        reporter: new Reporter(io, { json: false, quiet: true, color: false }),
        ledger,
        stdout,
        signal: new AbortController().signal,
        cwd: ctx.test.tmp,
        now: () => now,
        extraSources: [visitsSource, writingSource, readOnlySource],
      },
    );
    return { csv, result, ledger };
  }

  async function seed() {
    await ctx.db.knex.schema.createTable('test_visits', (t) => {
      t.text('department');
      t.text('clinician');
      t.timestamp('at', { useTz: true });
      t.integer('minutes');
      t.boolean('missed');
    });
    await ctx.db.knex('test_visits').insert([
      { department: 'cardiology', clinician: 'c1', at: '2026-10-05T09:00:00Z', minutes: 30, missed: true },
      { department: 'cardiology', clinician: 'c1', at: '2026-10-06T09:00:00Z', minutes: 15, missed: false },
      { department: 'cardiology', clinician: 'c2', at: '2026-11-03T09:00:00Z', minutes: 45, missed: true },
      { department: 'dermatology', clinician: 'c3', at: '2026-11-04T09:00:00Z', minutes: 20, missed: true },
      { department: 'dermatology', clinician: 'c3', at: '2026-11-25T09:00:00Z', minutes: 60, missed: true },
    ]);
  }

  it('feeds --by/--period/--from/--to and the run clock to the query and writes its figures', async () => {
    await seed();
    const monthly = await exportVisits({ params: { by: 'department', period: 'month' } });
    // The 25 November visit is after the run's clock (20 November) and is left out.
    expect(monthly.csv).toBe(
      'group,period,visits,missed,minutes_lost\r\n' +
        'cardiology,2026-10-01,2,1,30\r\n' +
        'cardiology,2026-11-01,1,1,45\r\n' +
        'dermatology,2026-11-01,1,1,20\r\n',
    );
    expect(monthly.result.rows).toBe(3);
    expect(monthly.ledger.details).toMatchObject({ source: 'test-visit-figures', rows: 3, profile: 'clinical' });

    const weekly = await exportVisits({ params: { by: 'clinician', period: 'week', from: '2026-11-01', to: '2026-12-01' } });
    expect(weekly.csv).toBe(
      'group,period,visits,missed,minutes_lost\r\n' + 'c2,2026-11-02,1,1,45\r\n' + 'c3,2026-11-02,1,1,20\r\n' + 'c3,2026-11-23,1,1,60\r\n',
    );
  });

  it('draws the chart with the same parameters when --chart is given', async () => {
    await seed();
    const { result } = await exportVisits({ params: { by: 'department', period: 'month' }, chart: 'missed.svg' });
    expect(result.chart).toBe(path.join(ctx.test.tmp, 'missed.svg'));
    const svg = readFileSync(path.join(ctx.test.tmp, 'missed.svg'), 'utf8');
    expect(svg).toContain('data-group="cardiology" data-period="2026-10-01" r="1"');
    expect(svg).toContain('data-group="dermatology" data-period="2026-11-01" r="1"');
  });

  it('a bad parameter is the query’s own usage error', async () => {
    await seed();
    await expect(exportVisits({ params: { by: 'patient' } })).rejects.toThrow(/--by must be department or clinician/);
  });

  it('reads in a READ ONLY transaction: the flag is on and a query that writes fails, changing nothing', async () => {
    const flag = await exportVisits({ source: 'test-read-only' });
    expect(flag.csv).toBe('read_only\r\non\r\n');
    await ctx.db.knex.raw('create sequence test_counter');
    await expect(exportVisits({ source: 'test-writing' })).rejects.toThrow(/read-only transaction/);
    const { rows } = await ctx.db.knex.raw<{ rows: { last_value: string; is_called: boolean }[] }>('select last_value, is_called from test_counter');
    expect(rows[0]).toMatchObject({ is_called: false });
  });

  it('refuses computed-source flags and --chart for a table (exit 2)', async () => {
    await ctx.release();
    const by = await runCli(['export-csv', 'rejects', '--by', 'department'], { env: ctx.test.env, cwd: ctx.test.tmp });
    expect(by.code).toBe(2);
    expect(by.stderr).toMatch(/--by applies to computed sources only/);
    const chart = await runCli(['export-csv', 'rejects', '--chart', 'x.svg'], { env: ctx.test.env, cwd: ctx.test.tmp });
    expect(chart.code).toBe(2);
    expect(chart.stderr).toMatch(/rejects draws no chart/);
  });
});
