/**
 * Hit normalisation, the directory's mapper: `(hit) → entry | issues`, pure, and the same as the
 * engine's MapResult (`mapHit`). Values may come as
 * strings, numbers or one-element arrays (CloudSearch's default JSON and its `format=sdk`); they all
 * become NFC strings, blanks become null, and keys are checked (rpps_number 11 digits, finess 9
 * characters) before anything is written.
 */
import type { MapResult } from '../pipeline/run.js';
import type { RejectReason } from '../pipeline/reasons.js';
import { DIRECTORY_FIELDS, MANDATORY_FIELDS, type DirectoryField } from './fields.js';

/** A hit as the directory sends it. */
export interface DirectoryHit {
  id: string;
  fields: Record<string, unknown>;
}

export interface OrganizationRecord {
  finess: string;
  name: string;
  finess_justice: string | null;
  activity_segment_code: string | null;
  activity_segment_name: string | null;
  building_number: string | null;
  city: string | null;
  postcode: string | null;
  bimedoc_client: boolean | null;
}

export interface WorkerRecord {
  rpps_number: string;
  last_name: string;
  first_name: string;
  gender: string | null;
  email: string | null;
  phone_number: string | null;
  profession_code: string | null;
  profession_name: string;
}

export interface LinkRecord {
  finess: string;
  rpps_number: string;
  profession_code: string | null;
  profession_name: string;
  directory_id: string;
}

/** One hit made ready to import: a worker at an organization. */
export interface DirectoryEntry {
  id: string;
  organization: OrganizationRecord;
  worker: WorkerRecord;
  link: LinkRecord;
}

export type IssueCode = Extract<RejectReason, 'MISSING_FIELD' | 'INVALID_RPPS' | 'INVALID_FINESS' | 'INVALID_VALUE' | 'MULTIPLE_VALUES'>;

export interface EntryIssue {
  field: string;
  reasonCode: IssueCode;
  message: string;
}

export type EntryResult = { ok: true; entry: DirectoryEntry } | { ok: false; id: string; issues: EntryIssue[] };

/** Fields whose several values are kept together (a worker may list several secure e-mail addresses). */
const MULTI_VALUED: ReadonlySet<string> = new Set(['email', 'phone_number']);
/** Codes whose leading zeros a JSON number loses: padded back to their width. */
const PADDED: Readonly<Record<string, number>> = { finess: 9, finess_justice: 9, postcode: 5 };

const RPPS = /^\d{11}$/;
// Two characters of département (digits, or 2A/2B for Corsica), then seven digits.
const FINESS = /^(\d{2}|2[AB])\d{7}$/;
const POSTCODE = /^\d{5}$/;

/** A scalar as text: NFC, trimmed, inner runs of white space made one space; blank → null. */
function scalarText(value: unknown, field: string): string | null | EntryIssue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return { field, reasonCode: 'INVALID_VALUE', message: `${field} is not a finite number` };
    const text = Number.isInteger(value) ? value.toFixed(0) : String(value);
    const width = PADDED[field];
    return width && Number.isInteger(value) && value >= 0 ? text.padStart(width, '0') : text;
  }
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') {
    const text = value.normalize('NFC').replace(/\s+/g, ' ').trim();
    return text === '' ? null : text;
  }
  return { field, reasonCode: 'INVALID_VALUE', message: `${field} is an object, expected text` };
}

/** A field's value as one string (or null), whatever shape it came in. */
export function fieldText(value: unknown, field: string): string | null | EntryIssue {
  if (!Array.isArray(value)) return scalarText(value, field);
  const texts: string[] = [];
  for (const item of value) {
    const text = scalarText(item, field);
    if (text !== null && typeof text === 'object') return text;
    if (text !== null && !texts.includes(text)) texts.push(text);
  }
  if (texts.length === 0) return null;
  if (texts.length === 1) return texts[0]!;
  if (MULTI_VALUED.has(field)) return texts.join(', ');
  return { field, reasonCode: 'MULTIPLE_VALUES', message: `${field} has ${texts.length} values where one is expected` };
}

/** Every known field as text, leniently (issues shown as null): for the search table and JSON. */
export function displayFields(hit: DirectoryHit): Partial<Record<DirectoryField, string>> {
  const out: Partial<Record<DirectoryField, string>> = {};
  for (const field of DIRECTORY_FIELDS) {
    if (!(field in hit.fields)) continue;
    const text = fieldText(hit.fields[field], field);
    if (typeof text === 'string') out[field] = text;
  }
  return out;
}

