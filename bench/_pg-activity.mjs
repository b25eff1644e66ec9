#!/usr/bin/env node
// Where a command's database time goes: runs the command, samples pg_stat_activity every 5 ms while it
// runs, and prints, for the busiest backend, the share of samples per state, wait event and statement
// (active = working, `idle in transaction` = waiting for the client inside a transaction, `idle` =
// waiting between transactions). With a local server it also prints the CPU seconds of the postgres
// processes during the run (from /proc, when the data directory is readable), the sampler's own
// queries included. Not part of `npm run bench`.
//   node bench/_pg-activity.mjs [--database-url URL] -- node bin/carepipe ingest-fhir DIR --database-url URL
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import pg from 'pg';

const dash = process.argv.indexOf('--');
if (dash < 0 || dash === process.argv.length - 1) {
  console.error('usage: node bench/_pg-activity.mjs [--database-url URL] -- COMMAND ARGS…');
  process.exit(2);
}
const own = process.argv.slice(2, dash);
const url = own[own.indexOf('--database-url') + 1] ?? process.env.DATABASE_URL ?? `postgres://${os.userInfo().username}@127.0.0.1:5432/test`;
const client = new pg.Client({ connectionString: url });
await client.connect();
const { rows: [self] } = await client.query(`select current_database() as db, (select setting from pg_settings where name = 'data_directory') as dir`);

/** CPU seconds of the postmaster, its reaped children and its live children; undefined when unreadable. */
function postgresCpu() {
  try {
    const postmaster = Number(readFileSync(`${self.dir}/postmaster.pid`, 'utf8').split('\n')[0]);
    const fields = (pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ').map(Number);
    const own = fields(postmaster);
    let ticks = own[11] + own[12] + own[13] + own[14];
    for (const child of readFileSync(`/proc/${postmaster}/task/${postmaster}/children`, 'utf8').trim().split(' ').filter(Boolean)) {
      const f = fields(child);
      ticks += f[11] + f[12];
    }
    return ticks / 100;
  } catch {
    return undefined;
  }
}

const cpuBefore = postgresCpu();
const started = Date.now();
const child = spawn(process.argv[dash + 1], process.argv.slice(dash + 2), { stdio: ['ignore', 'ignore', 'inherit'] });
let exited = false;
const exit = new Promise((resolve) => child.on('exit', (code) => { exited = true; resolve(code); }));
const perBackend = new Map();
while (!exited) {
  const { rows } = await client.query(
    `select pid, state, coalesce(wait_event_type || ':' || wait_event, '') as wait, left(regexp_replace(query, '\\s+', ' ', 'g'), 48) as query
       from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid() and datname = $1`,
    [self.db],
  );
  for (const r of rows) {
    const counts = perBackend.get(r.pid) ?? new Map();
    perBackend.set(r.pid, counts);
    const key = `${r.state}${r.wait ? ` (${r.wait})` : ''}${r.state === 'active' ? `: ${r.query}` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  await new Promise((resolve) => setTimeout(resolve, 5));
}
const code = await exit;
const seconds = (Date.now() - started) / 1000;
const cpuAfter = postgresCpu();
await client.end();

const active = (counts) => [...counts].filter(([k]) => k.startsWith('active')).reduce((n, [, v]) => n + v, 0);
const [pid, counts] = [...perBackend].sort((a, b) => active(b[1]) - active(a[1]))[0] ?? [];
const total = counts ? [...counts.values()].reduce((a, b) => a + b, 0) : 0;
if (counts) {
  console.log(`busiest backend ${pid}: ${total} samples, active ${((100 * active(counts)) / total).toFixed(1)}%`);
  for (const [k, v] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`${((100 * v) / total).toFixed(1).padStart(6)}%  ${k}`);
}
const cpu = cpuBefore !== undefined && cpuAfter !== undefined ? +(cpuAfter - cpuBefore).toFixed(2) : null;
console.log(JSON.stringify({ exit: code, seconds, postgres_cpu_s: cpu, samples: total, active_share: total ? +(active(counts) / total).toFixed(3) : null }));
