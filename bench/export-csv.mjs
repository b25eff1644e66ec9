#!/usr/bin/env node
// bench/export-csv: `carepipe export-csv codings` of a codings-shaped table of a million rows (made
// with generate_series) against its physical limit measured in the same run: `COPY (the same
// SELECT) TO STDOUT` through pg into /dev/null. Prints both rates, the ratio (target >= 0.5) and
// carepipe's peak RSS, for the clinical profile (stdout into /dev/null, and -o FILE) and the research
// profile; then the same on PGlite, whose limit is `COPY (the same SELECT) TO '/dev/blob'` in process.
// The last line is the figures as JSON.
//   BENCH_ROWS (default 1000000), BENCH_PGLITE_ROWS (default 250000; 0 skips PGlite),
//   CAREPIPE_ROOT: the carepipe checkout to measure (default this one; built with `npm run build`),
//   TEST_DATABASE_URL (default postgres://$USER@127.0.0.1:5432/test).
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.resolve(process.env.CAREPIPE_ROOT ?? here);
// The database plumbing and the SELECT come from this checkout, so a run against another root
// (the code before a change) measures that root's export against the same limit.
const { openDatabase } = await import(path.join(here, 'dist/src/db/connection.js'));
const { migrateLatest } = await import(path.join(here, 'dist/src/db/migrations.js'));
const { resolveSettings } = await import(path.join(here, 'dist/src/config.js'));
const { schemasToDrop } = await import(path.join(here, 'dist/src/db/schemas.js'));
const { exportSelect } = await import(path.join(here, 'dist/src/export/export-source.js'));
const { withSettings } = await import(path.join(here, 'dist/src/export/copy-out.js'));

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const pgliteRows = Number(process.env.BENCH_PGLITE_ROWS ?? 250_000);
const url = process.env.TEST_DATABASE_URL ?? `postgres://${os.userInfo().username}@127.0.0.1:5432/test`;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-bench-export-'));
const KEY = 'bench-key-0123456789abcdef';

// Codings as ingest stores them: three codings per resource, ten resources per patient.
const FILL = `
  insert into codings (resource_type, resource_id, patient_id, element, system, code, display, _resource_type, _resource_id, _row_index)
  select 'Condition', 'cond-' || (i / 3), 'pat-' || (i / 30), 'code', 'http://snomed.info/sct', (100000 + i % 5000)::text,
         'Finding number ' || (i % 5000) || case when i % 100 = 0 then ', with a comma' else '' end,
         'Condition', 'cond-' || (i / 3), i % 3
    from generate_series(?::int, ?::int) as i`;

async function fill(flags, n) {
  const db = await openDatabase(resolveSettings(flags, {}, tmp));
  try {
    await migrateLatest(db);
    // In slices, so the embedded database never holds one huge statement's worth of work.
    const slice = 100_000;
    for (let done = 0; done < n; done += slice) await db.knex.raw(FILL, [done + 1, Math.min(done + slice, n)]);
    await db.knex.raw('analyze codings');
  } finally {
    await db.close();
  }
}

const exportOptions = (profile) => ({
  source: 'codings',
  where: [],
  profile,
  pseudonymKey: profile === 'research' ? KEY : undefined,
  format: { delimiter: ',', eol: '\r\n' },
  formulaGuard: true,
  timezone: 'UTC',
  params: {},
});

/** `COPY (the export's SELECT) TO STDOUT` through pg into /dev/null: wall seconds. */
async function copyLimit(flags, profile) {
  const db = await openDatabase(resolveSettings(flags, {}, tmp));
  try {
    const { select } = await exportSelect(db.knex, exportOptions(profile));
    const { sql, settings } = withSettings(select);
    const { to: copyTo } = await import('pg-copy-streams');
    const started = process.hrtime.bigint();
    await db.knex.transaction(async (trx) => {
      await trx.raw("select set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true), set_config('IntervalStyle', 'iso_8601', true)");
      for (const [i, value] of settings.entries()) await trx.raw(`select set_config('carepipe.export_${i + 1}', ?, true)`, [value]);
      const connection = await trx.client.acquireConnection();
      const devNull = new Writable({ write: (_chunk, _encoding, done) => done() });
      await pipeline(connection.query(copyTo(`COPY (${sql}) TO STDOUT WITH (FORMAT csv, HEADER true)`)), devNull);
    });
    return Number(process.hrtime.bigint() - started) / 1e9;
  } finally {
    await db.close();
  }
}

/** PGlite's limit: `COPY (the export's SELECT) TO '/dev/blob'`, in process. */
async function blobLimit(flags) {
  const db = await openDatabase(resolveSettings(flags, {}, tmp));
  try {
    const { select } = await exportSelect(db.knex, exportOptions('clinical'));
    const { sql } = withSettings(select);
    const pglite = db.knex.client.config.connection.pglite;
    const started = process.hrtime.bigint();
    const result = await pglite.query(`COPY (${sql}) TO '/dev/blob' WITH (FORMAT csv, HEADER true)`);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { seconds, bytes: result.blob?.size ?? 0 };
  } finally {
    await db.close();
  }
}

