import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { isLosslessNumber } from 'lossless-json';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FhirItem } from './item.js';
import { readFhirFiles, type ReadFhirFilesOptions } from './files.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const FIXTURES = path.join(REPO, 'fixtures/fhir');

async function collect(inputs: string[], options: ReadFhirFilesOptions = {}): Promise<FhirItem[]> {
  const items: FhirItem[] = [];
  for await (const item of readFhirFiles(inputs, { cwd: REPO, ...options })) items.push(item);
  return items;
}

const resources = (items: FhirItem[]) => items.flatMap((i) => (i.kind === 'resource' ? [i.resource] : []));
const keys = (items: FhirItem[]) => resources(items).map((r) => `${r.resourceType}/${r.id}`);
const invalids = (items: FhirItem[]) => items.flatMap((i) => (i.kind === 'invalid' ? [i] : []));

// Every reading path is run twice: parsed whole in memory, and streamed (memoryLimit 0).
const MODES = [
  ['in memory', {}],
  ['streamed', { memoryLimit: 0 }],
] as const;

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-readers-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

describe.each(MODES)('readFhirFiles (%s)', (_mode, modeOptions) => {
  it('reads a transaction Bundle entry by entry and resolves urn:uuid references, forward ones too', async () => {
    const items = await collect(['fixtures/fhir/sample/transaction-bundle.json'], modeOptions);
    const bundle = JSON.parse(readFileSync(path.join(FIXTURES, 'sample/transaction-bundle.json'), 'utf8'));
    expect(resources(items)).toHaveLength(bundle.entry.length);
    expect(invalids(items)).toEqual([]);
    const patient = resources(items).find((r) => r.resourceType === 'Patient')!;
    // The Organization is the last entry: a forward reference.
    expect((patient as { managingOrganization: { reference: string } }).managingOrganization.reference).toBe('Organization/org-1');
    expect((patient as { generalPractitioner: { reference: string }[] }).generalPractitioner[0].reference).toBe('Practitioner/prac-1');
    const report = resources(items).find((r) => r.resourceType === 'DiagnosticReport') as unknown as { result: { reference: string }[] };
    expect(report.result.map((r) => r.reference)).toEqual([
      'Observation/00000000-0000-4000-8000-000000000104',
      'Observation/00000000-0000-4000-8000-000000000103',
    ]);
    expect(JSON.stringify(resources(items))).not.toContain('urn:uuid:');
    // Every entry once, with its index; streamed, those pointing forward come after the last entry.
    const indexes = items.flatMap((i) => (i.kind === 'resource' ? [i.entry] : []));
    expect([...indexes].sort((a, b) => a! - b!)).toEqual(bundle.entry.map((_: unknown, i: number) => i));
    expect(items.find((i) => i.kind === 'resource' && i.resource.id === '00000000-0000-4000-8000-000000000100')).toMatchObject({
      source: 'fixtures/fhir/sample/transaction-bundle.json',
      entry: 0,
    });
    expect(items.at(-1)).toEqual({
      kind: 'checkpoint',
      source: 'fixtures/fhir/sample/transaction-bundle.json',
      key: `file:${path.join(FIXTURES, 'sample/transaction-bundle.json')}`,
      state: {
        path: path.join(FIXTURES, 'sample/transaction-bundle.json'),
        size: readFileSync(path.join(FIXTURES, 'sample/transaction-bundle.json')).length,
        sha256: createHash('sha256').update(readFileSync(path.join(FIXTURES, 'sample/transaction-bundle.json'))).digest('hex'),
      },
    });
  });

  it('reads Bulk Data ndjson line by line, with line numbers', async () => {
    const items = await collect(['fixtures/fhir/sample/Observation.ndjson'], modeOptions);
    expect(keys(items)).toEqual(['1-1', '1-2', '2-1', '2-2', '3-1', '3-2'].map((s) => `Observation/obs-vitals-${s}`));
    expect(items.filter((i) => i.kind === 'resource').map((i) => i.line)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('reads a single pretty-printed resource, whatever the extension says', async () => {
    const file = path.join(tmp, 'patient.ndjson.txt');
    writeFileSync(file, JSON.stringify({ resourceType: 'Patient', id: 'p1', gender: 'male' }, null, 2));
    const items = await collect([file], modeOptions);
    expect(items.map((i) => i.kind)).toEqual(['resource', 'checkpoint']);
    expect(resources(items)[0]).toEqual({ resourceType: 'Patient', id: 'p1', gender: 'male' });
  });

  it('tells ndjson from a document by content, not by the extension', async () => {
    const file = path.join(tmp, 'export.json');
    writeFileSync(file, '{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient","id":"b"}\n');
    expect(keys(await collect([file], modeOptions))).toEqual(['Patient/a', 'Patient/b']);
  });

  it('reads a Bundle written one entry per line as a Bundle, not as ndjson', async () => {
    const file = path.join(tmp, 'lines.json');
    const entries = [
      { fullUrl: 'urn:uuid:11111111-2222-4333-8444-555555555555', resource: { resourceType: 'Patient', id: 'p' } },
      { fullUrl: 'urn:uuid:11111111-2222-4333-8444-666666666666', resource: { resourceType: 'Encounter', id: 'e', subject: { reference: 'urn:uuid:11111111-2222-4333-8444-555555555555' } } },
    ];
    writeFileSync(file, `{"resourceType":"Bundle","type":"transaction","entry":[\n${entries.map((e) => JSON.stringify(e)).join(',\n')}\n]}\n`);
    const items = await collect([file], modeOptions);
    expect(keys(items)).toEqual(['Patient/p', 'Encounter/e']);
    expect((resources(items)[1] as unknown as { subject: unknown }).subject).toEqual({ reference: 'Patient/p' });
  });

  it('reads gzipped ndjson and Bundles, detected by magic bytes', async () => {
    const ndjson = readFileSync(path.join(FIXTURES, 'sample/Observation.ndjson'));
    writeFileSync(path.join(tmp, 'obs.data'), gzipSync(ndjson));
    writeFileSync(path.join(tmp, 'bundle.json.gz'), gzipSync(readFileSync(path.join(FIXTURES, 'sample/transaction-bundle.json'))));
    const items = await collect([path.join(tmp, 'obs.data'), path.join(tmp, 'bundle.json.gz')], modeOptions);
    expect(keys(items).filter((k) => k.startsWith('Observation/obs-vitals'))).toHaveLength(6);
    expect(resources(items)).toHaveLength(6 + 35);
    expect(JSON.stringify(resources(items))).not.toContain('urn:uuid:');
    expect(invalids(items)).toEqual([]);
  });

  it('yields delete items for DELETE entries, with Type/id from request.url', async () => {
    const items = await collect(['fixtures/fhir/updates/5-delete-bundle.json'], modeOptions);
    expect(items.slice(0, 3)).toEqual([
      { kind: 'delete', source: 'fixtures/fhir/updates/5-delete-bundle.json', entry: 0, resourceType: 'Observation', id: 'upd-obs-2' },
      { kind: 'delete', source: 'fixtures/fhir/updates/5-delete-bundle.json', entry: 1, resourceType: 'Patient', id: 'upd-patient-2' },
      expect.objectContaining({ kind: 'resource', entry: 2, resource: expect.objectContaining({ id: 'upd-obs-1', meta: { versionId: '3', lastUpdated: '2025-03-01T00:00:00Z' } }) }),
    ]);
  });

  it('says which line holds invalid JSON and reads on', async () => {
    const items = await collect(['fixtures/fhir/malformed/invalid-json-line.ndjson'], modeOptions);
    expect(keys(items)).toEqual(['Patient/mal-json-1', 'Patient/mal-json-3']);
    expect(invalids(items)).toEqual([
      expect.objectContaining({ source: 'fixtures/fhir/malformed/invalid-json-line.ndjson', line: 2, reasonCode: 'INVALID_JSON', raw: '{"resourceType": "Patient", "id": "mal-json-2", "name": [{"family": "Broken"}' }),
    ]);
  });

  it('rejects a resource without resourceType', async () => {
    const items = await collect(['fixtures/fhir/malformed/missing-resource-type.ndjson'], modeOptions);
    expect(keys(items)).toEqual(['Patient/mal-rt-1', 'Patient/mal-rt-3']);
    expect(invalids(items)).toEqual([
      expect.objectContaining({ line: 2, reasonCode: 'MISSING_RESOURCE_TYPE', field: 'resourceType', raw: '{"id":"mal-rt-2","name":[{"family":"NoType"}]}' }),
    ]);
  });

  it('yields a resource without id with requireId: false (views over examples)', async () => {
    const items = await collect(['fixtures/fhir/malformed/missing-id.ndjson'], { ...modeOptions, requireId: false });
    expect(resources(items).map((r) => r.id)).toEqual(['mal-id-1', undefined, 'mal-id-3']);
    expect(invalids(items)).toEqual([]);
  });

  it('rejects a resource without id', async () => {
    const items = await collect(['fixtures/fhir/malformed/missing-id.ndjson'], modeOptions);
    expect(keys(items)).toEqual(['Patient/mal-id-1', 'Patient/mal-id-3']);
    expect(invalids(items)).toEqual([expect.objectContaining({ line: 2, reasonCode: 'MISSING_ID', field: 'id', message: 'the Patient has no id' })]);
  });

  it('rejects an entry whose urn:uuid reference no entry declares, naming the field', async () => {
    const items = await collect(['fixtures/fhir/malformed/unresolved-reference.json'], modeOptions);
    expect(keys(items)).toEqual(['Patient/mal-ref-1', 'Observation/mal-ref-obs-1']);
    expect((resources(items)[1] as unknown as { subject: { reference: string } }).subject.reference).toBe('Patient/mal-ref-1');
    const [bad] = invalids(items);
    expect(bad).toMatchObject({ entry: 2, reasonCode: 'UNRESOLVED_REFERENCE', field: 'subject.reference' });
    expect(bad.kind === 'invalid' && bad.raw).toContain('urn:uuid:00000000-0000-4000-8000-000000007999');
  });

  it('yields what precedes the break of a truncated Bundle, then an invalid item with the entry index', async () => {
    const items = await collect(['fixtures/fhir/malformed/truncated-bundle.json'], modeOptions);
    // In memory the whole-text parse fails, then the file is streamed: same outcome.
    expect(keys(items)).toEqual(['Patient/mal-trunc-1', 'Patient/mal-trunc-2']);
    expect(invalids(items)).toEqual([expect.objectContaining({ entry: 2, reasonCode: 'INVALID_JSON' })]);
    expect(items.at(-1)?.kind).toBe('checkpoint');
  });

  it('passes a wrongly typed value through: the view mapping, not the reader, rejects it', async () => {
    const items = await collect(['fixtures/fhir/malformed/wrong-type-birthdate.ndjson'], modeOptions);
    expect(resources(items).map((r) => (r as { birthDate?: unknown }).birthDate)).toEqual(['1990-01-01', 12, '1990-01-01']);
  });

  it('reads searchset, collection, batch and message Bundles alike, absolute fullUrls left as they are', async () => {
    for (const type of ['searchset', 'collection', 'batch', 'message']) {
      const file = path.join(tmp, `${type}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          resourceType: 'Bundle',
          type,
          total: 2,
          link: [{ relation: 'self', url: 'https://fhir.example.org/Patient' }],
          entry: [
            { fullUrl: 'https://fhir.example.org/Patient/a', resource: { resourceType: 'Patient', id: 'a' }, search: { mode: 'match' } },
            { fullUrl: 'https://fhir.example.org/Encounter/e', resource: { resourceType: 'Encounter', id: 'e', subject: { reference: 'https://fhir.example.org/Patient/a' } } },
          ],
        }),
      );
      const items = await collect([file], modeOptions);
      expect(keys(items)).toEqual(['Patient/a', 'Encounter/e']);
      expect((resources(items)[1] as unknown as { subject: unknown }).subject).toEqual({ reference: 'https://fhir.example.org/Patient/a' });
    }
  });

  it('reads ndjson with CRLF line ends, a byte order mark and blank lines; a Bundle on a line is one resource', async () => {
    const file = path.join(tmp, 'crlf.ndjson');
    const bundle = { resourceType: 'Bundle', id: 'b1', type: 'collection', entry: [{ fullUrl: 'urn:uuid:x', resource: { resourceType: 'Patient', id: 'inner' } }] };
    writeFileSync(file, `\uFEFF{"resourceType":"Patient","id":"a"}\r\n\r\n${JSON.stringify(bundle)}\r\n{"resourceType":"Patient","id":"c"}`);
    const items = await collect([file], modeOptions);
    expect(keys(items)).toEqual(['Patient/a', 'Bundle/b1', 'Patient/c']);
    expect(items.filter((i) => i.kind === 'resource').map((i) => i.line)).toEqual([1, 3, 4]);
  });

  it('hands on the text of an ndjson line as read, and no text for a Bundle entry', async () => {
    const file = path.join(tmp, 'text.ndjson');
    writeFileSync(file, `\uFEFF{"resourceType":"Observation","id":"o", "valueQuantity":{"value":1.50}}\r\n{"resourceType":"Patient","id":"p"}\n`);
    const items = (await collect([file], modeOptions)).filter((i) => i.kind === 'resource');
    expect(items.map((i) => i.text)).toEqual(['{"resourceType":"Observation","id":"o", "valueQuantity":{"value":1.50}}', '{"resourceType":"Patient","id":"p"}']);
    const entries = (await collect(['fixtures/fhir/sample/transaction-bundle.json'], modeOptions)).filter((i) => i.kind === 'resource');
    expect(entries.length).toBeGreaterThan(0);
    expect(entries.filter((i) => i.text !== undefined)).toEqual([]);
  });

  it('rejects what is not a resource: an array, a bad resourceType, a bad id', async () => {
    const file = path.join(tmp, 'odd.ndjson');
    writeFileSync(file, ['[1,2]', '{"resourceType":"patient","id":"a"}', '{"resourceType":"Patient","id":"no spaces allowed"}', '{"resourceType":"Patient","id":"ok"}'].join('\n'));
    const items = await collect([file], modeOptions);
    expect(keys(items)).toEqual(['Patient/ok']);
    expect(invalids(items).map((i) => [i.line, i.reasonCode, i.field])).toEqual([
      [1, 'NOT_A_RESOURCE', undefined],
      [2, 'INVALID_RESOURCE_TYPE', 'resourceType'],
      [3, 'INVALID_ID', 'id'],
    ]);
  });

  it('keeps decimal digits with numbers: lossless', async () => {
    const file = path.join(tmp, 'obs.json');
    writeFileSync(file, '{"resourceType":"Observation","id":"o","valueQuantity":{"value": 1.50 },"component":[{"valueInteger":7}],"x":[2.0, 1e3]}');
    const [item] = await collect([file], { ...modeOptions, numbers: 'lossless' });
    const resource = (item as unknown as { resource: { valueQuantity: { value: unknown }; x: unknown[] } }).resource;
    expect(isLosslessNumber(resource.valueQuantity.value) && String(resource.valueQuantity.value)).toBe('1.50');
    expect(resource.x.map(String)).toEqual(['2.0', '1e3']);
    // In memory, text whose numbers all print as written goes through JSON.parse: same digits.
    writeFileSync(file, '{"resourceType":"Observation","id":"o","valueQuantity":{"value":1.5}}');
    const [plain] = await collect([file], { ...modeOptions, numbers: 'lossless' });
    expect(String((plain as { resource: { valueQuantity: { value: unknown } } }).resource.valueQuantity.value)).toBe('1.5');
  });
});

describe('readFhirFiles inputs', () => {
  it('reads a folder recursively, in path order, leaving out other files', async () => {
    const items = await collect(['fixtures/fhir/updates']);
    expect(items.filter((i) => i.kind === 'checkpoint').map((i) => path.basename(i.source))).toEqual([
      '1-initial.ndjson',
      '2-newer.ndjson',
      '3-older.ndjson',
      '4-same-time-higher-version.ndjson',
      '5-delete-bundle.json',
    ]);
    const all = await collect(['fixtures/fhir']);
    expect(all.some((i) => i.source.endsWith('README.md'))).toBe(false);
  });

  it('follows symbolic links in a folder', async () => {
    symlinkSync(path.join(FIXTURES, 'sample'), path.join(tmp, 'linked-sample'));
    symlinkSync(path.join(FIXTURES, 'updates/2-newer.ndjson'), path.join(tmp, 'newer.ndjson'));
    const items = await collect([tmp]);
    expect(items.filter((i) => i.kind === 'checkpoint').map((i) => path.relative(tmp, i.source))).toEqual([
      'linked-sample/Observation.ndjson',
      'linked-sample/transaction-bundle.json',
      'newer.ndjson',
    ]);
  });

  it('expands globs', async () => {
    const items = await collect(['fixtures/fhir/malformed/missing-*.ndjson']);
    expect(items.filter((i) => i.kind === 'checkpoint').map((i) => i.source)).toEqual([
      'fixtures/fhir/malformed/missing-id.ndjson',
      'fixtures/fhir/malformed/missing-resource-type.ndjson',
    ]);
  });

  it('fails before reading when an input does not exist or a glob matches nothing', async () => {
    await expect(collect(['fixtures/fhir/sample', 'nope.ndjson'])).rejects.toMatchObject({ code: 'INPUT_NOT_FOUND', message: 'no such file or folder: nope.ndjson' });
    await expect(collect(['fixtures/*.nothing'])).rejects.toMatchObject({ code: 'INPUT_NOT_FOUND', message: 'no file matches fixtures/*.nothing' });
  });

  it('reads stdin (-), Bundles with forward references included', async () => {
    const bundle = readFileSync(path.join(FIXTURES, 'sample/transaction-bundle.json'));
    for (const memoryLimit of [undefined, 0]) {
      const items = await collect(['-'], { stdin: Readable.from([bundle.subarray(0, 1000), bundle.subarray(1000)]), memoryLimit });
      expect(resources(items)).toHaveLength(35);
      expect(JSON.stringify(resources(items))).not.toContain('urn:uuid:');
      expect(items.at(-1)).toEqual({
        kind: 'checkpoint',
        source: '-',
        key: 'stdin',
        state: { path: '-', size: bundle.length, sha256: createHash('sha256').update(bundle).digest('hex') },
      });
    }
  });

  it('skips files the caller says are unchanged, fingerprinted before reading', async () => {
    const seen: unknown[] = [];
    const sample = path.join(FIXTURES, 'sample/Observation.ndjson');
    const items = await collect(['fixtures/fhir/sample'], {
      skip: async (file) => {
        seen.push(file);
        return file.path === sample;
      },
    });
    expect(seen).toEqual([
      { path: sample, size: readFileSync(sample).length, sha256: createHash('sha256').update(readFileSync(sample)).digest('hex') },
      expect.objectContaining({ path: path.join(FIXTURES, 'sample/transaction-bundle.json') }),
    ]);
    expect(items.filter((i) => i.kind === 'checkpoint').map((i) => path.basename(i.source))).toEqual(['transaction-bundle.json']);
    expect(keys(items).some((k) => k.startsWith('Observation/obs-vitals'))).toBe(false);
  });

  it('stops when the signal is aborted', async () => {
    const controller = new AbortController();
    const got: FhirItem[] = [];
    await expect(
      (async () => {
        for await (const item of readFhirFiles(['fixtures/fhir/sample', 'fixtures/fhir/updates'], { cwd: REPO, signal: controller.signal })) {
          got.push(item);
          if (item.kind === 'checkpoint') controller.abort(new Error('stop'));
        }
      })(),
    ).rejects.toThrow('stop');
    expect(got.filter((i) => i.kind === 'checkpoint')).toHaveLength(1);
  });

  it('gives an entry without id the uuid of its urn:uuid fullUrl, and rejects conditional deletes', async () => {
    const file = path.join(tmp, 'b.json');
    writeFileSync(
      file,
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:11111111-2222-4333-8444-555555555555', resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Observation', id: 'o', subject: { reference: 'urn:uuid:11111111-2222-4333-8444-555555555555' } } },
          { request: { method: 'DELETE', url: 'Patient?identifier=x|1' } },
          { response: { status: '201 Created' } },
        ],
      }),
    );
    const items = await collect([file]);
    expect(keys(items)).toEqual(['Patient/11111111-2222-4333-8444-555555555555', 'Observation/o']);
    expect((resources(items)[1] as unknown as { subject: { reference: string } }).subject.reference).toBe('Patient/11111111-2222-4333-8444-555555555555');
    expect(invalids(items)).toEqual([expect.objectContaining({ entry: 2, reasonCode: 'UNSUPPORTED_DELETE', field: 'request.url' })]);
  });
});

/** JSON text nesting `levels` arrays and objects, alternately, around a string (written as text: JSON.stringify recurses). */
function nestedText(levels: number): string {
  let open = '';
  let close = '';
  for (let i = 0; i < levels; i++) {
    open += i % 2 === 0 ? '[' : '{"x":';
    close = (i % 2 === 0 ? ']' : '}') + close;
  }
  return `${open}"leaf"${close}`;
}

/** A Patient `depth` levels deep in all, itself level 1. */
const deepPatient = (id: string, depth: number) => `{"resourceType":"Patient","id":"${id}","extension":${nestedText(depth - 1)}}`;

describe.each([...MODES, ['lossless, streamed', { memoryLimit: 0, numbers: 'lossless' }], ['lossless, in memory', { numbers: 'lossless' }]] as const)(
  'readFhirFiles limits (%s)',
  (_mode, modeOptions) => {
    it('rejects JSON nested more than 256 levels as TOO_DEEP, in a Bundle entry, a .json and an ndjson line, and reads on', async () => {
      writeFileSync(
        path.join(tmp, 'a-bundle.json'),
        `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"b1"}},{"resource":${deepPatient('deep1', 5000)}},{"resource":{"resourceType":"Patient","id":"b2","x":1.50}}]}`,
      );
      writeFileSync(path.join(tmp, 'b-deep.json'), deepPatient('deep2', 5000));
      writeFileSync(path.join(tmp, 'c-lines.ndjson'), ['{"resourceType":"Patient","id":"n1"}', deepPatient('deep3', 5000), deepPatient('at256', 256), deepPatient('at257', 257)].join('\n') + '\n');
      const items = await collect([tmp], modeOptions);
      expect(invalids(items).map((i) => [path.basename(i.source), i.line ?? null, i.entry ?? null, i.reasonCode])).toEqual([
        ['a-bundle.json', null, 1, 'TOO_DEEP'],
        ['b-deep.json', null, null, 'TOO_DEEP'],
        ['c-lines.ndjson', 2, null, 'TOO_DEEP'],
        ['c-lines.ndjson', 4, null, 'TOO_DEEP'],
      ]);
      expect(invalids(items)[0]!.message).toBe('JSON nested more than 256 levels deep');
      expect(keys(items)).toEqual(['Patient/b1', 'Patient/b2', 'Patient/n1', 'Patient/at256']);
      // The entry next to one too deep keeps its decimal's digits when read lossless.
      const x = (resources(items).find((r) => r.id === 'b2') as unknown as { x: unknown }).x;
      if ('numbers' in modeOptions) expect(isLosslessNumber(x) && x.toString()).toBe('1.50');
      else expect(x).toBe(1.5);
    });

    it('keeps a member named __proto__ as an own member, as JSON.parse does, never as the prototype', async () => {
      writeFileSync(path.join(tmp, 'proto.json'), '{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p","__proto__":{"gender":"male"}}}]}');
      const [patient] = resources(await collect([path.join(tmp, 'proto.json')], modeOptions)) as unknown as Record<string, unknown>[];
      expect(Object.getPrototypeOf(patient)).toBe(Object.prototype);
      expect(patient!.gender).toBeUndefined();
      expect(Object.keys(patient!)).toEqual(['resourceType', 'id', '__proto__']);
    });

    it('rejects bytes that are not UTF-8 as INVALID_UTF8 with their line: the ndjson line, or the rest of a Bundle; the rest is read', async () => {
      const bad = Buffer.from([0xff, 0xfe]);
      writeFileSync(
        path.join(tmp, 'a-lines.ndjson'),
        Buffer.concat([Buffer.from('{"resourceType":"Patient","id":"u1"}\n{"resourceType":"Patient","id":"u2","gender":"m'), bad, Buffer.from('"}\n{"resourceType":"Patient","id":"u3","name":[{"family":"Ngô"}]}\n')]),
      );
      writeFileSync(
        path.join(tmp, 'b-bundle.json'),
        Buffer.concat([Buffer.from('{"resourceType":"Bundle","type":"collection","entry":[\n{"resource":{"resourceType":"Patient","id":"v1"}},\n{"resource":{"resourceType":"Patient","id":"v2","gender":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}}]}\n')]),
      );
      writeFileSync(path.join(tmp, 'c-last.ndjson'), '{"resourceType":"Patient","id":"last"}\n');
      writeFileSync(path.join(tmp, 'd-last.json.gz'), gzipSync(Buffer.concat([Buffer.from('{"resourceType":"Patient",\n"id":"gz"'), bad, Buffer.from('}')])));
      const items = await collect([tmp], modeOptions);
      expect(invalids(items).map((i) => [path.basename(i.source), i.line ?? null, i.reasonCode])).toEqual([
        ['a-lines.ndjson', 2, 'INVALID_UTF8'],
        ['b-bundle.json', 3, 'INVALID_UTF8'],
        ['d-last.json.gz', 2, 'INVALID_UTF8'],
      ]);
      expect(invalids(items)[0]!.message).toBe('invalid UTF-8 on line 2: the line is not read');
      // The Bundle's entries before its bad line are read, as they are from a large Bundle streamed.
      expect(keys(items)).toEqual(['Patient/u1', 'Patient/u3', 'Patient/v1', 'Patient/last']);
      expect(resources(items).find((r) => r.id === 'u3')).toEqual({ resourceType: 'Patient', id: 'u3', name: [{ family: 'Ngô' }] });
      expect(JSON.stringify(resources(items))).not.toContain('\ufffd');
    });
  },
);
