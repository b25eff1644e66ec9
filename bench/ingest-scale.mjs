#!/usr/bin/env node
// Linear time, flat memory, and what more workers buy: the Synthea Bulk Data ndjson of ../shared/fhir
// repeated 1×, 4× and 16× (each copy's ids and references rewritten, so every copy is new data, one
// folder of files per copy), each size loaded with `carepipe ingest-fhir` into a fresh schema of the
// Postgres server, with --workers 1 and 2. Prints per run: resources, seconds, resources/s, peak RSS
// (GNU time's maximum resident set, of the largest process), and at the end the time ratio 16×/1×.
// Run `npm run build` first. Usage:
//   node bench/ingest-scale.mjs [--scales 1,4,16] [--workers 1,2] [--database-url URL]
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { schemasToDrop } from '../dist/src/db/schemas.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const bin = path.join(root, 'bin', 'carepipe');
const source = path.resolve(root, '..', 'shared', 'fhir', 'synthea-bulk');

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const scales = arg('--scales', '1,4,16').split(',').map(Number);
const workerCounts = arg('--workers', '1,2').split(',').map(Number);
const databaseUrl = arg('--database-url', process.env.DATABASE_URL ?? `postgres://${os.userInfo().username}@127.0.0.1:5432/test`);

/** Writes copy `k` of the Synthea folder: ids and references suffixed with `-k{k}`. */
async function writeCopy(dir, k) {
  mkdirSync(dir, { recursive: true });
  let resources = 0;
  let bytes = 0;
  for (const name of readdirSync(source).filter((f) => f.endsWith('.ndjson')).sort()) {
    const out = createWriteStream(path.join(dir, name));
    const lines = readline.createInterface({ input: createReadStream(path.join(source, name)), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line.trim()) continue;
      const rewritten =
        k === 0
          ? line
          : line
              .replace(/"id":"([^"]+)"/g, `"id":"$1-k${k}"`)
              .replace(/"reference":"([A-Za-z]+)\/([^"]+)"/g, `"reference":"$1/$2-k${k}"`)
              .replace(/"reference":"urn:uuid:([^"]+)"/g, `"reference":"urn:uuid:$1-k${k}"`);
      if (!out.write(rewritten + '\n')) await new Promise((r) => out.once('drain', r));
      resources++;
      bytes += Buffer.byteLength(rewritten) + 1;
    }
    await new Promise((r) => out.end(r));
  }
  return { resources, bytes };
}

function psql(sql) {
  execFileSync('psql', [databaseUrl, '-qAtc', sql], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' } });
}

function run(input, workers) {
  const schema = `bench_scale_${process.pid}_${Date.now()}`;
  const env = { ...process.env, DATABASE_URL: databaseUrl, CAREPIPE_DB_SCHEMA: schema, NO_COLOR: '1' };
  try {
    execFileSync(process.execPath, [bin, 'migrate', '--quiet'], { env, stdio: 'inherit' });
    const args = [bin, 'ingest-fhir', input, '--json', '--quiet', ...(workers > 1 ? ['--workers', String(workers)] : [])];
    const started = process.hrtime.bigint();
    const child = spawnSync('/usr/bin/time', ['-f', 'maxrss_kb=%M', process.execPath, ...args], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (child.status !== 0) throw new Error(`ingest-fhir exited ${child.status}: ${child.stderr.slice(-2000)}`);
    const summary = JSON.parse(child.stdout.trim().split('\n').pop());
    const rss = Number(/maxrss_kb=(\d+)/.exec(child.stderr)?.[1] ?? 0);
    return { read: summary.counts.read, written: summary.counts.written, seconds, peakRssMb: Math.round(rss / 1024) };
  } finally {
    psql(schemasToDrop(schema).map((s) => `drop schema if exists ${s} cascade;`).join(' '));
  }
}

const work = mkdtempSync(path.join(os.tmpdir(), 'carepipe-bench-scale-'));
const results = [];
try {
  const maxScale = Math.max(...scales);
  let data = { resources: 0, bytes: 0 };
  const copies = [];
  for (let k = 0; k < maxScale; k++) {
    const dir = path.join(work, `copy-${String(k).padStart(2, '0')}`);
    const written = await writeCopy(dir, k);
    copies.push({ dir, ...written });
  }
  for (const scale of scales) {
    // A folder per scale holding hard links to its copies' files: the same bytes, no extra disk.
    const input = path.join(work, `scale-${scale}`);
    for (const c of copies.slice(0, scale)) {
      const into = path.join(input, path.basename(c.dir));
      mkdirSync(into, { recursive: true });
      for (const f of readdirSync(c.dir)) linkSync(path.join(c.dir, f), path.join(into, f));
    }
    data = copies.slice(0, scale).reduce((a, c) => ({ resources: a.resources + c.resources, bytes: a.bytes + c.bytes }), { resources: 0, bytes: 0 });
    for (const workers of workerCounts) {
      const r = run(input, workers);
      const line = {
        scale,
        workers,
        resources: r.read,
        mb: Math.round(data.bytes / 1e6),
        seconds: Number(r.seconds.toFixed(1)),
        resources_per_s: Math.round(r.read / r.seconds),
        peak_rss_mb: r.peakRssMb,
      };
      results.push(line);
      console.log(Object.entries(line).map(([k, v]) => `${k}=${v}`).join(' '));
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const one = (scale, workers) => results.find((r) => r.scale === scale && r.workers === workers);
const low = Math.min(...scales);
const high = Math.max(...scales);
const summary = { bench: 'ingest-scale', runs: results };
for (const w of workerCounts) {
  const a = one(low, w);
  const b = one(high, w);
  if (a && b) summary[`time_ratio_${high}x_over_${low}x_workers_${w}`] = Number((b.seconds / a.seconds).toFixed(2));
}
summary.max_peak_rss_mb = Math.max(...results.map((r) => r.peak_rss_mb));
console.log(JSON.stringify(summary));
