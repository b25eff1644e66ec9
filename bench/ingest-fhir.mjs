#!/usr/bin/env node
// ingest-fhir on the Synthea Bulk Data export (../shared/fhir/synthea-bulk, or BENCH_FHIR_DIR):
// - into a fresh schema of the Postgres server (TEST_DATABASE_URL or postgres://127.0.0.1/test),
// - a bare COPY of the same raw rows (type, id, resource) into a table without indexes: the physical limit,
// - into a fresh embedded PGlite folder.
// Each ingest runs in a child process of its own (peak RSS is its own). Last line: the figures as JSON.
import { spawnSync } from 'node:child_process';
import { createReadStream, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';

const here = path.dirname(fileURLToPath(import.meta.url));
const input = process.env.BENCH_FHIR_DIR ?? path.resolve(here, '..', '..', 'shared', 'fhir', 'synthea-bulk');
const url = process.env.TEST_DATABASE_URL ?? `postgres://${os.userInfo().username}@127.0.0.1:5432/test`;
const files = readdirSync(input).filter((f) => f.endsWith('.ndjson')).map((f) => path.join(input, f));
const megabytes = files.reduce((n, f) => n + statSync(f).size, 0) / 1e6;
const carepipe = (args, env = {}) => {
  const run = spawnSync(process.execPath, [path.join(here, '_ingest-fhir-child.mjs'), ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  const result = JSON.parse(run.stdout.trim().split('\n').pop());
  if (result.code !== 0) throw new Error(`carepipe ${args.join(' ')} exited ${result.code}`);
  return result;
};
const figures = (r) => ({
  resources: r.summary.counts.read,
  seconds: +r.seconds.toFixed(2),
  resources_per_s: Math.round(r.summary.counts.read / r.seconds),
  mb_per_s: +(megabytes / r.seconds).toFixed(2),
  peak_rss_mb: r.peak_rss_mb,
});

const schema = `bench_ingest_${process.pid}`;
const client = new pg.Client({ connectionString: url });
await client.connect();
const out = { input: path.relative(process.cwd(), input), files: files.length, megabytes: +megabytes.toFixed(1) };
try {
  // Postgres server
  carepipe(['migrate', '--database-url', url, '--db-schema', schema]);
  const server = carepipe(['ingest-fhir', input, '--database-url', url, '--db-schema', schema]);
  out.postgres = figures(server);

  // The limit: COPY of the same rows into a bare table.
  await client.query(`create table ${schema}.bare_copy (resource_type text, id text, resource jsonb)`);
  const started = process.hrtime.bigint();
  let rows = 0;
  await client.query('begin');
  const copy = client.query(copyStreams.from(`copy ${schema}.bare_copy (resource_type, id, resource) from stdin`));
  async function* lines() {
    for (const file of files) {
      for await (const line of readline.createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
        if (!line.trim()) continue;
        const r = JSON.parse(line);
        rows += 1;
        yield `${r.resourceType}\t${r.id}\t${line.replace(/\\/g, '\\\\')}\n`;
      }
    }
  }
  await pipeline(Readable.from(lines()), copy);
  await client.query('commit');
  const copySeconds = Number(process.hrtime.bigint() - started) / 1e9;
  out.copy_limit = { resources: rows, seconds: +copySeconds.toFixed(2), resources_per_s: Math.round(rows / copySeconds), mb_per_s: +(megabytes / copySeconds).toFixed(2) };
  out.ratio_to_copy = +(out.postgres.resources_per_s / out.copy_limit.resources_per_s).toFixed(2);

  // Embedded PGlite (a fresh folder: the first command also creates and migrates it)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-bench-'));
  try {
    carepipe(['migrate', '--data-dir', path.join(dir, 'db')]);
    out.pglite = figures(carepipe(['ingest-fhir', input, '--data-dir', path.join(dir, 'db')]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  await client.query(`drop schema if exists ${schema} cascade`).catch(() => undefined);
  await client.end();
}
console.log(JSON.stringify(out));
