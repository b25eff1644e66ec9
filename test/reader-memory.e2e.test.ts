/**
 * Flat memory: the built reader reads a Bundle and an ndjson file larger than the heap
 * it is given (parsed whole they would take several times that). A reader that held the file, or
 * every entry, would die of heap exhaustion. What grows is the Bundle's fullUrl map, ~100 B an entry.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/cli.js';

const HEAP_MB = 40;
const FILE_MB = 48;
let dir: string;

/** Writes FILE_MB of patients and observations, as a transaction Bundle with urn:uuid references or as ndjson. */
async function generate(file: string, kind: 'bundle' | 'ndjson'): Promise<number> {
  const out = createWriteStream(file);
  let bytes = 0;
  let n = 0;
  const put = async (text: string) => {
    bytes += text.length;
    if (!out.write(text)) await once(out, 'drain');
  };
  if (kind === 'bundle') await put('{"resourceType":"Bundle","type":"transaction","entry":[\n');
  const uuid = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
  while (bytes < FILE_MB * 1024 * 1024) {
    const patient = { resourceType: 'Patient', id: uuid(n), name: [{ family: `F${n}`, given: ['G'] }], birthDate: '1970-01-01' };
    const patientUrl = `urn:uuid:${patient.id}`;
    const resources: { resourceType: string; id: string }[] = [patient];
    for (let k = 0; k < 4; k++) {
      resources.push({
        resourceType: 'Observation',
        id: uuid(n + 1 + k),
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '8302-2', display: 'Body height' }] },
        subject: { reference: kind === 'bundle' ? patientUrl : `Patient/${patient.id}` },
        valueQuantity: { value: 150 + k, unit: 'cm' },
      } as { resourceType: string; id: string });
    }
    for (const resource of resources) {
      const text = kind === 'ndjson' ? JSON.stringify(resource) : JSON.stringify({ fullUrl: `urn:uuid:${resource.id}`, resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } });
      await put(`${n > 0 && kind === 'bundle' ? ',' : ''}${text}\n`);
      n++;
    }
  }
  if (kind === 'bundle') await put(']}\n');
  out.end();
  await once(out, 'finish');
  return n;
}

function readInChild(file: string): { code: number | null; stdout: string; stderr: string } {
  const script = `
    const { readFhirFiles } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist/src/fhir/read/files.js'))});
    const counts = { resource: 0, invalid: 0, resolved: 0 };
    for await (const item of readFhirFiles([${JSON.stringify(file)}])) {
      if (item.kind === 'resource') {
        counts.resource++;
        if (item.resource.subject?.reference?.startsWith('Patient/')) counts.resolved++;
      } else if (item.kind === 'invalid') counts.invalid++;
    }
    process.stdout.write(JSON.stringify(counts));`;
  const run = spawnSync(process.execPath, [`--max-old-space-size=${HEAP_MB}`, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 300_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-reader-memory-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe(`reader memory (${FILE_MB} MB files, ${HEAP_MB} MB heap)`, () => {
  it('reads a transaction Bundle larger than its heap, entry by entry, references resolved', async () => {
    const file = path.join(dir, 'bundle.json');
    const written = await generate(file, 'bundle');
    const result = readInChild(file);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ resource: written, invalid: 0, resolved: (written / 5) * 4 });
  });

  it('reads an ndjson file larger than its heap, line by line', async () => {
    const file = path.join(dir, 'export.ndjson');
    const written = await generate(file, 'ndjson');
    const result = readInChild(file);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ resource: written, invalid: 0, resolved: (written / 5) * 4 });
  });
});
