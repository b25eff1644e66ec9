/**
 * The mapper of ingest-fhir: one resource in, the row to store in fhir_resources and its rows for
 * every flat table out — or the reason it cannot be loaded. Pure: no I/O, tested without a database.
 * `fhirMapper` is the engine's map stage (src/pipeline/run.ts): key `Type/id`, group the resource
 * type, weight the characters of JSON (what bounds a batch's memory).
 */
import { createHash } from 'node:crypto';
import type { FhirResource } from 'fhir/r4.js';
import { isLosslessNumber, stringify as stringifyLossless, type LosslessNumber } from 'lossless-json';
import { isCarepipeError } from '../errors.js';
import { firstInstantOf } from './view/types.js';
import type { Location, MapResult } from '../pipeline/run.js';
import type { FhirRecord } from './read/source.js';
import type { FlatView } from './views.js';
import { RECORD_ID_COLUMN, RECORD_TYPE_COLUMN, ROW_INDEX_COLUMN, type RecordKey } from './write/flat-table.js';
import type { Row } from '../io/json-rows.js';
import type { StoredDocument } from './write/resource-store.js';

export interface MappedResource {
  document: Omit<StoredDocument, 'source'>;
  /** Rows per table name; a table the resource's views give no rows keeps an empty list (its old rows go). */
  rows: Map<string, Row[]>;
  /** Partial dates and dateTimes (`2020-05`) stored as the first instant of their period. */
  partialDates: number;
}

export interface MappingIssue {
  reasonCode: 'WRONG_TYPE' | 'INVALID_META';
  field: string;
  message: string;
}

const INSTANT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/** Columns whose values the view gives in FHIR's JSON form and a table stores otherwise. */
interface TypedColumn {
  name: string;
  sqlType: 'numeric' | 'date' | 'timestamptz';
}

const typedColumnsOf = new WeakMap<FlatView, TypedColumn[]>();

function typedColumns(v: FlatView): TypedColumn[] {
  let columns = typedColumnsOf.get(v);
  if (!columns) {
    columns = v.table.columns.filter((c): c is TypedColumn => c.sqlType === 'numeric' || c.sqlType === 'date' || c.sqlType === 'timestamptz');
    typedColumnsOf.set(v, columns);
  }
  return columns;
}

/**
 * The row as its table stores it: a decimal as its digits (Postgres reads them exactly into numeric),
 * a partial date as the first instant of its period. Returns how many partial dates it met.
 */
function toTableRow(row: Record<string, unknown>, columns: TypedColumn[]): number {
  let partial = 0;
  for (const c of columns) {
    const v = row[c.name];
    if (v === null || v === undefined) continue;
    if (c.sqlType === 'numeric') {
      if (isLosslessNumber(v)) row[c.name] = (v as LosslessNumber).value;
    } else if (typeof v === 'string') {
      const stored = firstInstantOf(v, c.sqlType);
      row[c.name] = stored.value;
      if (stored.partial) partial++;
    }
  }
  return partial;
}

/** Views grouped by the resource type they read. */
export function viewsByResourceType(views: readonly FlatView[]): Map<string, FlatView[]> {
  const byType = new Map<string, FlatView[]>();
  for (const v of views) byType.set(v.view.resource, [...(byType.get(v.view.resource) ?? []), v]);
  return byType;
}

/**
 * `text`, when the reader has it, is the resource's JSON as it came (see FhirItem): stored and hashed
 * as it is, which keeps every digit and saves serialising the resource again. Otherwise the parsed
 * resource is serialised. Copies of one resource whose texts differ but whose JSON is equal still
 * count as unchanged: the store compares the documents when their hashes differ.
 */
