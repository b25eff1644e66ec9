import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from '../../test/helpers/db.js';
import { claim, complete, enqueue, queueCounts, release, renew } from './work-queue.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(BACKENDS)('work queue on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  it('enqueues each unit once and hands every unit to exactly one worker', async () => {
    const knex = ctx.db.knex;
    expect(await enqueue(knex, 'q', [{ key: 'a' }, { key: 'b' }, { key: 'c', payload: { size: 3 } }])).toBe(3);
    expect(await enqueue(knex, 'q', [{ key: 'a' }, { key: 'd' }])).toBe(1);
    // Concurrent claims (several pool connections on the server): no unit twice, none left out.
    const claims = await Promise.all(Array.from({ length: 6 }, (_, i) => claim(knex, 'q', `w${i}`, 60_000)));
    const keys = claims.filter((c) => c !== undefined).map((c) => c!.unit_key);
    expect(keys.sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(claims.find((c) => c?.unit_key === 'c')?.payload).toEqual({ size: 3 });
    expect(await claim(knex, 'q', 'late', 60_000)).toBeUndefined();
    expect(await queueCounts(knex, 'q')).toEqual({ pending: 0, claimed: 4, done: 0, failed: 0 });
  });

  it('marks a unit done only when the transaction that wrote its rows commits', async () => {
    const knex = ctx.db.knex;
    await knex.schema.createTable('payload_rows', (t) => t.text('k'));
    await enqueue(knex, 'q', [{ key: 'f1' }]);
    const unit = (await claim(knex, 'q', 'w1', 60_000))!;
    await expect(
      knex.transaction(async (trx) => {
        await trx('payload_rows').insert({ k: 'x' });
        expect(await complete(trx, unit, null)).toBe(true);
        throw new Error('crash before commit');
      }),
    ).rejects.toThrow('crash before commit');
    expect(await knex('payload_rows').count<{ count: number }[]>('* as count')).toEqual([{ count: 0 }]);
    expect(await queueCounts(knex, 'q')).toMatchObject({ claimed: 1, done: 0 });
    await knex.transaction(async (trx) => {
      await trx('payload_rows').insert({ k: 'x' });
      expect(await complete(trx, unit, null)).toBe(true);
    });
    expect(await queueCounts(knex, 'q')).toMatchObject({ claimed: 0, done: 1 });
  });

  it("returns a dead worker's unit after its lease, and the late worker cannot complete it", async () => {
    const knex = ctx.db.knex;
    await enqueue(knex, 'q', [{ key: 'f1' }]);
    const dead = (await claim(knex, 'q', 'dead', 200))!;
    expect(await claim(knex, 'q', 'other', 60_000)).toBeUndefined();
    await sleep(400);
    const taken = (await claim(knex, 'q', 'other', 60_000))!;
    expect(taken.unit_key).toBe('f1');
    expect(taken.attempts).toBe(2);
    expect(await renew(knex, dead, 60_000)).toBe(false);
    expect(await knex.transaction((trx) => complete(trx, dead, null))).toBe(false);
    expect(await renew(knex, taken, 60_000)).toBe(true);
    expect(await knex.transaction((trx) => complete(trx, taken, null))).toBe(true);
  });

  it('gives a failed unit back for another attempt, then marks it failed', async () => {
    const knex = ctx.db.knex;
    await enqueue(knex, 'q', [{ key: 'bad' }]);
    for (let attempt = 1; attempt <= 2; attempt++) {
      const unit = (await claim(knex, 'q', 'w', 60_000, { maxAttempts: 2 }))!;
      expect(unit.attempts).toBe(attempt);
      await release(knex, unit, `boom ${attempt}`, 2);
    }
    expect(await claim(knex, 'q', 'w', 60_000, { maxAttempts: 2 })).toBeUndefined();
    expect(await queueCounts(knex, 'q')).toMatchObject({ failed: 1 });
    expect(await knex('work_items').first('last_error')).toEqual({ last_error: 'boom 2' });
  });
});
