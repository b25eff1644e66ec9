#!/usr/bin/env node
// carepipe's ViewDefinition engine against the general FHIRPath engine on npm (`fhirpath`), doing the
// same work: every ViewDefinition (the shipped ones in views/, else bench/views/) over the Synthea Bulk
// Data in ../shared/fhir, each expression compiled once and evaluated per resource (where filters,
// forEach/forEachOrNull items, columns). Resources are read with carepipe's reader before timing.
// Last line: JSON figures, `ratio` = carepipe resources/s ÷ fhirpath resources/s (target ≥ 20).
// Run `npm run build` first. Usage: node bench/view-engine.mjs [fhir-folder] [--seconds N]
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const args = process.argv.slice(2);
const secondsAt = args.indexOf('--seconds');
const minSeconds = secondsAt >= 0 ? Number(args.splice(secondsAt, 2)[1]) : 3;
const dataDir = args[0] ?? path.resolve(root, '..', 'shared', 'fhir', 'synthea-bulk');

const { readFhirFiles } = await import(path.join(root, 'dist/src/fhir/read/files.js'));
const { compileView } = await import(path.join(root, 'dist/src/fhir/view/index.js'));

const shipped = path.join(root, 'views');
const viewDir = existsSync(shipped) && readdirSync(shipped).some((f) => f.endsWith('.json')) ? shipped : path.join(here, 'views');
const definitions = readdirSync(viewDir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ file: f, json: JSON.parse(readFileSync(path.join(viewDir, f), 'utf8')) }));

// getResourceKey() and getReferenceKey() are SQL on FHIR functions that fhirpath.js lacks: the
// fhirpath side reads `id` and `reference` (then cuts `Type/`), which is the same work.
function forFhirpath(expression) {
  return expression.replace(/getResourceKey\(\)/g, 'id').replace(/getReferenceKey\(\s*\w*\s*\)/g, 'reference');
}
const cutReferences = (expression, values) =>
  /getReferenceKey/.test(expression) ? values.map((v) => (typeof v === 'string' ? v.slice(v.lastIndexOf('/') + 1) : v)) : values;
/** The FHIR path of the items an expression gives, for fhirpath.js's type information (choice types). */
function basePath(base, expression) {
  const parts = expression.split('.').filter((p) => /^[A-Za-z]\w*$/.test(p));
  return [base, ...parts].join('.');
}

/** A ViewDefinition evaluated by fhirpath.js: compiled once, rows built as the spec says (select, forEach, forEachOrNull, repeat, unionAll, where). */
function fhirpathView(view) {
  // %constants, and %resource for paths evaluated on a part of the resource; one object per view.
  const env = Object.fromEntries((view.constant ?? []).map((c) => [c.name, Object.entries(c).find(([k]) => k.startsWith('value'))?.[1]]));
  const compile = (expression, base) => {
    const fn = fhirpath.compile({ base, expression: forFhirpath(expression) }, r4);
    return (node) => cutReferences(expression, fn(node, env));
  };
  const where = (view.where ?? []).map((w) => compile(w.path, view.resource));
  const plan = (select, base) => {
    const iterator = select.forEach ?? select.forEachOrNull;
    const itemBase = iterator ? basePath(base, iterator) : select.repeat ? basePath(base, select.repeat[0]) : base;
    let iterate = iterator ? compile(iterator, base) : undefined;
    if (select.repeat) {
      // Every node the repeat paths reach, depth first, the node itself left out.
      const paths = select.repeat.map((r) => compile(r, itemBase));
      iterate = (node) => {
        const out = [];
        const visit = (n) => {
          for (const p of paths) for (const child of p(n)) out.push(child), visit(child);
        };
        visit(node);
        return out;
      };
    }
    return {
      iterate,
      orNull: Boolean(select.forEachOrNull),
      columns: (select.column ?? []).map((c) => ({ evaluate: compile(c.path, itemBase), collection: c.collection === true })),
      select: (select.select ?? []).map((s) => plan(s, itemBase)),
      unionAll: (select.unionAll ?? []).map((s) => plan(s, itemBase)),
    };
  };
  const rootPlan = plan({ select: view.select }, view.resource);
  const rowsOf = (p, node) => {
    const foci = p.iterate ? p.iterate(node) : [node];
    if (foci.length === 0 && p.orNull) foci.push(undefined);
    const rows = [];
    for (const focus of foci) {
      const own = p.columns.map((c) => {
        const v = focus === undefined ? [] : c.evaluate(focus);
        return c.collection ? v : v.length ? v[0] : null;
      });
      let product = [own];
      const parts = p.select.map((sub) => (focus === undefined ? [] : rowsOf(sub, focus)));
      if (p.unionAll.length) parts.push(focus === undefined ? [] : p.unionAll.flatMap((branch) => rowsOf(branch, focus)));
      for (const subRows of parts) {
        const next = [];
        for (const left of product) for (const right of subRows) next.push([...left, ...right]);
        product = next;
      }
      rows.push(...product);
    }
    return rows;
  };
  return (resource) => {
    env.resource = resource;
    env.rootResource = resource;
    for (const w of where) {
      const r = w(resource);
      if (!(r.length === 1 && r[0] === true)) return [];
    }
    return rowsOf(rootPlan, resource);
  };
}

