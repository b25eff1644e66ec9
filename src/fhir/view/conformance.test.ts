/**
 * The official SQL on FHIR v2 conformance suite, read at run time from ../shared/sql-on-fhir/tests:
 * one test per case. Resources are parsed with lossless-json so decimals keep their digits (`1.0`).
 *
 * The suite writes expected rows as JSON. The evaluator gives a decimal column's value with its digits
 * (a LosslessNumber, `0.95`), compared as the JSON number 0.95, and base64Binary (bytea) values as
 * Buffers, compared as their base64 text.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isLosslessNumber, parse as parseLossless } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { CarepipeError } from '../../errors.js';
import { compileView, type CompiledView } from './index.js';

const TESTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../shared/sql-on-fhir/tests');

interface ConformanceCase {
  title: string;
  view: unknown;
  expect?: Record<string, unknown>[];
  expectColumns?: string[];
  expectError?: boolean;
}

interface ConformanceFile {
  title: string;
  tests: ConformanceCase[];
}

/** A row as the suite writes it: decimals as JSON numbers, binary as base64. */
function asJson(view: CompiledView, row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const column of view.columns) {
    let v = row[column.name];
    if (isLosslessNumber(v)) v = Number(v);
    if (Buffer.isBuffer(v)) v = v.toString('base64');
    out[column.name] = v;
  }
  return out;
}

const sortKey = (row: Record<string, unknown>): string =>
  JSON.stringify(Object.keys(row).sort().map((k) => [k, row[k]]));
const sorted = (rows: Record<string, unknown>[]): Record<string, unknown>[] =>
  [...rows].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));

const files = readdirSync(TESTS_DIR).filter((f) => f.endsWith('.json')).sort();

it('finds the conformance test files in ../shared', () => {
  expect(files.length).toBeGreaterThan(20);
});

for (const file of files) {
  const text = readFileSync(path.join(TESTS_DIR, file), 'utf8');
  const suite = JSON.parse(text) as ConformanceFile;
  // The resources again, with every number kept as written.
  const resources = (parseLossless(text) as { resources: unknown[] }).resources;

  describe(file, () => {
    for (const test of suite.tests) {
      it(`${file} › ${test.title}`, () => {
        const run = (): { view: CompiledView; rows: Record<string, unknown>[] } => {
          const view = compileView(test.view, { source: `${file}#${test.title}` });
          return { view, rows: resources.flatMap((r) => view.evaluate(r)) };
        };
        if (test.expectError) {
          expect(run).toThrow(CarepipeError);
          return;
        }
        const { view, rows } = run();
        if (test.expectColumns) expect(view.columns.map((c) => c.name)).toEqual(test.expectColumns);
        if (test.expect) {
          for (const row of rows) expect(Object.keys(row)).toEqual(view.columns.map((c) => c.name));
          expect(sorted(rows.map((r) => asJson(view, r)))).toEqual(sorted(test.expect));
        }
      });
    }
  });
}