/** The binary under /usr/bin/time -v: wall seconds, CPU seconds and peak RSS (MB) of the whole process. */
function exportRun(label, n, env, extraArgs = [], toFile = false) {
  const out = path.join(tmp, `${label}.csv`);
  const devNull = openSync('/dev/null', 'w');
  const args = [path.join(root, 'bin/carepipe'), 'export-csv', 'codings', '--quiet', ...(toFile ? ['-o', out] : []), ...extraArgs];
  const run = spawnSync('/usr/bin/time', ['-v', process.execPath, ...args], {
    env: { ...process.env, ...env, NO_COLOR: '1' },
    stdio: ['ignore', devNull, 'pipe'],
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  closeSync(devNull);
  if (run.status !== 0) throw new Error(`${label}: exit ${run.status}\n${run.stderr}`);
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(run.stderr);
  const seconds = Number(wall[1] ?? 0) * 3600 + Number(wall[2]) * 60 + Number(wall[3]);
  const cpu = Number(/User time \(seconds\): ([\d.]+)/.exec(run.stderr)[1]) + Number(/System time \(seconds\): ([\d.]+)/.exec(run.stderr)[1]);
  const rssKb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(run.stderr)[1]);
  const figures = { seconds: +seconds.toFixed(2), cpu_seconds: +cpu.toFixed(2), rows_per_s: Math.round(n / seconds), peak_rss_mb: Math.round(rssKb / 1024) };
  if (toFile) {
    figures.csv_mb = +(statSync(out).size / 1e6).toFixed(1);
    rmSync(out);
  }
  return figures;
}

const rate = (n, seconds) => Math.round(n / seconds);
const figures = { rows, root };
const schema = `bench_export_${process.pid}`;
const serverFlags = { databaseUrl: url, dbSchema: schema };
try {
  const t = Date.now();
  await fill(serverFlags, rows);
  process.stderr.write(`postgres: ${rows} codings stored in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  const env = { DATABASE_URL: url, CAREPIPE_DB_SCHEMA: schema, CAREPIPE_PSEUDONYM_KEY: KEY };
  for (const profile of ['clinical', 'research']) {
    const limit = await copyLimit(serverFlags, profile);
    const run = exportRun(`postgres_${profile}`, rows, env, ['--profile', profile]);
    figures[`postgres_${profile}`] = { ...run, copy_rows_per_s: rate(rows, limit), ratio: +(limit / run.seconds).toFixed(2) };
    process.stderr.write(`postgres ${profile}: ${JSON.stringify(figures[`postgres_${profile}`])}\n`);
  }
  figures.postgres_clinical_file = exportRun('postgres_file', rows, env, [], true);
  process.stderr.write(`postgres clinical -o FILE: ${JSON.stringify(figures.postgres_clinical_file)}\n`);
} finally {
  const db = await openDatabase(resolveSettings({ databaseUrl: url }, {}, tmp));
  for (const s of schemasToDrop(schema)) await db.knex.raw('drop schema if exists ?? cascade', [s]);
  await db.close();
}
if (pgliteRows > 0) {
  const dataDir = path.join(tmp, 'db');
  const t = Date.now();
  await fill({ dataDir }, pgliteRows);
  process.stderr.write(`pglite: ${pgliteRows} codings stored in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  const limit = await blobLimit({ dataDir });
  const run = exportRun('pglite', pgliteRows, { CAREPIPE_DATA_DIR: dataDir });
  figures.pglite = { rows: pgliteRows, ...run, blob_rows_per_s: rate(pgliteRows, limit.seconds), ratio: +(limit.seconds / run.seconds).toFixed(2) };
  process.stderr.write(`pglite clinical: ${JSON.stringify(figures.pglite)}\n`);
}
rmSync(tmp, { recursive: true, force: true });
const p = figures.postgres_clinical;
const r = figures.postgres_research;
console.log(
  `export-csv codings ${rows} rows on postgres: ${p.rows_per_s} rows/s against COPY ${p.copy_rows_per_s} rows/s: ratio ${p.ratio}, peak RSS ${p.peak_rss_mb} MB; ` +
    `research ${r.rows_per_s} rows/s against ${r.copy_rows_per_s}: ratio ${r.ratio}, ${r.peak_rss_mb} MB` +
    (figures.pglite ? `; pglite ${pgliteRows} rows: ${figures.pglite.rows_per_s} rows/s against COPY to /dev/blob ${figures.pglite.blob_rows_per_s}: ratio ${figures.pglite.ratio}, ${figures.pglite.peak_rss_mb} MB` : ''),
);
console.log(JSON.stringify(figures));
