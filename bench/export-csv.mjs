#!/usr/bin/env node
// bench/export-csv: `carepipe export-csv fhir_resources -o file` over a table of a million stored
// resources, on the Postgres server and on the embedded PGlite, through the built binary. Prints the
// rows/s, MB/s and peak RSS of each; the last line is the figures as JSON.
//   BENCH_ROWS (default 1000000), BENCH_PGLITE_ROWS (default 250000: filling PGlite is slow; 0 skips it),
//   cpu_seconds is carepipe's own CPU (user + system): on a shared machine, rows_per_cpu_s is the steadier figure.
//   TEST_DATABASE_URL (default postgres://$USER@127.0.0.1:5432/test).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { schemasToDrop } from '../dist/src/db/schemas.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { openDatabase } = await import(path.join(root, 'dist/src/db/connection.js'));
const { migrateLatest } = await import(path.join(root, 'dist/src/db/migrations.js'));
const { resolveSettings } = await import(path.join(root, 'dist/src/config.js'));

const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const pgliteRows = Number(process.env.BENCH_PGLITE_ROWS ?? 250_000);
const url = process.env.TEST_DATABASE_URL ?? `postgres://${os.userInfo().username}@127.0.0.1:5432/test`;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-bench-export-'));

// A small Patient per row, as ingest stores them: 10 columns, one of them jsonb.
const FILL = `
  insert into fhir_resources (resource_type, id, version_id, last_updated, resource, content_hash, deleted, source, loaded_at)
  select 'Patient', 'pat-' || i, '1', timestamptz '2026-01-01' + i * interval '1 second',
         jsonb_build_object('resourceType', 'Patient', 'id', 'pat-' || i, 'gender', case when i % 2 = 0 then 'female' else 'male' end,
                            'birthDate', (date '1940-01-01' + (i % 25000))::text,
                            'name', jsonb_build_array(jsonb_build_object('family', 'Family' || i, 'given', jsonb_build_array('Given' || i))),
                            'address', jsonb_build_array(jsonb_build_object('postalCode', 'N6 ' || (i % 10) || 'FA'))),
         md5(i::text), false, 'bench.ndjson', timestamptz '2026-11-20T09:00:00Z'
    from generate_series(1, ?) as i`;

async function fill(flags, n) {
  const db = await openDatabase(resolveSettings(flags, {}, tmp));
  try {
    await migrateLatest(db);
    // In slices, so the embedded database never holds one huge statement's worth of work.
    const slice = 100_000;
    for (let done = 0; done < n; done += slice) {
      await db.knex.raw(FILL.replace('generate_series(1, ?)', 'generate_series(?::int, ?::int)'), [done + 1, Math.min(done + slice, n)]);
    }
    await db.knex.raw('analyze fhir_resources');
  } finally {
    await db.close();
  }
}

/** Runs the binary under /usr/bin/time -v: wall seconds and peak RSS (MB) of the whole process. */
function exportRun(label, env, extraArgs = []) {
  const out = path.join(tmp, `${label}.csv`);
  const run = spawnSync('/usr/bin/time', ['-v', process.execPath, path.join(root, 'bin/carepipe'), 'export-csv', 'fhir_resources', '-o', out, '--quiet', ...extraArgs], {
    env: { ...process.env, ...env, NO_COLOR: '1' },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (run.status !== 0) throw new Error(`${label}: exit ${run.status}\n${run.stderr}`);
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(run.stderr);
  const seconds = Number(wall[1] ?? 0) * 3600 + Number(wall[2]) * 60 + Number(wall[3]);
  const cpu = Number(/User time \(seconds\): ([\d.]+)/.exec(run.stderr)[1]) + Number(/System time \(seconds\): ([\d.]+)/.exec(run.stderr)[1]);
  const rssKb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(run.stderr)[1]);
  const bytes = statSync(out).size;
  rmSync(out);
  return { seconds: +seconds.toFixed(2), cpu_seconds: +cpu.toFixed(2), rows_per_s: Math.round(exported(label) / seconds), rows_per_cpu_s: Math.round(exported(label) / cpu), mb_per_s: +(bytes / 1e6 / seconds).toFixed(1), csv_mb: +(bytes / 1e6).toFixed(1), peak_rss_mb: Math.round(rssKb / 1024) };
}
const counts = {};
const exported = (label) => counts[label];

const figures = { rows };
const schema = `bench_export_${process.pid}`;
const serverFlags = { databaseUrl: url, dbSchema: schema };
try {
  let t = Date.now();
  await fill(serverFlags, rows);
  process.stderr.write(`postgres: ${rows} rows stored in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  const serverEnv = { DATABASE_URL: url, CAREPIPE_DB_SCHEMA: schema };
  counts.postgres = counts.postgres_research = rows;
  figures.postgres = exportRun('postgres', serverEnv);
  process.stderr.write(`postgres clinical: ${JSON.stringify(figures.postgres)}\n`);
  figures.postgres_research = exportRun('postgres_research', { ...serverEnv, CAREPIPE_PSEUDONYM_KEY: 'bench-key-0123456789abcdef' }, ['--profile', 'research']);
  process.stderr.write(`postgres research: ${JSON.stringify(figures.postgres_research)}\n`);
} finally {
  const db = await openDatabase(resolveSettings({ databaseUrl: url }, {}, tmp));
  for (const s of schemasToDrop(schema)) await db.knex.raw('drop schema if exists ?? cascade', [s]);
  await db.close();
}
if (pgliteRows > 0) {
  const dataDir = path.join(tmp, 'db');
  let t = Date.now();
  await fill({ dataDir }, pgliteRows);
  process.stderr.write(`pglite: ${pgliteRows} rows stored in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  counts.pglite = pgliteRows;
  figures.pglite = { rows: pgliteRows, ...exportRun('pglite', { CAREPIPE_DATA_DIR: dataDir }) };
  process.stderr.write(`pglite clinical: ${JSON.stringify(figures.pglite)}\n`);
}
rmSync(tmp, { recursive: true, force: true });
console.log(
  `export-csv ${rows} rows: postgres ${figures.postgres.rows_per_s} rows/s (${figures.postgres.rows_per_cpu_s} per CPU s; research ${figures.postgres_research.rows_per_s}), peak RSS ${figures.postgres.peak_rss_mb} MB` +
    (figures.pglite ? `; pglite ${figures.pglite.rows} rows: ${figures.pglite.rows_per_s} rows/s, peak RSS ${figures.pglite.peak_rss_mb} MB` : ''),
);
console.log(JSON.stringify(figures));