const WHY: Record<string, string> = {
  finess: 'an organization is keyed by its FINESS number',
  registered_name: 'an organization needs a name',
  rpps_number: 'a healthcare worker is keyed by their RPPS number',
  last_name: 'a healthcare worker needs a last name',
  first_name: 'a healthcare worker needs a first name',
  profession_name: 'a healthcare worker needs a profession',
};

function parseBoolean(text: string): boolean | undefined {
  const lower = text.toLowerCase();
  if (['1', 'true', 'yes', 'oui', 'o', 'y'].includes(lower)) return true;
  if (['0', 'false', 'no', 'non', 'n'].includes(lower)) return false;
  return undefined;
}

/** Normalise and check one hit. All problems are reported together; any problem refuses the whole hit. */
export function toEntry(hit: DirectoryHit): EntryResult {
  const issues: EntryIssue[] = [];
  const v: Partial<Record<DirectoryField, string | null>> = {};
  const fields = hit.fields ?? {};
  for (const field of DIRECTORY_FIELDS) {
    const text = fieldText(fields[field], field);
    if (text !== null && typeof text === 'object') {
      issues.push(text);
      v[field] = null;
    } else {
      v[field] = text;
    }
  }
  for (const field of MANDATORY_FIELDS) {
    if (v[field] === null && !issues.some((i) => i.field === field)) {
      issues.push({ field, reasonCode: 'MISSING_FIELD', message: `${field} is missing: ${WHY[field]}` });
    }
  }
  if (v.rpps_number && !RPPS.test(v.rpps_number)) {
    issues.push({ field: 'rpps_number', reasonCode: 'INVALID_RPPS', message: `rpps_number '${v.rpps_number}' is not 11 digits` });
  }
  for (const field of ['finess', 'finess_justice'] as const) {
    const value = v[field];
    if (!value) continue;
    const upper = value.toUpperCase();
    if (FINESS.test(upper)) {
      v[field] = upper;
    } else {
      issues.push({
        field,
        reasonCode: 'INVALID_FINESS',
        message: `${field} '${value}' is not 9 characters of FINESS (2 for the département: digits, 2A or 2B; then 7 digits)`,
      });
    }
  }
  if (v.postcode && !POSTCODE.test(v.postcode)) {
    issues.push({ field: 'postcode', reasonCode: 'INVALID_VALUE', message: `postcode '${v.postcode}' is not 5 digits` });
  }
  let bimedoc: boolean | null = null;
  if (v.bimedoc_client) {
    const parsed = parseBoolean(v.bimedoc_client);
    if (parsed === undefined) {
      issues.push({ field: 'bimedoc_client', reasonCode: 'INVALID_VALUE', message: `bimedoc_client '${v.bimedoc_client}' is not 0/1 or true/false` });
    } else {
      bimedoc = parsed;
    }
  }
  const id = typeof hit.id === 'string' || typeof hit.id === 'number' ? String(hit.id) : '';
  if (issues.length > 0) return { ok: false, id, issues };
  const entry: DirectoryEntry = {
    id,
    organization: {
      finess: v.finess!,
      name: v.registered_name!,
      finess_justice: v.finess_justice ?? null,
      activity_segment_code: v.activity_segment_code ?? null,
      activity_segment_name: v.activity_segment_name ?? null,
      building_number: v.building_number ?? null,
      city: v.city ?? null,
      postcode: v.postcode ?? null,
      bimedoc_client: bimedoc,
    },
    worker: {
      rpps_number: v.rpps_number!,
      last_name: v.last_name!,
      first_name: v.first_name!,
      gender: v.gender ?? null,
      email: v.email ?? null,
      phone_number: v.phone_number ?? null,
      profession_code: v.profession_code ?? null,
      profession_name: v.profession_name!,
    },
    link: {
      finess: v.finess!,
      rpps_number: v.rpps_number!,
      profession_code: v.profession_code ?? null,
      profession_name: v.profession_name!,
      directory_id: id,
    },
  };
  return { ok: true, entry };
}

/**
 * One hit for the engine: its entry keyed by the worker at the organization (rpps_number and finess),
 * or a reject with its first problem's code and field and every problem's message, keyed by the hit's id.
 */
export function mapHit(hit: DirectoryHit): MapResult<DirectoryEntry> {
  const result = toEntry(hit);
  if (result.ok) {
    const { worker, organization } = result.entry;
    return { ok: true, value: result.entry, key: `${worker.rpps_number}@${organization.finess}`, raw: hit };
  }
  const [first] = result.issues;
  return {
    ok: false,
    reason: first!.reasonCode,
    field: first!.field,
    message: result.issues.map((i) => i.message).join('; '),
    key: result.id,
    raw: hit,
  };
}
