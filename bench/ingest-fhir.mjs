#!/usr/bin/env node
// ingest-fhir on the Synthea Bulk Data export (../shared/fhir/synthea-bulk, or BENCH_FHIR_DIR):
// - into a fresh schema of the Postgres server (TEST_DATABASE_URL or postgres://127.0.0.1/test),
// - a bare COPY of the same raw rows (type, id, resource) into a table without indexes: the physical limit,
// - a COPY of the same rows straight into a fresh fhir_resources (its keys and its row-history trigger,
//   no flat tables, no merge): the least that the lossless store with the history of issue 10 costs,
// - the same ingest into a schema whose row-history triggers are dropped: what the ingest costs without
//   the history of issue 10 (not a configuration carepipe offers; a measure of that history's share),
// - into a fresh embedded PGlite folder.
// Each ingest runs in a child process of its own (peak RSS and Node CPU are its own).
// Bytes written: the WAL the server wrote meanwhile (pg_current_wal_lsn() before and after: the whole
// cluster's, so other sessions' writes count too) plus the size of the tables and indexes left behind,
// per resource, for the ingest and the bare COPY; their ratio. Last line: the figures as JSON.
// BENCH_SKIP=store,nohistory,pglite leaves those parts out (for paired runs on a busy machine).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { schemasToDrop } from '../dist/src/db/schemas.js';

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
  node_cpu_s: +r.cpu_s.toFixed(2),
});
const walLsn = async () => (await client.query('select pg_current_wal_lsn()::text as l')).rows[0].l;
const walSince = async (lsn) => Number((await client.query('select pg_wal_lsn_diff(pg_current_wal_lsn(), $1) as d', [lsn])).rows[0].d);
/** Table + index + toast bytes of every relation of these schemas, and of each table by name. */
async function storedBytes(schemas) {
  const { rows } = await client.query(
    `select c.relname, pg_total_relation_size(c.oid)::bigint as bytes from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any($1) and c.relkind in ('r', 'm')`,
    [schemas],
  );
  const tables = Object.fromEntries(rows.map((r) => [r.relname, Number(r.bytes)]).sort((a, b) => b[1] - a[1]));
  return { total: rows.reduce((n, r) => n + Number(r.bytes), 0), tables };
}
const mb = (bytes) => +(bytes / 1e6).toFixed(1);
/** WAL + what stays, in MB and per resource. */
const bytesWritten = (wal, stored, resources) => ({
  wal_mb: mb(wal),
  stored_mb: mb(stored.total),
  written_bytes_per_resource: Math.round((wal + stored.total) / resources),
});

