#!/usr/bin/env node
// Pull the Synthea Patient, Encounter and Observation data (14.5k resources) from the fake FHIR server
// (its own process) through the search reader (_count=500) and the Bulk Data reader, no database.
// Prints resources/s for each and this process's peak RSS; last line is JSON.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { readFhirSearch } = await import(path.join(root, 'dist/src/fhir/read/search.js'));
const { readFhirBulk } = await import(path.join(root, 'dist/src/fhir/read/bulk.js'));
const { createFhirAuth } = await import(path.join(root, 'dist/src/fhir/client/auth.js'));

const types = ['Patient', 'Encounter', 'Observation'];
const server = spawn(process.execPath, [path.join(root, 'dist/fixtures/fhir-server.js'), '--data', path.join(root, '..', 'shared', 'fhir', 'synthea-bulk'), '--types', types.join(','), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve, reject) => {
  server.stdout.setEncoding('utf8').on('data', (d) => {
    const m = /listening on (\S+)/.exec(d);
    if (m) resolve(m[1]);
  });
  server.on('exit', (code) => reject(new Error(`fake server exited ${code}`)));
});

async function measure(name, items) {
  const started = performance.now();
  let resources = 0;
  for await (const item of items) if (item.kind === 'resource') resources++;
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`${name}: ${resources} resources in ${seconds.toFixed(2)} s = ${Math.round(resources / seconds)} resources/s\n`);
  return { resources, seconds: Number(seconds.toFixed(2)), perSecond: Math.round(resources / seconds) };
}

const auth = createFhirAuth({ mode: 'none' }, url);
try {
  const search = await measure('search _count=500', readFhirSearch({ baseUrl: url, types, count: 500, auth }));
  const bulk = await measure('bulk $export', readFhirBulk({ baseUrl: url, types, auth, pollIntervalMs: 100 }));
  const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
  process.stdout.write(JSON.stringify({ searchResourcesPerSecond: search.perSecond, bulkResourcesPerSecond: bulk.perSecond, resources: search.resources, peakRssMb }) + '\n');
} finally {
  server.kill('SIGTERM');
}