// Read the resources once, outside the timings.
const byType = new Map();
let read = 0;
for await (const item of readFhirFiles([dataDir], {})) {
  if (item.kind !== 'resource') continue;
  read++;
  const list = byType.get(item.resource.resourceType) ?? [];
  list.push(item.resource);
  byType.set(item.resource.resourceType, list);
}

const views = [];
for (const { file, json } of definitions) {
  try {
    views.push({ file, resources: byType.get(json.resource) ?? [], carepipe: compileView(json, { source: file }).evaluate, fhirpath: fhirpathView(json) });
  } catch (err) {
    process.stderr.write(`view-engine: ${file} left out of the comparison: ${err.message}\n`);
  }
}

/** Resources/s and rows of one engine over every view, repeated until minSeconds have passed. */
function measure(engine) {
  let resources = 0;
  let rows = 0;
  let rounds = 0;
  // CPU time of this process, not wall time: the figures hold on a machine shared with other work.
  const cpu = () => {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1e6;
  };
  const start = cpu();
  let elapsed = 0;
  do {
    for (const view of views) {
      const evaluate = view[engine];
      for (const resource of view.resources) rows += evaluate(resource).length;
      resources += view.resources.length;
    }
    rounds++;
    elapsed = cpu() - start;
  } while (elapsed < minSeconds);
  return { resources_per_s: Math.round(resources / elapsed), rows_per_round: rows / rounds, rounds, seconds: Number(elapsed.toFixed(2)) };
}

// One untimed round each, so that both are measured after the JIT has warmed up.
for (const view of views) for (const resource of view.resources) view.carepipe(resource), view.fhirpath(resource);
const fp = measure('fhirpath');
const cp = measure('carepipe');
for (const [name, m] of [['carepipe', cp], ['fhirpath', fp]]) {
  process.stdout.write(`${name}: ${m.resources_per_s} resources/s, ${m.rows_per_round} rows per round, ${m.rounds} rounds in ${m.seconds}s of CPU\n`);
}
if (cp.rows_per_round !== fp.rows_per_round) process.stderr.write(`view-engine: row counts differ (carepipe ${cp.rows_per_round}, fhirpath ${fp.rows_per_round})\n`);
process.stdout.write(
  `${JSON.stringify({
    views: views.map((v) => v.file),
    view_dir: path.relative(root, viewDir),
    resources_read: read,
    resources_per_round: views.reduce((n, v) => n + v.resources.length, 0),
    carepipe_resources_per_s: cp.resources_per_s,
    fhirpath_resources_per_s: fp.resources_per_s,
    ratio: Number((cp.resources_per_s / fp.resources_per_s).toFixed(1)),
  })}\n`,
);