const skip = new Set((process.env.BENCH_SKIP ?? '').split(',').filter(Boolean));
const schema = `bench_ingest_${process.pid}`;
const floorSchema = `${schema}_store`;
const noHistorySchema = `${schema}_nohist`;
const client = new pg.Client({ connectionString: url });
await client.connect();
const out = { input: path.relative(process.cwd(), input), files: files.length, megabytes: +megabytes.toFixed(1) };
try {
  // Postgres server
  carepipe(['migrate', '--database-url', url, '--db-schema', schema]);
  const serverLsn = await walLsn();
  const server = carepipe(['ingest-fhir', input, '--database-url', url, '--db-schema', schema]);
  out.postgres = figures(server);
  const serverStored = await storedBytes(schemasToDrop(schema));
  Object.assign(out.postgres, bytesWritten(await walSince(serverLsn), serverStored, out.postgres.resources));
  out.postgres.largest_tables_mb = Object.fromEntries(Object.entries(serverStored.tables).slice(0, 6).map(([t, b]) => [t, mb(b)]));

  // The limit: COPY of the same rows into a bare table.
  await client.query(`create table ${schema}.bare_copy (resource_type text, id text, resource jsonb)`);
  const bareLsn = await walLsn();
  const bare = await copyLines(`copy ${schema}.bare_copy (resource_type, id, resource) from stdin`, (r, line) => `${r.resourceType}\t${r.id}\t${line}`);
  const bareStored = Number((await client.query(`select pg_total_relation_size('${schema}.bare_copy')::bigint as b`)).rows[0].b);
  Object.assign(bare, bytesWritten(await walSince(bareLsn), { total: bareStored }, bare.resources));
  out.copy_limit = bare;
  out.ratio_to_copy = +(out.postgres.resources_per_s / bare.resources_per_s).toFixed(2);
  out.bytes_ratio_to_copy = +(out.postgres.written_bytes_per_resource / bare.written_bytes_per_resource).toFixed(2);
  out.node_cpu_to_copy_wall = +(out.postgres.node_cpu_s / bare.seconds).toFixed(2);

  // The floor of the store alone: the same rows into fhir_resources of a fresh schema, as the ingest
  // writes them (lz4), with the primary key, the index and the history triggers (which a first insert does not fire).
  if (!skip.has('store')) {
    carepipe(['migrate', '--database-url', url, '--db-schema', floorSchema]);
    const store = await copyLines(
      `copy ${floorSchema}_fhir.fhir_resources (resource_type, id, version_id, last_updated, resource, content_hash, source) from stdin`,
      (r, line) => `${r.resourceType}\t${r.id}\t${r.meta?.versionId ?? '\\N'}\t${r.meta?.lastUpdated ?? '\\N'}\t${line}\t${createHash('sha256').update(line).digest('base64url')}\tbench`,
      [`set local search_path = ${floorSchema}`, `set local default_toast_compression = 'lz4'`],
    );
    for (const s of schemasToDrop(floorSchema)) await client.query(`drop schema if exists ${s} cascade`);
    out.store_with_history = store;
    out.ratio_store_with_history_to_copy = +(store.resources_per_s / bare.resources_per_s).toFixed(2);
  }

  // The whole ingest without row history: the triggers of every table dropped after migrating.
  if (!skip.has('nohistory')) {
    carepipe(['migrate', '--database-url', url, '--db-schema', noHistorySchema]);
    const { rows: triggers } = await client.query(
      `select t.tgname, n.nspname, c.relname from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = any($1) and t.tgname like 'carepipe_history%'`,
      [schemasToDrop(noHistorySchema)],
    );
    for (const t of triggers) await client.query(`drop trigger ${pg.escapeIdentifier(t.tgname)} on ${pg.escapeIdentifier(t.nspname)}.${pg.escapeIdentifier(t.relname)}`);
    out.postgres_without_history = figures(carepipe(['ingest-fhir', input, '--database-url', url, '--db-schema', noHistorySchema]));
    out.ratio_without_history_to_copy = +(out.postgres_without_history.resources_per_s / bare.resources_per_s).toFixed(2);
    for (const s of schemasToDrop(noHistorySchema)) await client.query(`drop schema if exists ${s} cascade`);
  }

  // Embedded PGlite (a fresh folder: the first command also creates and migrates it)
  if (!skip.has('pglite')) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-bench-'));
    try {
      carepipe(['migrate', '--data-dir', path.join(dir, 'db')]);
      out.pglite = figures(carepipe(['ingest-fhir', input, '--data-dir', path.join(dir, 'db')]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  for (const s of [schema, floorSchema, noHistorySchema].flatMap(schemasToDrop)) await client.query(`drop schema if exists ${s} cascade`).catch(() => undefined);
  await client.end();
}
console.log(JSON.stringify(out));

/** COPYs every resource line of the input, as `format(resource, line)` gives it, in one transaction; times it. */
async function copyLines(sql, format, setup = []) {
  const started = process.hrtime.bigint();
  let rows = 0;
  await client.query('begin');
  for (const statement of setup) await client.query(statement);
  const copy = client.query(copyStreams.from(sql));
  async function* lines() {
    for (const file of files) {
      for await (const line of readline.createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
        if (!line.trim()) continue;
        rows += 1;
        // COPY text format: the JSON has no raw tabs or newlines; its backslashes are doubled.
        yield `${format(JSON.parse(line), line.replace(/\\/g, '\\\\'))}\n`;
      }
    }
  }
  await pipeline(Readable.from(lines()), copy);
  await client.query('commit');
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { resources: rows, seconds: +seconds.toFixed(2), resources_per_s: Math.round(rows / seconds), mb_per_s: +(megabytes / seconds).toFixed(2) };
}
