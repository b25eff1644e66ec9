/**
 * The engine on both back ends, with a real table: counts, rejects from each stage, the dry run,
 * interruption after a committed batch, a value the database refuses, a failing reader, `finish`.
 */
import { describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { BACKENDS, useTestDatabase } from '../../test/helpers/db.js';
import { RunLedger } from '../db/ledger.js';
import { CarepipeError } from '../errors.js';
import { migrationConfig } from '../db/migrations.js';
import { run, type Outcome, type Pipeline, type ReadItem } from './run.js';

interface Rec {
  id?: string;
  n?: number;
}

const TABLE = 'engine_test_items';

/** A pipeline over `records` into TABLE: n missing is the mapper's reject, n < 0 the writer's. */
function pipeline(records: (Rec | 'bad')[], extra: Partial<Pipeline<Rec, Required<Rec>, string>> = {}): Pipeline<Rec, Required<Rec>, string> {
  return {
    name: 'test',
    batchSize: 3,
    async *read(): AsyncIterable<ReadItem<Rec, string>> {
      let entry = 0;
      for (const r of records) {
        entry += 1;
        if (r === 'bad') yield { kind: 'invalid', at: { source: 'in.json', entry }, reject: { reason: 'INVALID_JSON', message: 'not JSON' } };
        else yield { kind: 'record', record: r, at: { source: 'in.json', entry } };
      }
    },
    map(r) {
      if (r.n === undefined) return { ok: false, reason: 'MISSING_FIELD', field: 'n', message: 'n is missing', key: r.id, raw: r };
      return { ok: true, value: { id: r.id!, n: r.n }, key: r.id, raw: r };
    },
    async write(trx, batch, ctx) {
      const outcomes: Outcome[] = [];
      for (const { value } of batch.items) {
        if (value.n < 0) {
          outcomes.push({ reject: { reason: 'INVALID_VALUE', field: 'n', message: 'n is negative' } });
          continue;
        }
        const { rows } = await trx.raw<{ rows: unknown[] }>(
          `insert into ${TABLE} (id, n, run_id) values (?, ?, ?)
           on conflict (id) do update set n = excluded.n, run_id = excluded.run_id where ${TABLE}.n is distinct from excluded.n
           returning id`,
          [value.id, value.n, ctx.runId],
        );
        outcomes.push(rows.length ? 'written' : 'unchanged');
      }
      return { outcomes };
    },
    ...extra,
  };
}

async function rows(knex: Knex) {
  return (await knex(TABLE).orderBy('id').select('id', 'n')).map((r) => `${r.id}=${r.n}`);
}

async function rejects(knex: Knex, runId: number) {
  return (await knex('rejects').where({ run_id: runId }).orderBy('id').select('entry', 'reason_code', 'field')).map(
    (r) => `${r.entry}:${r.reason_code}:${r.field ?? ''}`,
  );
}

for (const backend of BACKENDS) {
  describe(`pipeline engine on ${backend}`, () => {
    const ctx = useTestDatabase(backend);
    const setUp = async () => {
      await ctx.db.knex.raw(`create table ${TABLE} (id text primary key, n integer not null, run_id bigint)`);
      return RunLedger.start(ctx.db.knex, { command: 'test', args: [], user: 'tester' });
    };
    const options = (ledger: RunLedger, signal = new AbortController().signal) => ({ knex: ctx.db.knex, ledger, signal, dryRun: false });

    it('writes good records, keeps each stage’s rejects in source order, and counts once committed', async () => {
      const ledger = await setUp();
      const input: (Rec | 'bad')[] = [{ id: 'a', n: 1 }, 'bad', { id: 'b' }, { id: 'c', n: -1 }, { id: 'd', n: 4 }, { id: 'e', n: 5 }, { id: 'a', n: 1 }];
      const summary = await run(pipeline(input), options(ledger));
      expect(await rows(ctx.db.knex)).toEqual(['a=1', 'd=4', 'e=5']);
      expect(await rejects(ctx.db.knex, ledger.id)).toEqual(['2:INVALID_JSON:', '3:MISSING_FIELD:n', '4:INVALID_VALUE:n']);
      expect(summary).toMatchObject({ read: 7, written: 3, unchanged: 1, rejected: 3 });
      expect(ledger.counts).toEqual({ read: 7, written: 3, unchanged: 1, rejected: 3 });

      // The same input again leaves the same rows.
      const again = await RunLedger.start(ctx.db.knex, { command: 'test', args: [], user: 'tester' });
      const second = await run(pipeline(input), options(again));
      expect(second).toMatchObject({ read: 7, written: 0, unchanged: 4, rejected: 3 });
      expect(await rows(ctx.db.knex)).toEqual(['a=1', 'd=4', 'e=5']);
    });

    it('a repeated key starts a new batch, so the second copy wins', async () => {
      const ledger = await setUp();
      const summary = await run(pipeline([{ id: 'a', n: 1 }, { id: 'a', n: 2 }], { batchSize: 10 }), options(ledger));
      expect(summary).toMatchObject({ batches: 2, written: 2 });
      expect(await rows(ctx.db.knex)).toEqual(['a=2']);
    });

    it('a dry run gives the real counts and keeps nothing', async () => {
      await setUp();
      const ledger = await RunLedger.start(ctx.db.knex, { command: 'test', args: [], user: 'tester', dryRun: true });
      let finishedWith: number | undefined;
      const summary = await run(
        pipeline([{ id: 'a', n: 1 }, { id: 'b' }, { id: 'c', n: 3 }, { id: 'd', n: 4 }], {
          async prepare(stage) {
            await stage.q(TABLE).insert({ id: 'c', n: 3 });
          },
          async finish(trx) {
            finishedWith = Number((await trx(TABLE).count<{ n: number }[]>({ n: '*' }))[0]!.n);
            return 0;
          },
        }),
        { ...options(ledger), dryRun: true },
      );
      expect(summary).toMatchObject({ read: 4, written: 2, unchanged: 1, rejected: 1 });
      // finish saw every batch (inside the one transaction); afterwards nothing is left.
      expect(finishedWith).toBe(3);
      expect(await rows(ctx.db.knex)).toEqual([]);
      expect(Number((await ctx.db.knex('rejects').count<{ n: number }[]>({ n: '*' }))[0]!.n)).toBe(0);
    });

    it('stops after the batch being read when the signal fires, keeps what committed, and a rerun finishes', async () => {
      const ledger = await setUp();
      const controller = new AbortController();
      const input = Array.from({ length: 12 }, (_, i) => ({ id: `r${String(i).padStart(2, '0')}`, n: i }));
      let finished = false;
      const stopping = pipeline(input, {
        async write(trx, batch, stage) {
          const result = await pipeline(input).write(trx, batch, stage);
          controller.abort(new Error('SIGINT'));
          return result;
        },
        async finish() {
          finished = true;
          return 0;
        },
      });
      const err = await run(stopping, options(ledger, controller.signal)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CarepipeError);
      expect((err as CarepipeError).code).toBe('INTERRUPTED');
      expect((err as CarepipeError).exitCode).toBe(130);
      expect(finished).toBe(false);
      const kept = await rows(ctx.db.knex);
      // Whole batches of 3 only, and fewer than all of them.
      expect(kept.length % 3).toBe(0);
      expect(kept.length).toBeGreaterThan(0);
      expect(kept.length).toBeLessThan(12);
      expect(ledger.counts.written).toBe(kept.length);

      const again = await RunLedger.start(ctx.db.knex, { command: 'test', args: [], user: 'tester' });
      const summary = await run(pipeline(input), options(again));
      expect(summary).toMatchObject({ read: 12, written: 12 - kept.length, unchanged: kept.length });
      expect((await rows(ctx.db.knex)).length).toBe(12);
    });

    it('finds a value the database refuses by halving, and rejects it alone', async () => {
      const ledger = await setUp();
      const input = [{ id: 'a', n: 1 }, { id: 'b', n: 2 ** 40 }, { id: 'c', n: 3 }];
      const summary = await run(pipeline(input), options(ledger));
      expect(await rows(ctx.db.knex)).toEqual(['a=1', 'c=3']);
      expect(await rejects(ctx.db.knex, ledger.id)).toEqual(['2:DATABASE_REFUSED:']);
      const [kept] = await ctx.db.knex('rejects').where({ run_id: ledger.id }).select('record_key', 'raw', 'message');
      expect(kept.record_key).toBe('b');
      expect(JSON.parse(kept.raw)).toEqual({ id: 'b', n: 2 ** 40 });
      expect(kept.message).toMatch(/SQLSTATE 22003/);
      expect(summary).toMatchObject({ read: 3, written: 2, rejected: 1 });
    });

    it('a reader that fails keeps the committed batches and passes its error on', async () => {
      const ledger = await setUp();
      const failing = pipeline([], {
        async *read() {
          for (let i = 0; i < 4; i++) yield { kind: 'record', record: { id: `x${i}`, n: i }, at: { source: 'api', entry: i + 1 } };
          throw new CarepipeError('SOURCE_UNREACHABLE', 'the source went away');
        },
      });
      await expect(run(failing, options(ledger))).rejects.toMatchObject({ code: 'SOURCE_UNREACHABLE' });
      expect(await rows(ctx.db.knex)).toEqual(['x0=0', 'x1=1', 'x2=2']);
    });

    it('checkpoints close their batch and commit with it', async () => {
      const ledger = await setUp();
      const seen: string[][] = [];
      const withCheckpoints = pipeline([], {
        batchSize: 100,
        async *read() {
          yield { kind: 'record', record: { id: 'a', n: 1 }, at: { source: 'f1' } };
          yield { kind: 'checkpoint', state: 'f1' };
          yield { kind: 'record', record: { id: 'b', n: 2 }, at: { source: 'f2' } };
          yield { kind: 'checkpoint', state: 'f2' };
        },
        async write(trx, batch, stage) {
          seen.push([...batch.items.map((i) => i.value.id), ...batch.checkpoints]);
          return pipeline([]).write(trx, batch, stage);
        },
      });
      const summary = await run(withCheckpoints, options(ledger));
      expect(seen).toEqual([['a', 'f1'], ['b', 'f2']]);
      expect(summary).toMatchObject({ checkpoints: 2, batches: 2 });
    });
  });
}

describe('migration 20261207_000: one spelling per reject reason', () => {
  const ctx = useTestDatabase('pglite');
  it('renames the old codes of the commands that used them, and rollback restores them', async () => {
    const { knex } = ctx.db;
    const config = { ...migrationConfig, name: '20261207_000_reject_reasons' };
    await knex.migrate.down(config);
    const ledger = await RunLedger.start(knex, { command: 'import-clinicians', args: [], user: 'tester' });
    const row = (command: string, reason_code: string) => ({ run_id: ledger.id, command, source: 's', reason_code, message: 'm', retryable: false });
    await knex('rejects').insert([
      row('import-clinicians', 'ID_MISSING'),
      row('ingest-appointments', 'FIELD_MISSING'),
      row('directory-lookup', 'MISSING_FIELD'),
    ]);
    const codes = async () => (await knex('rejects').orderBy('id').select('command', 'reason_code')).map((r) => `${r.command}:${r.reason_code}`);
    await knex.migrate.up(config);
    expect(await codes()).toEqual(['import-clinicians:MISSING_ID', 'ingest-appointments:MISSING_FIELD', 'directory-lookup:MISSING_FIELD']);
    await knex.migrate.down(config);
    expect(await codes()).toEqual(['import-clinicians:ID_MISSING', 'ingest-appointments:FIELD_MISSING', 'directory-lookup:MISSING_FIELD']);
  });
});
