/**
 * The SQL on FHIR v2 conformance suite run from outside the code, the way a user would: each case's
 * view in a file, its resources as ndjson on stdin of `carepipe view run --view FILE -`, the rows read
 * back from stdout (`main` in-process, same code as the binary, to keep 134 runs quick).
 * An expected error must give a non-zero exit: 2 for a view rejected up front, 1 when a record
 * cannot be mapped (e.g. a collection in a column that is not one).
 * The rows are compared as printed, parsed as JSON and nothing else: ndjson writes values the way
 * FHIR JSON and the suite do (decimals as numbers, binary as base64).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseLossless, stringify as stringifyLossless } from 'lossless-json';
import { afterAll, describe, expect, it } from 'vitest';
import { runMain, SHARED } from './helpers/cli.js';

const TESTS_DIR = path.join(SHARED, 'sql-on-fhir', 'tests');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'carepipe-conformance-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface ConformanceCase {
  title: string;
  view: unknown;
  expect?: Record<string, unknown>[];
  expectColumns?: string[];
  expectError?: boolean;
}

const sortKey = (row: Record<string, unknown>): string => JSON.stringify(Object.keys(row).sort().map((k) => [k, row[k]]));
const sorted = (rows: Record<string, unknown>[]) => [...rows].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));

const files = readdirSync(TESTS_DIR).filter((f) => f.endsWith('.json')).sort();

let n = 0;
for (const file of files) {
  const text = readFileSync(path.join(TESTS_DIR, file), 'utf8');
  const suite = JSON.parse(text) as { tests: ConformanceCase[] };
  // Resources keep their numbers as written (`1.0`) on their way to stdin.
  const ndjson = (parseLossless(text) as { resources: unknown[] }).resources.map((r) => stringifyLossless(r)).join('\n') + '\n';

  describe(`view run: ${file}`, () => {
    for (const test of suite.tests) {
      it(test.title, async () => {
        const viewFile = path.join(tmp, `view-${n++}.json`);
        writeFileSync(viewFile, JSON.stringify(test.view));
        const format = test.expect ? 'ndjson' : 'csv';
        const result = await runMain(['view', 'run', '--view', viewFile, '--format', format, '--quiet', '-'], { input: ndjson });
        if (test.expectError) {
          expect(result.code === 2 || result.code === 1, result.stderr).toBe(true);
          expect(result.stderr).not.toBe('');
          return;
        }
        expect(result.code, result.stderr).toBe(0);
        if (test.expectColumns && format === 'csv') expect(result.stdout.split('\n')[0]).toBe(test.expectColumns.join(','));
        if (test.expect) {
          const rows = result.stdout
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => JSON.parse(l) as Record<string, unknown>);
          if (test.expectColumns) for (const row of rows) expect(Object.keys(row)).toEqual(test.expectColumns);
          expect(sorted(rows)).toEqual(sorted(test.expect));
        }
      });
    }
  });
}
