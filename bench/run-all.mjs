#!/usr/bin/env node
// `npm run bench`: runs every bench script in this folder (against the built dist/) and writes the
// last line each prints, its figures, to bench/results.json. Figures, never pass/fail.
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const scripts = readdirSync(here)
  .filter((f) => f.endsWith('.mjs') && f !== 'run-all.mjs' && !f.startsWith('_'))
  .filter((f) => only.length === 0 || only.some((name) => f.startsWith(name)))
  .sort();

const results = { machine: { node: process.version, cpus: (await import('node:os')).cpus().length }, at: new Date().toISOString(), benches: {} };
for (const script of scripts) {
  const name = script.replace(/\.mjs$/, '');
  process.stderr.write(`bench: ${name}\n`);
  const run = spawnSync(process.execPath, [path.join(here, script)], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 64 << 20 });
  process.stdout.write(run.stdout);
  const last = run.stdout.trim().split('\n').pop() ?? '';
  let figures;
  try {
    figures = JSON.parse(last);
  } catch {
    figures = last;
  }
  results.benches[name] = { exit: run.status, figures };
}
writeFileSync(path.join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
process.stderr.write(`bench: wrote ${path.join(here, 'results.json')}\n`);
