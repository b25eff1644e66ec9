#!/usr/bin/env node
// Row history cost on a 10k-row upsert: no history, row-level triggers, statement-level triggers with
// transition tables; on the embedded database and on the Postgres server (DATABASE_URL, else the
// test server). Each upsert is one statement, as a bulk load writes it. Needs `npm run build`.
// Prints one line per backend and mode, then one JSON line of figures (milliseconds).
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { MEMORY, openDatabase } from '../dist/src/db/connection.js';
import { migrateLatest } from '../dist/src/db/migrations.js';
import { attachHistory } from '../dist/src/db/history.js';
import { resolveSettings } from '../dist/src/config.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const url = process.env.DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function resources(version) {
  return Array.from({ length: ROWS }, (_, i) => ({
    id: `p${i}`,
    resource: { resourceType: 'Patient', id: `p${i}`, meta: { versionId: String(version) }, name: [{ family: `Family${i}`, given: ['Ann', 'Marie'] }], birthDate: '1970-01-01', gender: i % 2 ? 'male' : 'female' },
    content_hash: `${i}-${version}`,
  }));
}

const UPSERT = `insert into bench_history (id, resource, content_hash)
  select id, resource, content_hash from jsonb_to_recordset(?::jsonb) as r(id text, resource jsonb, content_hash text)
  on conflict (id) do update set resource = excluded.resource, content_hash = excluded.content_hash
  where bench_history.content_hash is distinct from excluded.content_hash`;

async function timed(fn) {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function measure(db, mode) {
  const { knex } = db;
  const best = { insert: Infinity, update: Infinity, delete: Infinity };
  const first = JSON.stringify(resources(1));
  const second = JSON.stringify(resources(2));
  for (let round = 0; round < ROUNDS; round++) {
    await knex.raw('drop table if exists bench_history');
    await knex.raw('create table bench_history (id text primary key, resource jsonb not null, content_hash text not null)');
    if (mode !== 'none') await attachHistory(knex, 'bench_history', ['id'], { mode });
    await knex.raw('delete from row_history');
    const run = (sql, bindings) =>
      knex.transaction(async (trx) => {
        await trx.raw(`select set_config('carepipe.run_id', '1', true)`);
        await trx.raw(sql, bindings);
      });
    best.insert = Math.min(best.insert, await timed(() => run(UPSERT, [first])));
    best.update = Math.min(best.update, await timed(() => run(UPSERT, [second])));
    best.delete = Math.min(best.delete, await timed(() => run('delete from bench_history', [])));
    const [{ n }] = (await knex.raw('select count(*)::int as n from row_history')).rows;
    if (mode !== 'none' && n !== 3 * ROWS) throw new Error(`${mode}: expected ${3 * ROWS} history rows, found ${n}`);
  }
  await knex.raw('drop table if exists bench_history');
  await knex('row_history_tables').where({ table_name: 'bench_history' }).delete();
  return Object.fromEntries(Object.entries(best).map(([k, v]) => [k, Math.round(v)]));
}

const figures = { rows: ROWS, rounds: ROUNDS };
for (const backend of ['pglite', 'postgres']) {
  const schema = `bench_${randomBytes(4).toString('hex')}`;
  const settings =
    backend === 'pglite'
      ? // resolveSettings makes a path of --data-dir, so the in-memory database is asked for here
        { ...resolveSettings({}, {}, process.cwd()), dataDir: MEMORY }
      : resolveSettings({ databaseUrl: url, dbSchema: schema }, {}, process.cwd());
  const db = await openDatabase(settings);
  try {
    await migrateLatest(db);
    for (const mode of ['none', 'row', 'statement']) {
      const ms = await measure(db, mode);
      figures[`${backend}_${mode}`] = ms;
      console.log(`${backend} ${mode.padEnd(9)} upsert ${ROWS} new: ${ms.insert} ms, upsert ${ROWS} changed: ${ms.update} ms, delete ${ROWS}: ${ms.delete} ms (best of ${ROUNDS})`);
    }
  } finally {
    if (backend === 'postgres') await db.knex.raw('drop schema if exists ?? cascade', [schema]);
    await db.close();
  }
}
console.log(JSON.stringify(figures));