export function mapResource(resource: FhirResource & { id: string }, views: readonly FlatView[], text?: string): MappedResource | MappingIssue {
  const meta = resource.meta;
  const lastUpdated = meta?.lastUpdated;
  if (lastUpdated !== undefined && (typeof lastUpdated !== 'string' || !INSTANT.test(lastUpdated) || Number.isNaN(Date.parse(lastUpdated)))) {
    return { reasonCode: 'INVALID_META', field: 'meta.lastUpdated', message: 'meta.lastUpdated is not an instant (YYYY-MM-DDThh:mm:ss with a time zone)' };
  }
  const versionId = meta?.versionId;
  if (versionId !== undefined && typeof versionId !== 'string') {
    return { reasonCode: 'INVALID_META', field: 'meta.versionId', message: 'meta.versionId is not a string' };
  }
  const mapped = mapRows(resource, views);
  if (isMappingIssue(mapped)) return mapped;
  // A resource read losslessly holds LosslessNumbers, which only the lossless stringify writes as numbers.
  const json = text ?? stringifyLossless(resource)!;
  return {
    document: {
      type: resource.resourceType,
      id: resource.id,
      versionId: versionId ?? null,
      lastUpdated: lastUpdated ?? null,
      json,
      contentHash: createHash('sha256').update(json).digest('base64url'),
    },
    rows: mapped.rows,
    partialDates: mapped.partialDates,
  };
}

/** The rows of a resource, per table: what both ingest-fhir and `views refresh` write (see MappedResource). */
export interface MappedRows {
  rows: Map<string, Row[]>;
  partialDates: number;
}

/**
 * The flat rows of one resource through `views` (those of its type), as its tables store them, or
 * the reason one view cannot map it. ingest-fhir maps each resource it reads through this, and
 * `views refresh` each stored one: both write the same rows.
 */
export function mapRows(resource: FhirResource & { id: string }, views: readonly FlatView[]): MappedRows | MappingIssue {
  const rows = new Map<string, Row[]>();
  let partialDates = 0;
  for (const v of views) {
    let viewRows: Record<string, unknown>[];
    try {
      viewRows = v.view.evaluate(resource);
    } catch (err) {
      if (!isCarepipeError(err)) throw err;
      const column = typeof err.context.field === 'string' ? err.context.field : undefined;
      return { reasonCode: 'WRONG_TYPE', field: column ? `${v.table.table}.${column}` : v.table.table, message: err.message };
    }
    const list = rows.get(v.table.table) ?? [];
    const typed = typedColumns(v);
    for (const row of viewRows) {
      if (typed.length > 0) partialDates += toTableRow(row, typed);
      // Several views may fill one table from one resource: the position counts across all of them.
      list.push({ ...row, [RECORD_TYPE_COLUMN]: resource.resourceType, [RECORD_ID_COLUMN]: resource.id, [ROW_INDEX_COLUMN]: list.length });
    }
    rows.set(v.table.table, list);
  }
  return { rows, partialDates };
}

export function isMappingIssue<T extends object>(result: T | MappingIssue): result is MappingIssue {
  return 'reasonCode' in result;
}

/** What the writer gets: a mapped resource to merge, or a record to mark deleted. */
export type FhirValue = { kind: 'resource'; key: RecordKey; mapped: MappedResource } | { kind: 'delete'; key: RecordKey };

/** The engine's map stage over `views` (the shipped ones and the user's). */
export function fhirMapper(views: readonly FlatView[]): (record: FhirRecord, at: Location) => MapResult<FhirValue> {
  const byType = viewsByResourceType(views);
  return (record) => {
    if (record.kind === 'delete') {
      const key = { type: record.resourceType, id: record.id };
      return { ok: true, value: { kind: 'delete', key }, key: `${key.type}/${key.id}`, group: key.type, weight: 0 };
    }
    const { resource } = record;
    const key = { type: resource.resourceType, id: resource.id };
    const mapped = mapResource(resource, byType.get(key.type) ?? [], record.text);
    if (isMappingIssue(mapped)) {
      return { ok: false, reason: mapped.reasonCode, message: mapped.message, field: mapped.field, key: `${key.type}/${key.id}`, group: key.type, raw: resource };
    }
    const json = mapped.document.json;
    return { ok: true, value: { kind: 'resource', key, mapped }, key: `${key.type}/${key.id}`, group: key.type, weight: json.length, raw: json };
  };
}
