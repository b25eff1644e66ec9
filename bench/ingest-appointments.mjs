#!/usr/bin/env node
// Ingest rate and memory of `carepipe ingest-appointments` on generated exports (a tenth of the size and
// the full size: peak RSS should not grow with the input), into a fresh embedded database, or the server
// named by BENCH_DATABASE_URL. APPOINTMENTS=n sets the full size (default 20000; a quarter as many patients).
// Last line: one JSON object of figures.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

if (process.argv[2] === '--child') {
  const [, , , dataDir, schema, ...files] = process.argv;
  const { main } = await import(pathToFileURL(path.join(root, 'dist/src/cli/main.js')).href);
  const { PassThrough, Readable } = await import('node:stream');
  const out = new PassThrough();
  let stdout = '';
  out.setEncoding('utf8').on('data', (d) => (stdout += d));
  const db = process.env.BENCH_DATABASE_URL ? ['--database-url', process.env.BENCH_DATABASE_URL, '--db-schema', schema] : ['--data-dir', dataDir];
  const io = { stdout: new PassThrough(), stderr: new PassThrough(), stdin: Readable.from([]), env: {}, cwd: root, isTTY: false, stdoutIsTTY: false };
  // Create and migrate the database first: the timer measures the ingest, not initdb.
  await main(['migrate', ...db, '--quiet'], io);
  const started = performance.now();
  const cpu = process.cpuUsage();
  const code = await main(['ingest-appointments', ...files, ...db, '--json', '--quiet', '--now', '2026-11-23T12:00:00Z'], {
    stdout: out, stderr: new PassThrough(), stdin: Readable.from([]), env: {}, cwd: root, isTTY: false, stdoutIsTTY: false,
  });
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  await new Promise((r) => setImmediate(r));
  const summary = JSON.parse(stdout);
  if (process.env.BENCH_DATABASE_URL) {
    const pg = (await import('pg')).default;
    const client = new pg.Client({ connectionString: process.env.BENCH_DATABASE_URL });
    await client.connect();
    const { schemasToDrop } = await import(pathToFileURL(path.join(root, 'dist/src/db/schemas.js')).href);
    for (const s of schemasToDrop(schema)) await client.query(`drop schema if exists ${s} cascade`);
    await client.end();
  }
  process.stdout.write(`${JSON.stringify({ code, counts: summary.counts, seconds, cpu_seconds: (used.user + used.system) / 1e6, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) })}\n`);
  process.exit(0);
}

function nhsNumber(i) {
  // nine digits from i, then the modulus 11 check digit; skip those whose check digit would be 10
  for (let n = i * 7 + 100000000; ; n += 1) {
    const nine = String(n).padStart(9, '0').slice(-9);
    let sum = 0;
    for (let k = 0; k < 9; k += 1) sum += Number(nine[k]) * (10 - k);
    const check = 11 - (sum % 11);
    if (check !== 10) return nine + (check === 11 ? 0 : check);
  }
}

const STATUSES = ['attended', 'active', 'cancelled', 'missed'];
const DURATIONS = ['15m', '30m', '1h', '1h30m', '2h'];
const DEPARTMENTS = ['oncology', 'orthopaedics', 'paediatrics', 'gastroentology', 'cardiology'];

function generate(dir, appointments) {
  const patients = Math.max(1, Math.floor(appointments / 4));
  const numbers = Array.from({ length: patients }, (_, i) => nhsNumber(i));
  const patientsFile = path.join(dir, `patients-${appointments}.json`);
  const appointmentsFile = path.join(dir, `appointments-${appointments}.json`);
  writeFileSync(
    patientsFile,
    `[${numbers.map((n, i) => JSON.stringify({ nhs_number: n, name: `Patient ${i} 名前`, date_of_birth: '1970-01-01', postcode: 'n62fa' })).join(',\n')}]`,
  );
  const rows = [];
  for (let i = 0; i < appointments; i += 1) {
    const day = new Date(Date.UTC(2025, 0, 1) + (i % 600) * 86_400_000).toISOString().slice(0, 10);
    rows.push(
      JSON.stringify({
        id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
        patient: numbers[i % patients],
        status: STATUSES[i % 4],
        time: `${day}T09:30:00+00:00`,
        duration: DURATIONS[i % 5],
        clinician: `Clinician ${i % 40}`,
        department: DEPARTMENTS[i % 5],
        postcode: 'SW1A 1AA',
      }),
    );
  }
  writeFileSync(appointmentsFile, `[${rows.join(',\n')}]`);
  return [patientsFile, appointmentsFile];
}

const full = Number(process.env.APPOINTMENTS ?? 20000);
const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-bench-appt-'));
const figures = {};
try {
  for (const n of [Math.max(100, Math.round(full / 10)), full]) {
    const files = generate(dir, n);
    const bytes = files.reduce((sum, f) => sum + statSync(f).size, 0);
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', path.join(dir, `db-${n}`), `bench_appt_${n}_${process.pid}`, ...files], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const result = JSON.parse(child.stdout.trim().split('\n').pop());
    if (result.counts.rejected !== 0 || result.counts.read !== n + Math.floor(n / 4)) throw new Error(`unexpected run: ${child.stdout}`);
    figures[n] = {
      records: result.counts.read,
      mb: Number((bytes / 1048576).toFixed(1)),
      records_per_s: Math.round(result.counts.read / result.seconds),
      seconds: Number(result.seconds.toFixed(1)),
      peak_rss_mb: result.peak_rss_mb,
    };
    process.stdout.write(`appointments_${n}: ${JSON.stringify(figures[n])}\n`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const small = Math.max(100, Math.round(full / 10));
process.stdout.write(
  `${JSON.stringify({
    backend: process.env.BENCH_DATABASE_URL ? 'postgres' : 'pglite',
    records: figures[full].records,
    records_per_s: figures[full].records_per_s,
    [`peak_rss_mb_${small}_vs_${full}`]: [figures[small].peak_rss_mb, figures[full].peak_rss_mb],
  })}\n`,
);
