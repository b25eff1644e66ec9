import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, createTestDatabase, type TestDatabase } from '../../test/helpers/db.js';
import type { Database } from '../db/connection.js';
import { cellSql, type CellPlan } from './cell-sql.js';
import { withSettings } from './copy-out.js';
import type { ValueKind } from './format.js';
import { cellMaker } from './pipeline.js';
import { applyProfile, type BirthDateTreatment } from './profile.js';
import { ReadTransaction } from './query.js';
import type { Treatment } from './treatments.js';

const KEY = 'cell-sql-test-key-0123456789';

interface Case {
  kind: ValueKind;
  /** SQL values of the column (one per row) and the row's patient key. */
  values: string[];
  treatment?: Treatment;
  birthDate?: BirthDateTreatment;
  timezone?: string;
}

const TEXTS = [`''`, `'=1+1'`, `'-x'`, `'+x'`, `'@a'`, `E'\\tx'`, `E'\\rx'`, `'plain'`, `'a,b'`, `'a"b'`, `E'line\\nbreak'`, `'Zoë'`, 'null'];
const CASES: Case[] = [
  { kind: 'text', values: TEXTS },
  { kind: 'number', values: [`-3.50::numeric`, `12345678901234567890::numeric`, `-1::int`, 'null'] },
  { kind: 'boolean', values: ['true', 'false', 'null::boolean'] },
  {
    kind: 'timestamptz',
    values: [`'2026-11-23 10:00:00.5+00'::timestamptz`, `'2026-07-01 10:00+00'::timestamptz`, `'-infinity'::timestamptz`, `'infinity'::timestamptz`, `'0044-03-15 10:00+00 BC'::timestamptz`, `'1800-01-01 10:00+00'::timestamptz`],
    timezone: 'Europe/London',
  },
  { kind: 'timestamptz', values: [`'2026-11-23 10:00:00.123456+00'::timestamptz`, `'1883-11-18 12:00+00'::timestamptz`], timezone: 'America/New_York' },
  { kind: 'timestamptz', values: [`'2026-11-23 10:00:00+00'::timestamptz`], timezone: 'Asia/Kolkata' },
  { kind: 'timestamp', values: [`'2026-11-23 10:00:00'::timestamp`, `'-infinity'::timestamp`, `'0044-03-15 10:00 BC'::timestamp`] },
  {
    kind: 'json',
    values: [`'{"a b": [1, 2.50, "x \\" y"], "c" : {"d":null}}'::jsonb`, `'-3'::jsonb`, `'"=x"'::jsonb`, 'null::jsonb'],
  },
  { kind: 'json', values: [`E'{ "a" :\\n\\t[1,  2], "b": "  s  " }'::json`, `' -1 '::json`] },
  { kind: 'array', values: [`'{1,2}'::int[]`] },
  { kind: 'array', values: [`'{"a b",NULL,"=x"}'::text[]`] },
  { kind: 'text', values: [`'2020-05-01'::date`] },
  { kind: 'text', values: [`'PT1H'::interval`] },
  { kind: 'text', values: [`'\\x00ff'::bytea`] },
  { kind: 'text', treatment: 'pseudonym', values: [`'pat-1'`, `'Zoë'`, `''`, 'null'] },
  { kind: 'timestamptz', treatment: 'pseudonym', values: [`'2026-11-23 10:00:00+00'::timestamptz`] },
  { kind: 'text', treatment: 'year', values: [`'2020-05-01'`, `'2020'`, `'20201'`, `'abc'`, `'2020-'`, 'null'] },
  { kind: 'text', treatment: 'birth_date', values: [`'1970-06-30'`, `'1970'`] },
  { kind: 'timestamptz', treatment: 'year', values: [`'2026-11-23 10:00:00+00'::timestamptz`] },
  {
    kind: 'text',
    treatment: 'postcode_outward',
    values: [`'N6 2FA'`, `'sw1a1aa'`, `'  n6   2fa '`, `'N6'`, `'ß'`, `'n6 2ﬀ'`, `'ı6'`, `E'\\u00a0N6\\u3000 2FA\\ufeff'`, `'not a postcode'`, `'ñ6 2FA'`, `''`, 'null'],
  },
  {
    kind: 'text',
    treatment: 'date_shift',
    values: [`'2020-05-01'`, `'2020-05'`, `'2020'`, `'2020-05-01T10:00:00+01:00'`, `'2020-05-01 10:00'`, `'2020-13-45'`, `'2020-00-00'`, `'0000-01-15'`, `'0001-02-01'`, `'0099-03-01'`, `'9999-12-31'`, `'garbage'`, `'2020-05-1'`, `E'2020-05-01T10\\n'`, `''`, 'null'],
  },
  { kind: 'timestamptz', treatment: 'date_shift', values: [`'2026-11-23 10:00:00.5+00'::timestamptz`, `'-infinity'::timestamptz`] },
  { kind: 'text', treatment: 'birth_date', birthDate: 'shift', values: [`'1970-06-30'`, `'1970'`] },
];
const PATIENTS = [`'pat-1'`, `'Zoë'`, 'null', `''`];

