/**
 * Reads appointment-system exports: JSON arrays of records, streamed element by element so memory
 * does not grow with the file, told apart (patients or appointments) by content, the fields of their
 * first record. `readExports` is the command's one read: the patient files' records, then the
 * appointments waiting in `rejects` for their patient, then the appointment files' records, each part's
 * end a checkpoint. It reads the database only for the waiting appointments, through the run's `q`.
 */
import { createReadStream } from 'node:fs';
import type { Knex } from 'knex';
import StreamArray from 'stream-json/streamers/StreamArray.js';
import { RejectReasons } from '../pipeline/reasons.js';
import type { CarepipeError } from '../errors.js';
import type { Lang } from '../i18n/catalogue.js';
import { appointmentMessage } from '../i18n/appointments.js';
import { exceedsJsonDepth, MAX_JSON_DEPTH, tooDeepMessage, Utf8Check } from '../io/json-limits.js';
import type { Location, ReadItem } from '../pipeline/run.js';

export type ExportKind = 'patients' | 'appointments';

/**
 * One element of the array (`entry` is its 0-based index, as `jq '.[N]'` counts) or a reason not to
 * read it: `reasonCode` TOO_DEEP for one element (reading goes on), INVALID_UTF8 (with `line`) or none
 * (a syntax error) for the rest of the file.
 */
export type ExportItem =
  | { kind: 'record'; entry: number; value: unknown }
  | { kind: 'invalid'; entry: number; detail: string; reasonCode?: typeof RejectReasons.TOO_DEEP | typeof RejectReasons.INVALID_UTF8; line?: number };

/**
 * Every element of the JSON array in `file`, in order. Bytes that are not UTF-8 or a syntax error end
 * the stream with an `invalid` item; an element nested too deep is an `invalid` item and reading goes on.
 */
