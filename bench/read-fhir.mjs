#!/usr/bin/env node
// The FHIR file reader on large inputs: generates a Bulk Data ndjson file and a transaction Bundle
// (urn:uuid references, a few pointing forward) of SIZE_MB each, plus small ones of SIZE_MB/10, in
// os.tmpdir(); reads each in a child process with carepipe's reader (dist/) and prints the read rate
// and the child's peak RSS. Flat memory shows as the same peak RSS for the small and the large file.
// Run `npm run build` first. Usage: node bench/read-fhir.mjs [SIZE_MB=200]
// HEAP_MB=64 caps the readers' V8 heap: that the large files still read proves memory is bounded.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

if (process.argv[2] === '--child') {
  // Child: read one file, report figures as JSON.
  const { readFhirFiles } = await import(path.join(root, 'dist/src/fhir/read/files.js'));
  const started = process.hrtime.bigint();
  const counts = { resource: 0, invalid: 0, delete: 0, checkpoint: 0 };
  let urn = 0;
  for await (const item of readFhirFiles([process.argv[3]])) {
    counts[item.kind]++;
    if (item.kind === 'resource' && item.resource.subject?.reference?.startsWith('urn:')) urn++;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const { user, system } = process.cpuUsage();
  process.stdout.write(
    JSON.stringify({ ...counts, unresolved_left: urn, seconds, cpu_seconds: (user + system) / 1e6, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) }),
  );
  process.exit(0);
}

const sizeMb = Number(process.argv[2] ?? 200);
const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-bench-read-'));

const uuid = (n) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
function patient(n) {
  return {
    resourceType: 'Patient',
    id: uuid(n),
    meta: { versionId: '1', lastUpdated: '2025-01-01T00:00:00Z' },
    identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: `MRN-${n}` }],
    name: [{ use: 'official', family: `Family${n % 997}`, given: [`Given${n % 389}`] }],
    gender: n % 2 ? 'female' : 'male',
    birthDate: `19${String(20 + (n % 80)).padStart(2, '0')}-0${1 + (n % 9)}-1${n % 10}`,
    address: [{ line: [`${n} Test Street`], city: 'Leeds', postalCode: 'LS1 4AP', country: 'GB' }],
  };
}
function observation(n, subject) {
  return {
    resourceType: 'Observation',
    id: uuid(n),
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code: '85354-9', display: 'Blood pressure panel' }] },
    subject: { reference: subject },
    effectiveDateTime: '2024-05-01T08:00:00+01:00',
    component: [
      { code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, valueQuantity: { value: 120 + (n % 40), unit: 'mm[Hg]' } },
      { code: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] }, valueQuantity: { value: 70 + (n % 30), unit: 'mm[Hg]' } },
    ],
  };
}

async function write(file, bytesWanted, kind) {
  const out = createWriteStream(file);
  let bytes = 0;
  const put = async (text) => {
    bytes += Buffer.byteLength(text);
    if (!out.write(text)) await once(out, 'drain');
  };
  if (kind === 'bundle') await put('{\n  "resourceType": "Bundle",\n  "type": "transaction",\n  "entry": [\n');
  let n = 0;
  let started = false;
  while (bytes < bytesWanted) {
    // A patient and 9 observations about it; in every 100th group the observations come first, so
    // their urn:uuid references point forward.
    const pat = patient(n++);
    const observations = [];
    for (let k = 0; k < 9; k++) observations.push(observation(n++, kind === 'bundle' ? `urn:uuid:${pat.id}` : `Patient/${pat.id}`));
    const group = n % 1000 === 0 ? [...observations, pat] : [pat, ...observations];
    for (const resource of group) {
      if (kind === 'ndjson') await put(`${JSON.stringify(resource)}\n`);
      else await put(`${started ? ',\n' : ''}    ${JSON.stringify({ fullUrl: `urn:uuid:${resource.id}`, resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } })}`);
      started = true;
    }
  }
  if (kind === 'bundle') await put('\n  ]\n}\n');
  out.end();
  await once(out, 'finish');
  return n;
}

const figures = {};
if (process.env.KEEP) process.stderr.write(`files in ${dir}\n`);
try {
  for (const kind of ['ndjson', 'bundle']) {
    for (const mb of [Math.max(1, Math.round(sizeMb / 10)), sizeMb]) {
      const file = path.join(dir, `${kind}-${mb}mb.${kind === 'ndjson' ? 'ndjson' : 'json'}`);
      const resources = await write(file, mb * 1024 * 1024, kind);
      const size = statSync(file).size;
      const heap = process.env.HEAP_MB ? [`--max-old-space-size=${process.env.HEAP_MB}`] : [];
      const child = spawnSync(process.execPath, [...heap, fileURLToPath(import.meta.url), '--child', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (child.status !== 0) throw new Error(`reading ${file} failed (exit ${child.status})`);
      const result = JSON.parse(child.stdout);
      if (result.resource !== resources || result.invalid !== 0 || result.unresolved_left !== 0) throw new Error(`${file}: read ${JSON.stringify(result)}, wrote ${resources}`);
      const key = `${kind}_${mb}mb`;
      figures[key] = {
        mb: Number((size / 1048576).toFixed(1)),
        resources,
        mb_per_s: Number((size / 1048576 / result.seconds).toFixed(1)),
        resources_per_s: Math.round(resources / result.seconds),
        mb_per_cpu_s: Number((size / 1048576 / result.cpu_seconds).toFixed(1)),
        peak_rss_mb: result.peak_rss_mb,
      };
      process.stdout.write(`${key}: ${JSON.stringify(figures[key])}\n`);
      if (!process.env.KEEP) rmSync(file);
    }
  }
} finally {
  if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
}
const small = Math.max(1, Math.round(sizeMb / 10));
process.stdout.write(
  `${JSON.stringify({
    ndjson_mb_per_s: figures[`ndjson_${sizeMb}mb`].mb_per_s,
    ndjson_resources_per_s: figures[`ndjson_${sizeMb}mb`].resources_per_s,
    bundle_mb_per_s: figures[`bundle_${sizeMb}mb`].mb_per_s,
    bundle_resources_per_s: figures[`bundle_${sizeMb}mb`].resources_per_s,
    heap_cap_mb: process.env.HEAP_MB ? Number(process.env.HEAP_MB) : null,
    [`ndjson_peak_rss_mb_${small}mb_vs_${sizeMb}mb`]: [figures[`ndjson_${small}mb`].peak_rss_mb, figures[`ndjson_${sizeMb}mb`].peak_rss_mb],
    [`bundle_peak_rss_mb_${small}mb_vs_${sizeMb}mb`]: [figures[`bundle_${small}mb`].peak_rss_mb, figures[`bundle_${sizeMb}mb`].peak_rss_mb],
  })}\n`,
);