describe.each(BACKENDS)('cells made by the database equal the Node cells (%s)', (backend) => {
  let t: TestDatabase;
  let db: Database;
  beforeAll(async () => {
    t = await createTestDatabase(backend);
    db = await t.connect();
  });
  afterAll(async () => {
    await db?.close();
    await t?.cleanup();
  });

  async function compare(c: Case, formulaGuard: boolean, settings: boolean): Promise<void> {
    const profile = c.treatment ? 'research' : 'clinical';
    const rows = c.values.flatMap((v) => (c.treatment ? PATIENTS.map((p) => `(${v}, ${p})`) : [`(${v}, null)`]));
    const plan: CellPlan = { profile, pseudonymKey: KEY, birthDate: c.birthDate, formulaGuard, patientKey: { sql: 'q.p', bindings: [] } };
    const cell = cellSql({ name: 'c', kind: c.kind, treatment: c.treatment ?? 'keep' }, plan)!;
    const raw = c.kind === 'array' ? 'to_json(q.c)::text' : 'q.c::text';
    let query = { sql: `select ${raw}, q.p::text, ${cell.sql} from (values ${rows.join(', ')}) as q(c, p)`, bindings: cell.bindings };
    const read = await ReadTransaction.begin(db.knex, { timezone: c.timezone ?? 'UTC' });
    try {
      if (settings) {
        // as COPY runs it: the bindings read back from transaction-local settings
        const inlined = withSettings(query);
        for (const [i, value] of inlined.settings.entries()) await read.trx.raw(`select set_config('carepipe.export_${i + 1}', ?, true)`, [value]);
        // (escaped again for knex: COPY is sent to pg as it is)
        query = { sql: inlined.sql.replace(/\?/g, '\\?'), bindings: [] };
      }
      const result = (await read.trx.raw(query.sql, query.bindings as never[]).options({ rowMode: 'array' })) as { rows: (string | null)[][] };
      const profiled = applyProfile([{ name: 'c', treatment: c.treatment ?? 'keep' }], { profile, pseudonymKey: KEY, source: 't', birthDate: c.birthDate });
      const toCells = cellMaker(profiled, [c.kind], formulaGuard, false, 1);
      const expected = result.rows.map((r) => toCells([r[0], r[1]])[0] ?? null);
      expect(result.rows.map((r) => r[2])).toEqual(expected);
    } finally {
      await read.end(true);
    }
  }

  it.each(CASES.map((c, i) => [`${i} ${c.kind} ${c.treatment ?? 'clinical'}`, c] as const))('%s', async (_label, c) => {
    await compare(c, true, false);
    await compare(c, false, true);
  });
});