export async function* readExportRecords(file: string): AsyncGenerator<ExportItem> {
  const input = createReadStream(file);
  const check = new Utf8Check();
  const stream = StreamArray.withParser();
  input.on('error', (err) => check.destroy(err));
  check.on('error', (err) => stream.destroy(err));
  input.pipe(check).pipe(stream);
  let entry = 0;
  try {
    for await (const element of stream as AsyncIterable<{ key: number; value: unknown }>) {
      entry = element.key + 1;
      if (exceedsJsonDepth(element.value)) {
        yield { kind: 'invalid', entry: element.key, detail: tooDeepMessage(), reasonCode: RejectReasons.TOO_DEEP };
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
  return { kind: 'invalid', entry, detail: failure.message, reasonCode: RejectReasons.INVALID_UTF8, line: failure.context.line! };
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
    if (item.kind === 'invalid' && item.reasonCode === RejectReasons.TOO_DEEP) continue;
    if (item.kind === 'invalid') return { kind: 'invalid', detail: item.detail, ...(item.reasonCode ? { reasonCode: item.reasonCode, line: item.line } : {}) };
    return { kind: recordKind(item.value) ?? 'unknown' };
  }
  return { kind: 'empty' };
}

/** The command that keeps appointments waiting for their patient in `rejects`. */
export const INGEST_COMMAND = 'ingest-appointments';

/** A record as the command reads it: an export's element, or a waiting appointment re-read from `rejects`. */
export interface ExportRecord {
  kind: ExportKind;
  value: unknown;
  /** The `rejects` row this appointment waited in (set when re-read from there). */
  waiting?: number;
}

/** What a file turned out to hold. */
export type FileKind = ExportKind | 'empty' | 'unknown' | 'invalid';

export interface ReadExportsOptions {
  files: string[];
  lang: Lang;
  /** Waiting appointments fetched per query. */
  pageSize: number;
  /** Told the kind of each file, in the order given. */
  onFile?: (file: string, kind: FileKind) => void;
}

/** Appointments kept in `rejects` until their patient arrives, not yet resolved. */
export function waitingRejects(q: Knex | Knex.Transaction) {
  return q('rejects').where({ command: INGEST_COMMAND, reason_code: 'PATIENT_UNKNOWN', retryable: true }).whereNull('resolved_run_id');
}

export async function countWaiting(q: Knex | Knex.Transaction): Promise<number> {
  const [row] = await waitingRejects(q).count<{ n: number }[]>({ n: '*' });
  return Number(row?.n ?? 0);
}

/**
 * Every record the run reads, in the order they must load: patients first, so that the appointments
 * waiting for them, then the appointment files, find them. A file that cannot be read is one `invalid`
 * item; a part's end (a file, the waiting appointments) is a checkpoint, so no batch mixes two parts.
 */
export async function* readExports(options: ReadExportsOptions, q: Knex | Knex.Transaction): AsyncGenerator<ReadItem<ExportRecord, string>> {
  const { lang } = options;
  const byKind: Record<ExportKind, string[]> = { patients: [], appointments: [] };
  for (const file of options.files) {
    const detected = await detectExportKind(file);
    options.onFile?.(file, detected.kind);
    if (detected.kind === 'patients' || detected.kind === 'appointments') byKind[detected.kind].push(file);
    else if (detected.kind === 'invalid' && detected.reasonCode === RejectReasons.INVALID_UTF8) {
      const line = detected.line ?? 1;
      yield { kind: 'invalid', at: { source: file, line }, reject: { reason: 'INVALID_UTF8', message: appointmentMessage(lang, 'INVALID_UTF8', { line }) } };
    } else if (detected.kind === 'invalid') {
      yield { kind: 'invalid', at: { source: file }, reject: { reason: 'FILE_INVALID', message: appointmentMessage(lang, 'FILE_INVALID', { detail: detected.detail }) } };
    } else if (detected.kind === 'unknown') {
      yield { kind: 'invalid', at: { source: file, entry: 0 }, reject: { reason: 'FILE_KIND_UNKNOWN', message: appointmentMessage(lang, 'FILE_KIND_UNKNOWN') } };
    }
  }
  for (const file of byKind.patients) yield* partThenCheckpoint(readFile(file, 'patients', lang), file);
  yield* partThenCheckpoint(readWaiting(q, options.pageSize), 'waiting');
  for (const file of byKind.appointments) yield* partThenCheckpoint(readFile(file, 'appointments', lang), file);
}

/** The part's items, then a checkpoint named `part` when it had any. */
async function* partThenCheckpoint(items: AsyncIterable<ReadItem<ExportRecord, string>>, part: string): AsyncGenerator<ReadItem<ExportRecord, string>> {
  let any = false;
  for await (const item of items) {
    any = true;
    yield item;
  }
  if (any) yield { kind: 'checkpoint', state: part };
}

/** One file's records; bytes that are not UTF-8 or a syntax error end it with one `invalid` item. */
async function* readFile(file: string, kind: ExportKind, lang: Lang): AsyncGenerator<ReadItem<ExportRecord, string>> {
  for await (const item of readExportRecords(file)) {
    const at: Location = { source: file, entry: item.entry };
    if (item.kind === 'record') {
      yield { kind: 'record', record: { kind, value: item.value }, at };
    } else if (item.reasonCode === RejectReasons.TOO_DEEP) {
      yield { kind: 'invalid', at, reject: { reason: 'TOO_DEEP', message: appointmentMessage(lang, 'TOO_DEEP', { limit: MAX_JSON_DEPTH }) } };
    } else if (item.reasonCode === RejectReasons.INVALID_UTF8) {
      const line = item.line ?? 1;
      yield { kind: 'invalid', at: { source: file, line }, reject: { reason: 'INVALID_UTF8', message: appointmentMessage(lang, 'INVALID_UTF8', { line }) } };
      return;
    } else {
      yield { kind: 'invalid', at, reject: { reason: 'FILE_INVALID', message: appointmentMessage(lang, 'FILE_INVALID', { detail: item.detail }) } };
      return;
    }
  }
}

/** The waiting appointments, oldest first, a page of rows per query; each keeps its own file and entry. */
async function* readWaiting(q: Knex | Knex.Transaction, pageSize: number): AsyncGenerator<ReadItem<ExportRecord, string>> {
  let after = 0;
  for (;;) {
    const rows = (await waitingRejects(q)
      .where('id', '>', after)
      .orderBy('id')
      .limit(pageSize)
      .select('id', 'source', 'entry', 'raw')) as { id: number | string; source: string; entry: number | null; raw: unknown }[];
    if (rows.length === 0) return;
    after = Number(rows[rows.length - 1]!.id);
    for (const row of rows) {
      yield {
        kind: 'record',
        record: { kind: 'appointments', value: parseRaw(row.raw), waiting: Number(row.id) },
        at: { source: row.source, entry: row.entry ?? undefined },
      };
    }
  }
}

/** `rejects.raw` as kept: JSON text (or already parsed by the driver); unreadable is null. */
function parseRaw(raw: unknown): unknown {
  if (typeof raw !== 'string') return raw ?? null;
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}
