/**
 * Reads an appointment-system export: a JSON array of records, streamed element by element so memory
 * does not grow with the file. It tells a patients file from an appointments file by content (the
 * fields of its first record). It knows nothing of the database.
 */
import { createReadStream } from 'node:fs';
import StreamArray from 'stream-json/streamers/StreamArray.js';
import { RejectReasons as ReasonCodes } from '../pipeline/reasons.js';
import type { CarepipeError } from '../errors.js';
import { exceedsJsonDepth, tooDeepMessage, Utf8Check } from '../io/json-limits.js';

export type ExportKind = 'patients' | 'appointments';

/**
 * One element of the array (`entry` is its 0-based index, as `jq '.[N]'` counts) or a reason not to
 * read it: `reasonCode` TOO_DEEP for one element (reading goes on), INVALID_UTF8 (with `line`) or none
 * (a syntax error) for the rest of the file.
 */
export type ExportItem =
  | { kind: 'record'; entry: number; value: unknown }
  | { kind: 'invalid'; entry: number; detail: string; reasonCode?: typeof ReasonCodes.TOO_DEEP | typeof ReasonCodes.INVALID_UTF8; line?: number };

/**
 * Every element of the JSON array in `file`, in order. Bytes that are not UTF-8 or a syntax error end
 * the stream with an `invalid` item; an element nested too deep is an `invalid` item and reading goes on.
 */
export async function* readExportRecords(file: string, signal?: AbortSignal): AsyncGenerator<ExportItem> {
  const input = createReadStream(file);
  const check = new Utf8Check();
  const stream = StreamArray.withParser();
  input.on('error', (err) => check.destroy(err));
  check.on('error', (err) => stream.destroy(err));
  input.pipe(check).pipe(stream);
  let entry = 0;
  try {
    for await (const element of stream as AsyncIterable<{ key: number; value: unknown }>) {
      if (signal?.aborted) return;
      entry = element.key + 1;
      if (exceedsJsonDepth(element.value)) {
        yield { kind: 'invalid', entry: element.key, detail: tooDeepMessage(), reasonCode: ReasonCodes.TOO_DEEP };
        continue;
      }
      yield { kind: 'record', entry: element.key, value: element.value };
    }
    if (check.failure) yield utf8Invalid(entry, check.failure);
  } catch (err) {
    // Bytes that are not UTF-8 end the text early: that, not the cut JSON, is what to report.
    if (check.failure) yield utf8Invalid(entry, check.failure);
    else yield { kind: 'invalid', entry, detail: (err as Error).message };
  } finally {
    input.destroy();
    check.destroy();
    stream.destroy();
  }
}

function utf8Invalid(entry: number, failure: CarepipeError): ExportItem {
  return { kind: 'invalid', entry, detail: failure.message, reasonCode: ReasonCodes.INVALID_UTF8, line: failure.context.line! };
}

/** What a record is, from its fields: a patient has `nhs_number`, an appointment has `patient`. */
export function recordKind(value: unknown): ExportKind | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  if ('patient' in value) return 'appointments';
  if ('nhs_number' in value) return 'patients';
  return undefined;
}

/**
 * The kind of an export file, from its first record; `empty` for an empty array. Reads one element and
 * stops. A file that is not a JSON array comes back as `invalid` with the parser's words.
 */
export async function detectExportKind(
  file: string,
): Promise<{ kind: ExportKind | 'empty' | 'unknown' } | { kind: 'invalid'; detail: string; reasonCode?: string; line?: number }> {
  for await (const item of readExportRecords(file)) {
    // A first record nested too deep says nothing of the file: the next one may.
    if (item.kind === 'invalid' && item.reasonCode === ReasonCodes.TOO_DEEP) continue;
    if (item.kind === 'invalid') return { kind: 'invalid', detail: item.detail, ...(item.reasonCode ? { reasonCode: item.reasonCode, line: item.line } : {}) };
    return { kind: recordKind(item.value) ?? 'unknown' };
  }
  return { kind: 'empty' };
}
