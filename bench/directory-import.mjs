#!/usr/bin/env node
// directory-lookup import --all over a large synthetic directory (the fake in a child process), on the
// embedded database and on the Postgres server, each import in a process of its own after migrating:
// hits per second and that process's peak RSS (one page is held in memory at a time, so RSS should not
// follow the directory's size: compare BENCH_DIRECTORY_WORKERS=1000 and 4000).
// Last line: {"directory_hits":…,"pglite":{…},"postgres":{…}}. Needs `npm run build`.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { schemasToDrop } from '../dist/src/db/schemas.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const self = fileURLToPath(import.meta.url);

function io(env, stdout = new PassThrough()) {
  return { stdout, stderr: new PassThrough(), stdin: Readable.from([]), env, cwd: root, isTTY: false, stdoutIsTTY: false };
}

if (process.argv[2] === '--child') {
  // One timed import in this process: `--child BASE_URL ...database flags`.
  const [baseUrl, ...dbArgs] = process.argv.slice(3);
  const { main } = await import(path.join(root, 'dist/src/cli/main.js'));
  await main(['migrate', ...dbArgs], io({}));
  const out = new PassThrough();
  let stdout = '';
  out.setEncoding('utf8').on('data', (d) => (stdout += d));
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const started = performance.now();
  const code = await main(['directory-lookup', 'import', '--all', '--size', '500', '--json', '--quiet', ...dbArgs], io({ DIRECTORY_BASE_URL: baseUrl }, out));
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  const summary = JSON.parse(stdout.trim().split('\n').pop());
  const read = summary.counts.read;
  process.stdout.write(`${JSON.stringify({ exit: code, hits: read, seconds: Number(seconds.toFixed(2)), hits_per_s: Math.round(read / seconds), peak_rss_mb: Math.round(peak / 2 ** 20) })}\n`);
  process.exit(0);
}

const workers = Number(process.env.BENCH_DIRECTORY_WORKERS ?? 4000);
const port = 18000 + Math.floor(Math.random() * 2000);
const fake = spawn(process.execPath, [path.join(root, 'dist/fixtures/directory-server.js'), '--port', String(port), '--workers', String(workers)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const banner = await new Promise((resolve) => fake.stdout.once('data', (d) => resolve(String(d))));
const figures = { directory_hits: Number(/\((\d+) hits\)/.exec(banner)?.[1]) };

function child(label, dbArgs) {
  const run = spawnSync(process.execPath, [self, '--child', `http://127.0.0.1:${port}`, ...dbArgs], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const result = JSON.parse(run.stdout.trim().split('\n').pop());
  process.stdout.write(`${label}: exit ${result.exit}, ${result.hits} hits in ${result.seconds} s, peak RSS ${result.peak_rss_mb} MB\n`);
  return result;
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-bench-'));
const url = process.env.TEST_DATABASE_URL ?? `postgres://${os.userInfo().username}@127.0.0.1:5432/test`;
const schema = `bench_directory_${process.pid}`;
try {
  figures.pglite = child('pglite', ['--data-dir', path.join(tmp, 'db')]);
  figures.postgres = child('postgres', ['--database-url', url, '--db-schema', schema]);
} finally {
  fake.kill();
  const pg = (await import('pg')).default;
  const client = new pg.Client({ connectionString: url });
  await client.connect().then(async () => {
    for (const s of schemasToDrop(schema)) await client.query(`drop schema if exists ${s} cascade`);
  }).catch(() => undefined);
  await client.end().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(figures)}\n`);
