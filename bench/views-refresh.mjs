#!/usr/bin/env node
// `carepipe views refresh` against the limit it should run at: the view engine alone. In one run:
// - the Synthea Bulk Data (../shared/fhir/synthea-bulk) is loaded by ingest-fhir into a fresh schema of
//   the Postgres server (TEST_DATABASE_URL or postgres://$USER@127.0.0.1:5432/test);
// - the view engine alone: every stored resource (read from fhir_resources once, before timing) mapped
//   in memory through every shipped view with the code refresh uses, no database: once from parsed
//   resources (mapRows), once from their JSON text (parse + map, what refresh does per resource);
// - `views refresh` of every table, in a process of its own (its peak RSS is its own).
// Prints resources/s of each and the ratios refresh ÷ engine. Last line: JSON figures.
// Run `npm run build` first. Usage: node bench/views-refresh.mjs [--seconds N]
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const args = process.argv.slice(2);
const secondsAt = args.indexOf('--seconds');
const minSeconds = secondsAt >= 0 ? Number(args[secondsAt + 1]) : 3;
const input = process.env.BENCH_FHIR_DIR ?? path.resolve(root, '..', 'shared', 'fhir', 'synthea-bulk');
const url = process.env.TEST_DATABASE_URL ?? `postgres://${os.userInfo().username}@127.0.0.1:5432/test`;

const { schemasToDrop } = await import(path.join(root, 'dist/src/db/schemas.js'));
const { loadShippedViews } = await import(path.join(root, 'dist/src/fhir/views.js'));
const { mapRows } = await import(path.join(root, 'dist/src/mappers/fhir-views.js'));
const { mapStored } = await import(path.join(root, 'dist/src/fhir/refresh.js'));
const { parse: parseLossless } = await import('lossless-json');
const { mayLoseDigits } = await import(path.join(root, 'dist/src/readers/fhir-files.js'));

