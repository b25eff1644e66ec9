import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RunLedger } from '../db/ledger.js';
import { ensureFlatTable } from './write/flat-table.js';
import { BACKENDS, useTestDatabase } from '../../test/helpers/db.js';
import { run as runPipeline } from '../pipeline/run.js';
import type { FhirItem } from './read/item.js';
import { engineItems, type CheckpointHandler } from './read/source.js';
import { ingestPipeline } from './command.js';
import type { FlatView } from './views.js';
import { compileView } from './view/index.js';
import { loadShippedViews, tableSpecOf, tablesOf } from './views.js';

const views = loadShippedViews();

async function* itemsOf(list: FhirItem[]): AsyncIterable<FhirItem> {
  yield* list;
}

function patient(id: string, extra: Record<string, unknown> = {}) {
  return { kind: 'resource', source: 'mem.ndjson', line: 1, resource: { resourceType: 'Patient', id, gender: 'female', ...extra } } as Extract<FhirItem, { kind: 'resource' }>;
}

interface RunOptions {
  batchSize?: number;
  views?: FlatView[];
  onCheckpoint?: CheckpointHandler;
  dryRun?: boolean;
}

describe.each(BACKENDS)('ingest pipeline on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  async function run(list: FhirItem[], options: RunOptions = {}) {
    const dryRun = options.dryRun ?? false;
    const ledger = await RunLedger.start(ctx.db.knex, { command: 'ingest-fhir', args: [], user: 'test', dryRun });
    const pipeline = ingestPipeline({
      kind: ctx.db.kind,
      views: options.views ?? views,
      batchSize: options.batchSize ?? 2,
      read: () => engineItems(itemsOf(list), options.onCheckpoint ?? (async () => undefined)),
    });
    const summary = await runPipeline(pipeline, { knex: ctx.db.knex, ledger, signal: new AbortController().signal, dryRun });
    return { result: { types: summary.groups }, ledger };
  }
  const patients = () => ctx.db.knex('patient').select('id', 'gender', 'birth_date').orderBy('id');
  const stored = (id: string) => ctx.db.knex('fhir_resources').where({ resource_type: 'Patient', id }).first();

  it('writes fhir_resources and flat rows, and counts a second identical copy as unchanged', async () => {
    const list = [patient('a'), patient('b', { birthDate: '1970-01-02' }), patient('c')];
    const first = await run(list);
    expect(first.result.types.Patient).toEqual({ read: 3, written: 3, unchanged: 0, rejected: 0, deleted: 0 });
    expect(await patients()).toEqual([
      { id: 'a', gender: 'female', birth_date: null },
      { id: 'b', gender: 'female', birth_date: '1970-01-02' },
      { id: 'c', gender: 'female', birth_date: null },
    ]);
    const row = await stored('b');
    expect(row.resource).toEqual(list[1]!.resource);
    expect(row.run_id).toBe(first.ledger.id);
    const second = await run(list);
    expect(second.result.types.Patient).toEqual({ read: 3, written: 0, unchanged: 3, rejected: 0, deleted: 0 });
    expect((await stored('b')).run_id).toBe(first.ledger.id);
  });

  it('stores the text a reader hands on as it came, and counts an equal copy written otherwise as unchanged', async () => {
    const text = '{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"weight"},"valueQuantity":{"value":71.50,"unit":"kg"}}';
    const asRead = { kind: 'resource', source: 'obs.ndjson', line: 1, resource: JSON.parse(text), text } as Extract<FhirItem, { kind: 'resource' }>;
    const first = await run([asRead]);
    expect(first.result.types.Observation).toMatchObject({ written: 1 });
    const row = await ctx.db.knex('fhir_resources').where({ resource_type: 'Observation', id: 'o1' }).first();
    expect(row.content_hash).toBe(createHash('sha256').update(text).digest('base64url')); // the text's, as read
    // every digit of the decimal kept (JSON.stringify of the parsed resource would give 71.5)
    const digits = await ctx.db.knex.raw(`select resource #>> '{valueQuantity,value}' as v from fhir_resources where id = 'o1'`);
    expect(digits.rows[0].v).toBe('71.50');
    const history = () => ctx.db.knex('row_history').where({ table_name: 'fhir_resources', row_key: 'Observation/o1' }).count<{ count: string }[]>('* as count');
    // a first insert stores no image: the row is its own first version
    expect(Number((await history())[0]!.count)).toBe(0);
    // The same resource from a Bundle (serialised again: 71.5, another order of keys, spaces): equal
    // JSON, so unchanged, not written, no history row.
    const reordered = { kind: 'resource', source: 'b.json', entry: 0, resource: { id: 'o1', resourceType: 'Observation', valueQuantity: { unit: 'kg', value: 71.5 }, code: { text: 'weight' }, status: 'final' } } as Extract<FhirItem, { kind: 'resource' }>;
    const second = await run([reordered, { ...asRead, text: text.replace(/,/g, ', ') }]);
    expect(second.result.types.Observation).toEqual({ read: 2, written: 0, unchanged: 2, rejected: 0, deleted: 0 });
    expect(Number((await history())[0]!.count)).toBe(0);
    // A real change still writes.
    const changed = await run([{ ...asRead, text: text.replace('71.50', '72'), resource: JSON.parse(text.replace('71.50', '72')) }]);
    expect(changed.result.types.Observation).toMatchObject({ written: 1 });
    expect((await ctx.db.knex.raw(`select resource #>> '{valueQuantity,value}' as v from fhir_resources where id = 'o1'`)).rows[0].v).toBe('72');
  });

  it('lets the later meta.lastUpdated win and ignores an older copy', async () => {
    const newer = patient('a', { gender: 'male', meta: { lastUpdated: '2024-02-01T00:00:00Z', versionId: '2' } });
    const older = patient('a', { gender: 'female', meta: { lastUpdated: '2024-01-01T00:00:00Z', versionId: '1' } });
    await run([newer]);
    const { result } = await run([older]);
    expect(result.types.Patient).toMatchObject({ written: 0, unchanged: 1 });
    expect(await patients()).toEqual([{ id: 'a', gender: 'male', birth_date: null }]);
    // same instant: the higher version wins; in one batch the copies are committed in order
    const v3 = patient('a', { gender: 'other', meta: { lastUpdated: '2024-02-01T00:00:00Z', versionId: '10' } });
    await run([v3, older, newer]);
    expect(await patients()).toEqual([{ id: 'a', gender: 'other', birth_date: null }]);
    expect((await stored('a')).version_id).toBe('10');
  });

  it('replaces the flat rows of a changed resource', async () => {
    await run([patient('a', { birthDate: '1980-05-05' })]);
    await run([patient('a')]);
    expect(await patients()).toEqual([{ id: 'a', gender: 'female', birth_date: null }]);
  });

  it('removes the flat rows of a deleted resource and marks it deleted', async () => {
    await run([patient('a'), patient('b')]);
    const { result } = await run([{ kind: 'delete', source: 'b.json', entry: 0, resourceType: 'Patient', id: 'a' }, { kind: 'delete', source: 'b.json', entry: 1, resourceType: 'Patient', id: 'zz' }]);
    expect(result.types.Patient).toEqual({ read: 2, written: 0, unchanged: 1, rejected: 0, deleted: 1 });
    expect(await patients()).toEqual([{ id: 'b', gender: 'female', birth_date: null }]);
    expect((await stored('a')).deleted).toBe(true);
    // it comes back when it arrives again
    await run([patient('a')]);
    expect((await stored('a')).deleted).toBe(false);
    expect((await patients()).map((p: { id: string }) => p.id)).toEqual(['a', 'b']);
  });

  it('rejects a resource with a value of the wrong type for a column, and keeps the rest', async () => {
    const bad = patient('bad', { active: 'yes' });
    const { result, ledger } = await run([patient('a'), bad, { kind: 'invalid', source: 'x.ndjson', line: 7, reasonCode: 'INVALID_JSON', message: 'Unexpected token', raw: '{oops' }]);
    expect(result.types.Patient).toMatchObject({ read: 2, written: 1, rejected: 1 });
    expect(result.types['(unreadable)']).toMatchObject({ read: 1, rejected: 1 });
    expect(ledger.counts.rejected).toBe(2);
    const rejects = await ctx.db.knex('rejects').select('source', 'line', 'record_key', 'field', 'reason_code', 'raw').orderBy('id');
    expect(rejects).toEqual([
      { source: 'mem.ndjson', line: 1, record_key: 'Patient/bad', field: 'patient.active', reason_code: 'WRONG_TYPE', raw: JSON.stringify(bad.resource) },
      { source: 'x.ndjson', line: 7, record_key: null, field: null, reason_code: 'INVALID_JSON', raw: '{oops' },
    ]);
    expect(await ctx.db.knex('fhir_resources').where({ id: 'bad' })).toEqual([]);
  });

  it('rejects alone a resource whose value the database refuses, committing its neighbours', async () => {
    const { result } = await run([patient('a'), patient('nul', { gender: 'fe\u0000male' }), patient('c'), patient('d')], { batchSize: 10 });
    expect(result.types.Patient).toMatchObject({ read: 4, written: 3, rejected: 1 });
    expect((await patients()).map((p: { id: string }) => p.id)).toEqual(['a', 'c', 'd']);
    const [reject] = await ctx.db.knex('rejects').select('record_key', 'reason_code');
    expect(reject).toEqual({ record_key: 'Patient/nul', reason_code: 'DATABASE_REFUSED' });
  });

  it('stores a checkpoint in the transaction of the batch it closes', async () => {
    await ctx.db.knex.schema.createTable('marks', (t) => t.text('key'));
    const seen: number[] = [];
    await run(
      [patient('a'), { kind: 'checkpoint', source: 'f', key: 'file:f', state: {} }, patient('b')],
      {
        onCheckpoint: async (trx, cp) => {
          seen.push(Number((await trx('fhir_resources').count({ n: '*' }))[0]!.n));
          await trx('marks').insert({ key: cp.key });
        },
      },
    );
    expect(seen).toEqual([1]);
    expect(await ctx.db.knex('marks').select('key')).toEqual([{ key: 'file:f' }]);
  });

  it('writes nothing in a dry run yet counts what it would write', async () => {
    const { result } = await run([patient('a'), patient('b'), patient('a', { gender: 'male' })], { dryRun: true });
    expect(result.types.Patient).toMatchObject({ read: 3, written: 3 });
    expect(await ctx.db.knex('fhir_resources')).toEqual([]);
  });

  it('fills one table from several views that share its name', async () => {
    // not `codings`: the shipped table of that name (migration 620) has other columns
    const codings = (resource: string) => ({
      file: `test-codes-${resource}`,
      view: compileView({ resourceType: 'ViewDefinition', name: 'test_codes', resource, select: [{ column: [{ name: 'id', path: 'getResourceKey()' }] }, { forEach: 'code.coding', column: [{ name: 'code', path: 'code' }] }] }),
    });
    const extra = ['Condition', 'Observation'].map((r) => ({ ...codings(r), table: tableSpecOf(codings(r).view), definition: {}, viewName: `test-codes-${r}`, shipped: false }));
    for (const t of tablesOf([...views, ...extra])) await ensureFlatTable(ctx.db.knex, t);
    const coded = (resourceType: string, id: string, ...codes: string[]) =>
      ({ kind: 'resource', source: 's', resource: { resourceType, id, code: { coding: codes.map((code) => ({ code })) } } }) as FhirItem;
    await run([coded('Condition', 'c1', 'x', 'y'), coded('Observation', 'o1', 'z')], { views: [...views, ...extra] });
    await run([coded('Condition', 'c1', 'x2')], { views: [...views, ...extra] });
    expect(await ctx.db.knex('test_codes').select('_resource_type', 'id', 'code').orderBy(['id', 'code'])).toEqual([
      { _resource_type: 'Condition', id: 'c1', code: 'x2' },
      { _resource_type: 'Observation', id: 'o1', code: 'z' },
    ]);
  });
});
