import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../../test/helpers/db.js';
import type { Database } from '../db/connection.js';
import { writeCsv, type CsvFormat } from '../io/csv.js';
import { copyCsv, copyWrites, CsvRecords, withSettings } from './copy-out.js';
import { ReadTransaction } from './query.js';

/** Everything written to a stream, as one string. */
function sink(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(Buffer.from(chunk));
      done();
    },
  });
  return Object.assign(out, { text: () => Buffer.concat(chunks).toString('utf8') });
}

describe('COPY CSV bytes as carepipe writes them', () => {
  const copied = 'a,b\n1,"x\ny"\n"",\n"q""\n""",z\n';

  it('turns record ends outside quoted fields into CRLF, wherever the chunks are cut, and counts the records', async () => {
    for (let cut = 0; cut <= copied.length; cut++) {
      const records = new CsvRecords({ eol: '\r\n' });
      const out = sink();
      const done = new Promise((resolve) => out.on('finish', resolve));
      records.pipe(out);
      records.write(Buffer.from(copied.slice(0, cut)));
      records.end(Buffer.from(copied.slice(cut)));
      await done;
      expect(out.text()).toBe('a,b\r\n1,"x\ny"\r\n"",\r\n"q""\n""",z\r\n');
      expect(records.rows).toBe(3);
    }
  });

  it('leaves LF as it is and puts a BOM first when asked', async () => {
    const records = new CsvRecords({ eol: '\n', bom: true });
    const out = sink();
    const done = new Promise((resolve) => out.on('finish', resolve));
    records.pipe(out);
    records.end(Buffer.from(copied));
    await done;
    expect(out.text()).toBe(`\ufeff${copied}`);
  });

  it('takes bindings as transaction settings, identifiers quoted, `\\?` as a question mark', () => {
    expect(withSettings({ sql: 'select ? from ?? where x ~ \'a\\?\' and y = ? and z = ?::date and w = ?', bindings: ['v1', 'my.table', 3, '2026-01-02', null] })).toEqual({
      sql: `select current_setting('carepipe.export_1') from "my"."table" where x ~ 'a?' and y = (3) and z = current_setting('carepipe.export_2')::date and w = null`,
      settings: ['v1', '2026-01-02'],
    });
  });

  it('is used only where Postgres writes the same bytes: a one-byte delimiter, more than one column', () => {
    expect(copyWrites({}, 2)).toBe(true);
    expect(copyWrites({ delimiter: '\t' }, 2)).toBe(true);
    expect(copyWrites({ delimiter: '§' }, 2)).toBe(false);
    expect(copyWrites({}, 1)).toBe(false);
  });
});

describe('COPY TO STDOUT on the Postgres server', () => {
  let t: TestDatabase;
  let db: Database;
  beforeAll(async () => {
    t = await createTestDatabase('postgres');
    db = await t.connect();
  });
  afterAll(async () => {
    await db?.close();
    await t?.cleanup();
  });

  // Values Postgres and csv-stringify might quote differently.
  const select = {
    sql: `select * from (values ('plain', 'a,b'), ('', null), ('say "hi"', E'two\\nlines'), (E'cr\\r', ' lead'), ('tab\tin', 'semi;colon'), ('\\.', 'Zoë')) as v("first col", second)`,
    bindings: [],
  };

  async function viaCopy(format: CsvFormat): Promise<string> {
    const read = await ReadTransaction.begin(db.knex, { timezone: 'UTC' });
    try {
      const out = sink();
      const rows = await copyCsv(db.knex, read.trx, select, out, format);
      expect(rows).toBe(6);
      return out.text();
    } finally {
      await read.end(true);
    }
  }

  async function viaStringify(format: CsvFormat): Promise<string> {
    const result = (await db.knex.raw(select.sql).options({ rowMode: 'array' })) as { rows: (string | null)[][] };
    const out = sink();
    await writeCsv(
      (async function* () {
        yield result.rows;
      })(),
      ['first col', 'second'],
      out,
      format,
    );
    return out.text();
  }

  it.each([{}, { eol: '\n' as const }, { delimiter: ';', bom: true }, { delimiter: '\t' }])('writes the bytes csv-stringify writes (%j)', async (format) => {
    expect(await viaCopy(format)).toBe(await viaStringify(format));
  });

  it('stops a COPY whose output fails and leaves the transaction to roll back', async () => {
    const read = await ReadTransaction.begin(db.knex, { timezone: 'UTC' });
    const failing = new Writable({
      write(_chunk, _encoding, done) {
        done(Object.assign(new Error('reader went away'), { code: 'EPIPE' }));
      },
    });
    const big = { sql: 'select i, md5(i::text) from generate_series(1, 5000000) as i', bindings: [] };
    await expect(copyCsv(db.knex, read.trx, big, failing, {})).rejects.toThrow('reader went away');
    // Cancelled, not read to its end: the server stopped it, and the transaction ends as usual.
    const stats = (await db.knex.raw("select count(*)::int as n from pg_stat_activity where query like 'COPY (select i, md5%' and state = 'active'")) as {
      rows: { n: number }[];
    };
    expect(stats.rows[0]!.n).toBe(0);
    await read.end(false);
    const after = (await db.knex.raw('select 42 as n')) as { rows: { n: number }[] };
    expect(after.rows[0]!.n).toBe(42);
  });
});
