/**
 * Reads an appointment-system export: a JSON array of records, streamed element by element so memory
 * does not grow with the file. It tells a patients file from an appointments file by content (the
 * fields of its first record). It knows nothing of the database.
 */
import { createReadStream } from 'node:fs';
import StreamArray from 'stream-json/streamers/StreamArray.js';

export type ExportKind = 'patients' | 'appointments';

/** One element of the array (`entry` is its 0-based index, as `jq '.[N]'` counts) or the reason reading stopped. */
export type ExportItem =
  | { kind: 'record'; entry: number; value: unknown }
  | { kind: 'invalid'; entry: number; detail: string };

/** Every element of the JSON array in `file`, in order. A syntax error ends the stream with an `invalid` item. */
export async function* readExportRecords(file: string, signal?: AbortSignal): AsyncGenerator<ExportItem> {
  const input = createReadStream(file);
  const stream = StreamArray.withParser();
  input.on('error', (err) => stream.destroy(err));
  input.pipe(stream);
  let entry = 0;
  try {
    for await (const element of stream as AsyncIterable<{ key: number; value: unknown }>) {
      if (signal?.aborted) return;
      entry = element.key + 1;
      yield { kind: 'record', entry: element.key, value: element.value };
    }
  } catch (err) {
    yield { kind: 'invalid', entry, detail: (err as Error).message };
  } finally {
    input.destroy();
    stream.destroy();
  }
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
export async function detectExportKind(file: string): Promise<{ kind: ExportKind | 'empty' | 'unknown' } | { kind: 'invalid'; detail: string }> {
  for await (const item of readExportRecords(file)) {
    if (item.kind === 'invalid') return { kind: 'invalid', detail: item.detail };
    return { kind: recordKind(item.value) ?? 'unknown' };
  }
  return { kind: 'empty' };
}
