import { describe, expect, it } from 'vitest';
import { BACKENDS, useTestDatabase } from '../../test/helpers/db.js';
import { bulkInsert } from './copy.js';

describe.each(BACKENDS)('bulkInsert on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  it('writes awkward values exactly, and only when the transaction commits', async () => {
    const { knex, kind } = ctx.db;
    await knex.schema.createTable('copy_target', (t) => {
      t.integer('n');
      t.text('s');
      t.boolean('b');
      t.jsonb('j');
      t.timestamp('ts', { useTz: true });
    });
    const rows = [
      [1, 'tab\there', true, { a: 'back\\slash', nl: 'x\ny' }, new Date('2024-03-01T10:00:00Z')],
      [2, "Hélène D'Artagnan — 日本語\r\nline", false, [1, 'two'], null],
      [3, null, null, null, new Date('1999-12-31T23:59:59.500Z')],
      [4, '\\N', true, '"a json string"', null],
    ];
    const columns = ['n', 's', 'b', 'j', 'ts'];
    await expect(
      knex.transaction(async (trx) => {
        await bulkInsert(trx, kind, 'copy_target', columns, rows);
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(await knex('copy_target').count<{ c: number }[]>('* as c')).toEqual([{ c: 0 }]);

    const written = await knex.transaction((trx) => bulkInsert(trx, kind, 'copy_target', columns, rows));
    expect(written).toBe(4);
    const back = await knex('copy_target').orderBy('n');
    expect(back.map((r) => [r.n, r.s, r.b, r.j, r.ts === null ? null : new Date(r.ts).toISOString()])).toEqual([
      rows[0]!.slice(0, 4).concat('2024-03-01T10:00:00.000Z'),
      rows[1]!.slice(0, 4).concat(null),
      [3, null, null, null, '1999-12-31T23:59:59.500Z'],
      [4, '\\N', true, 'a json string', null],
    ]);
  });

  it('streams more rows than fit in one statement', async () => {
    const { knex, kind } = ctx.db;
    await knex.schema.createTable('many', (t) => {
      t.integer('n');
      t.text('s');
    });
    function* gen() {
      for (let i = 0; i < 70_000; i++) yield [i, `row ${i}`];
    }
    const written = await knex.transaction((trx) => bulkInsert(trx, kind, 'many', ['n', 's'], gen()));
    expect(written).toBe(70_000);
    expect(await knex('many').select(knex.raw('count(*)::int as c, sum(n)::bigint as s')).first()).toEqual({
      c: 70_000,
      s: (69_999 * 70_000) / 2,
    });
  });
});
