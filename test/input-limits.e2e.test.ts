/**
 * Inputs that must never wedge a run, through the built binary on both back ends: JSON nested 5,000
 * levels deep (TOO_DEEP) and bytes that are not UTF-8 (INVALID_UTF8) are rejects with their file and
 * line or entry, exit 1; the good records around them and the files after them are loaded.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { Knex } from 'knex';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { runCli } from './helpers/cli.js';

vi.setConfig({ testTimeout: 300_000 });

/** JSON text nesting `levels` arrays and objects, alternately, around a string (JSON.stringify would recurse). */
function nestedText(levels: number): string {
  let open = '';
  let close = '';
  for (let i = 0; i < levels; i++) {
    open += i % 2 === 0 ? '[' : '{"url":"http://example.org/x","extension":';
    close = (i % 2 === 0 ? ']' : '}') + close;
  }
  return `${open}"leaf"${close}`;
}

/** A Patient `depth` levels deep in all, the resource itself being level 1. */
const deepPatient = (id: string, depth: number) => `{"resourceType":"Patient","id":"${id}","extension":${nestedText(depth - 1)}}`;
const BAD_BYTES = Buffer.from([0xff, 0xfe]);

describe.each(BACKENDS)('input limits on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  async function query<T>(work: (knex: Knex) => Promise<T>): Promise<T> {
    const db = await ctx.test.connect();
    try {
      return await work(db.knex);
    } finally {
      await db.close();
    }
  }

  const rejects = () =>
    query((k) => k('rejects').select('source', 'line', 'entry', 'reason_code', 'message').orderBy('id')) as Promise<
      { source: string; line: number | null; entry: number | null; reason_code: string; message: string }[]
    >;

  it('ingest-fhir: TOO_DEEP and INVALID_UTF8 rejects name file and line or entry; the rest, and 256 levels, load and round-trip', async () => {
    const input = path.join(ctx.test.tmp, 'in');
    mkdirSync(input);
    writeFileSync(
      path.join(input, 'a-bundle.json'),
      `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"b1"}},{"resource":${deepPatient('deep-entry', 5000)}},{"resource":{"resourceType":"Patient","id":"b2"}}]}`,
    );
    writeFileSync(path.join(input, 'b-deep.json'), deepPatient('deep-file', 5000));
    const at256 = deepPatient('at256', 256);
    writeFileSync(path.join(input, 'c-lines.ndjson'), ['{"resourceType":"Patient","id":"n1"}', deepPatient('deep-line', 5000), at256, deepPatient('at257', 257)].join('\n') + '\n');
    writeFileSync(
      path.join(input, 'd-utf8.ndjson'),
      Buffer.concat([Buffer.from('{"resourceType":"Patient","id":"u1"}\n{"resourceType":"Patient","id":"u2","gender":"'), BAD_BYTES, Buffer.from('"}\n{"resourceType":"Patient","id":"u3"}\n')]),
    );
    writeFileSync(
      path.join(input, 'e-utf8-bundle.json'),
      Buffer.concat([
        Buffer.from('{"resourceType":"Bundle","type":"collection","entry":[\n{"resource":{"resourceType":"Patient","id":"v1"}},\n{"resource":{"resourceType":"Patient","id":"v2","gender":"'),
        BAD_BYTES,
        Buffer.from('"}},\n{"resource":{"resourceType":"Patient","id":"v3"}}]}\n'),
      ]),
    );
    writeFileSync(path.join(input, 'z-last.ndjson'), '{"resourceType":"Patient","id":"last","name":[{"family":"Ngô"}]}\n');
    await ctx.release();

    const result = await runCli(['ingest-fhir', 'in'], { env: ctx.test.env, cwd: ctx.test.tmp });
    expect(result.stderr).not.toMatch(/internal error|Maximum call stack/);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('in/a-bundle.json entry 1: TOO_DEEP: JSON nested more than 256 levels deep');
    expect(result.stderr).toContain('in/d-utf8.ndjson:2: INVALID_UTF8: invalid UTF-8 on line 2: the line is not read');

    expect((await rejects()).map((r) => [r.source, r.line, r.entry, r.reason_code])).toEqual([
      ['in/a-bundle.json', null, 1, 'TOO_DEEP'],
      ['in/b-deep.json', null, null, 'TOO_DEEP'],
      ['in/c-lines.ndjson', 2, null, 'TOO_DEEP'],
      ['in/c-lines.ndjson', 4, null, 'TOO_DEEP'],
      ['in/d-utf8.ndjson', 2, null, 'INVALID_UTF8'],
      // the entry being read when the bad bytes came
      ['in/e-utf8-bundle.json', 3, 1, 'INVALID_UTF8'],
    ]);
    const stored = await query((k) => k('fhir_resources').select('id', 'resource').orderBy('id'));
    expect(stored.map((r: { id: string }) => r.id)).toEqual(['at256', 'b1', 'b2', 'last', 'n1', 'u1', 'u3', 'v1']);
    // 256 levels are stored as given, and come back out of the database equal.
    expect(stored.find((r: { id: string }) => r.id === 'at256').resource).toEqual(JSON.parse(at256));
    expect(stored.find((r: { id: string }) => r.id === 'last').resource.name).toEqual([{ family: 'Ngô' }]);
    expect(JSON.stringify(stored)).not.toContain('\ufffd');
    expect(await query((k) => k('patient').pluck('id').orderBy('id'))).toEqual(['at256', 'b1', 'b2', 'last', 'n1', 'u1', 'u3', 'v1']);
  });

  it('ingest-appointments: a record nested too deep is TOO_DEEP by entry, bad bytes INVALID_UTF8 by line; earlier records and later files load', async () => {
    const patient = (nhs: string, name: string) => `{"nhs_number":"${nhs}","name":"${name}","date_of_birth":"1970-01-01","postcode":"N6 2FA"}`;
    writeFileSync(
      path.join(ctx.test.tmp, 'a-patients.json'),
      Buffer.concat([Buffer.from(`[\n${patient('3416721101', 'Patient One')},\n{"nhs_number":"6840388549","name":"Bad `), BAD_BYTES, Buffer.from(`","date_of_birth":"1980-01-01","postcode":"N6 2FA"},\n${patient('4451956838', 'After')}\n]\n`)]),
    );
    writeFileSync(
      path.join(ctx.test.tmp, 'b-patients.json'),
      `[\n${patient('2143044321', 'Patient Three')},\n{"nhs_number":"4451956838","name":"Deep","extra":${nestedText(5000)}}\n]\n`,
    );
    await ctx.release();
    const result = await runCli(['ingest-appointments', 'a-patients.json', 'b-patients.json', '--now', '2026-03-01T12:00:00Z'], { env: ctx.test.env, cwd: ctx.test.tmp });
    expect(result.stderr).not.toMatch(/internal error|Maximum call stack/);
    expect(result.code).toBe(1);
    expect((await rejects()).map((r) => [r.source, r.line, r.entry, r.reason_code, r.message])).toEqual([
      [path.join(ctx.test.tmp, 'a-patients.json'), 3, null, 'INVALID_UTF8', 'the file is not valid UTF-8 on line 3: the rest of the file is not read'],
      [path.join(ctx.test.tmp, 'b-patients.json'), null, 1, 'TOO_DEEP', 'the record nests objects and arrays more than 256 levels deep'],
    ]);
    expect(await query((k) => k('patients').pluck('nhs_number').orderBy('nhs_number'))).toEqual(['2143044321', '3416721101']);
  });
});
