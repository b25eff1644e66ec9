/**
 * A ViewDefinition evaluated straight over FHIR files, no database: what `carepipe view run` does so
 * that a data engineer can develop a view on sample files, and what the conformance tests can be run
 * through from outside. Rows go to a RowWriter; records that cannot be read or mapped are reported
 * through `onReject` and the run goes on.
 */
import type { Readable } from 'node:stream';
import { isCarepipeError } from '../../errors.js';
import { readFhirFiles } from '../read/files.js';
import type { RowWriter } from '../../io/rows.js';
import type { CompiledView } from './index.js';

export interface ViewRunReject {
  source: string;
  line?: number;
  entry?: number;
  /** `Type/id` when the record was read as a resource. */
  record?: string;
  reasonCode: string;
  field?: string;
  message: string;
}

export interface ViewRunOptions {
  view: CompiledView;
  inputs: readonly string[];
  writer: RowWriter;
  cwd?: string;
  stdin?: Readable;
  signal?: AbortSignal;
  onReject?: (reject: ViewRunReject) => void;
  /** Most bytes taken from stdin (--max-response-mb). */
  maxStdinBytes?: number;
  /** Told of inputs passed over without failing the run (a symbolic link loop in a folder). */
  onWarning?: (message: string) => void;
  /** Called after each file with the counts so far (progress). */
  onFile?: (counts: ViewRunCounts) => void;
}

export interface ViewRunCounts {
  files: number;
  /** Resources read, of any type. */
  resources: number;
  /** Resources of the view's type. */
  matched: number;
  rows: number;
  rejected: number;
}

/** Evaluates the view over every resource of the inputs, in input order. */
export async function runViewOverFiles(options: ViewRunOptions): Promise<ViewRunCounts> {
  const { view, writer } = options;
  const counts: ViewRunCounts = { files: 0, resources: 0, matched: 0, rows: 0, rejected: 0 };
  const reject = (r: ViewRunReject) => {
    counts.rejected++;
    options.onReject?.(r);
  };
  // Lossless numbers: a decimal column shows the digits of the file (`1.50`), as FHIR requires.
  // A view can be tried on examples that have no id (getResourceKey() is then null).
  const items = readFhirFiles(options.inputs, {
    cwd: options.cwd,
    stdin: options.stdin,
    signal: options.signal,
    numbers: 'lossless',
    requireId: false,
    maxStdinBytes: options.maxStdinBytes,
    onWarning: options.onWarning,
  });
  for await (const item of items) {
    switch (item.kind) {
      case 'resource': {
        counts.resources++;
        if (item.resource.resourceType !== view.resource) break;
        counts.matched++;
        let rows: Record<string, unknown>[];
        try {
          rows = view.evaluate(item.resource);
        } catch (err) {
          if (!isCarepipeError(err) || err.code !== 'RECORD_INVALID') throw err;
          reject({
            source: item.source,
            line: item.line,
            entry: item.entry,
            record: item.resource.id === undefined ? undefined : `${item.resource.resourceType}/${item.resource.id}`,
            reasonCode: 'INVALID_VALUE',
            field: err.context.field,
            message: err.message,
          });
          break;
        }
        for (const row of rows) await writer.write(row);
        counts.rows += rows.length;
        break;
      }
      case 'invalid':
        reject({ source: item.source, line: item.line, entry: item.entry, reasonCode: item.reasonCode, field: item.field, message: item.message });
        break;
      case 'checkpoint':
        counts.files++;
        options.onFile?.(counts);
        break;
      case 'delete':
        // A deletion has no row to show.
        break;
    }
  }
  await writer.end();
  return counts;
}