const carepipe = (cliArgs) => {
  const run = spawnSync(process.execPath, [path.join(here, '_ingest-fhir-child.mjs'), ...cliArgs], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  const result = JSON.parse(run.stdout.trim().split('\n').pop());
  if (result.code !== 0) throw new Error(`carepipe ${cliArgs.join(' ')} exited ${result.code}`);
  return result;
};

const schema = `bench_refresh_${process.pid}`;
const db = ['--database-url', url, '--db-schema', schema];
const client = new pg.Client({ connectionString: url });
await client.connect();
const out = { input: path.relative(process.cwd(), input) };
try {
  carepipe(['migrate', ...db]);
  const ingest = carepipe(['ingest-fhir', input, ...db]);
  out.ingest = { resources: ingest.summary.counts.read, seconds: +ingest.seconds.toFixed(2), resources_per_s: Math.round(ingest.summary.counts.read / ingest.seconds) };

  // The same resources refresh reads: current, not deleted, as stored text. Read once, outside the timings.
  const views = loadShippedViews();
  const viewsByType = new Map();
  for (const v of views) viewsByType.set(v.view.resource, [...(viewsByType.get(v.view.resource) ?? []), v]);
  const types = [...viewsByType.keys()];
  const { rows } = await client.query(
    `select resource_type as type, id, resource::text as json from ${schema}_fhir.fhir_resources where resource_type = any($1) and not deleted`,
    [types],
  );
  const parsed = rows.map((r) => (mayLoseDigits(r.json) ? parseLossless(r.json) : JSON.parse(r.json)));

  const timed = (fn) => {
    fn(); // warm-up: the JIT compiles the views' closures
    let passes = 0;
    let rowsOut = 0;
    const started = process.hrtime.bigint();
    const cpuStart = process.cpuUsage();
    let seconds = 0;
    do {
      rowsOut = fn();
      passes++;
      seconds = Number(process.hrtime.bigint() - started) / 1e9;
    } while (seconds < minSeconds);
    const cpu = process.cpuUsage(cpuStart);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    return {
      passes,
      rows: rowsOut,
      seconds: +seconds.toFixed(2),
      resources_per_s: Math.round((rows.length * passes) / seconds),
      resources_per_cpu_s: Math.round((rows.length * passes) / cpuSeconds),
    };
  };
  out.resources = rows.length;
  out.engine = timed(() => {
    let n = 0;
    for (let i = 0; i < parsed.length; i++) {
      const m = mapRows(parsed[i], viewsByType.get(rows[i].type) ?? []);
      for (const list of m.rows.values()) n += list.length;
    }
    return n;
  });
  out.parse_and_engine = timed(() => {
    let n = 0;
    for (const r of rows) {
      const m = mapStored(r, viewsByType);
      if (m.ok) for (const list of m.value.values()) n += list.length;
    }
    return n;
  });

  const refresh = carepipe(['views', 'refresh', ...db]);
  const s = refresh.summary;
  out.refresh = {
    resources: s.resources ?? s.counts.read,
    rows: s.rows,
    tables: s.tables.length,
    seconds: +refresh.seconds.toFixed(2),
    resources_per_s: Math.round(s.counts.read / refresh.seconds),
    peak_rss_mb: refresh.peak_rss_mb,
    // carepipe's own CPU (Node: reading, parsing, mapping, encoding), the steadier figure under load
    cpu_seconds: +refresh.cpu_seconds.toFixed(2),
    resources_per_cpu_s: Math.round(s.counts.read / refresh.cpu_seconds),
  };
  // the run itself, as the ledger times it: from its start (database open, lock taken) to its end
  const ledger = await client.query(`select extract(epoch from finished_at - started_at)::float as seconds from ${schema}_carepipe.runs where id = $1`, [s.run_id]);
  out.refresh.run_seconds = +ledger.rows[0].seconds.toFixed(2);
  out.refresh.run_resources_per_s = Math.round(s.counts.read / ledger.rows[0].seconds);
  out.ratio_to_engine = +(out.refresh.resources_per_s / out.engine.resources_per_s).toFixed(3);
  out.run_ratio_to_engine = +(out.refresh.run_resources_per_s / out.engine.resources_per_s).toFixed(3);
  out.run_ratio_to_parse_and_engine = +(out.refresh.run_resources_per_s / out.parse_and_engine.resources_per_s).toFixed(3);
  out.ratio_to_parse_and_engine = +(out.refresh.resources_per_s / out.parse_and_engine.resources_per_s).toFixed(3);
  out.cpu_ratio_to_engine = +(out.refresh.resources_per_cpu_s / out.engine.resources_per_cpu_s).toFixed(3);
  out.cpu_ratio_to_parse_and_engine = +(out.refresh.resources_per_cpu_s / out.parse_and_engine.resources_per_cpu_s).toFixed(3);
  out.ratio_to_ingest = +(out.refresh.resources_per_s / out.ingest.resources_per_s).toFixed(2);
  out.load = os.loadavg().map((l) => +l.toFixed(1));

  console.log(`${out.resources} resources, ${out.refresh.rows} rows in ${out.refresh.tables} tables (Postgres, load ${out.load.join(' ')})`);
  console.log(`view engine alone (parsed resources, no database)   ${out.engine.resources_per_s.toLocaleString('en')} resources/s`);
  console.log(`parse + view engine (stored JSON text, no database) ${out.parse_and_engine.resources_per_s.toLocaleString('en')} resources/s`);
  console.log(`views refresh (every table, whole command)          ${out.refresh.resources_per_s.toLocaleString('en')} resources/s, peak RSS ${out.refresh.peak_rss_mb} MB`);
  console.log(`views refresh (the run in the ledger)               ${out.refresh.run_resources_per_s.toLocaleString('en')} resources/s`);
  console.log(`views refresh per carepipe CPU-second              ${out.refresh.resources_per_cpu_s.toLocaleString('en')} resources/s`);
  console.log(`per CPU-second: engine ${out.engine.resources_per_cpu_s.toLocaleString('en')}, parse + engine ${out.parse_and_engine.resources_per_cpu_s.toLocaleString('en')}; refresh / engine ${out.cpu_ratio_to_engine}, refresh / (parse + engine) ${out.cpu_ratio_to_parse_and_engine}`);
  console.log(`ratio refresh / engine ${out.ratio_to_engine} (run: ${out.run_ratio_to_engine}), refresh / (parse + engine) ${out.ratio_to_parse_and_engine} (run: ${out.run_ratio_to_parse_and_engine}); ingest-fhir of the same files ${out.ingest.resources_per_s.toLocaleString('en')} resources/s`);
} finally {
  for (const s of schemasToDrop(schema)) await client.query(`drop schema if exists ${s} cascade`).catch(() => undefined);
  await client.end();
}
console.log(JSON.stringify(out));
