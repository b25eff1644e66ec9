/**
 * Export profiles. `clinical` passes every column through; `research` applies each column's declared
 * treatment (src/export/treatments.ts) and refuses a column that has none rather than leak it.
 */
import { createHmac } from 'node:crypto';
import { CarepipeError } from '../errors.js';
import type { Treatment } from './treatments.js';

export type Profile = 'clinical' | 'research';
export const PROFILES: Profile[] = ['clinical', 'research'];
export const TREATMENTS: Treatment[] = ['keep', 'drop', 'pseudonym', 'year', 'postcode_outward'];

/** A column of the source as it will be read, with its declared treatment if any. */
export interface SourceColumn {
  name: string;
  treatment?: Treatment;
}

/** What happens to one output column's text. */
export type CellTransform = (cell: string) => string;

/**
 * A keyed pseudonym: HMAC-SHA256 of the value under the key, as 64 hex digits. The same value and key
 * always give the same pseudonym (joins across files still work); without the key it cannot be
 * reversed or recomputed, and another key gives unrelated pseudonyms.
 */
export function pseudonymiser(key: string): CellTransform {
  return (value) => createHmac('sha256', key).update(value, 'utf8').digest('hex');
}

/** A date or timestamp generalised to its year; anything else becomes empty rather than leak. */
export function toYear(value: string): string {
  const match = /^(\d{4})(?:-|$)/.exec(value);
  return match ? match[1]! : '';
}

const UK_POSTCODE = /^([A-Z]{1,2}[0-9][A-Z0-9]?) ?[0-9][A-Z]{2}$/;
const UK_OUTWARD = /^[A-Z]{1,2}[0-9][A-Z0-9]?$/;

/**
 * A UK postcode generalised to its outward code (`N6 2FA` → `N6`, `sw1a1aa` → `SW1A`). A value that
 * is not a UK postcode becomes empty: an unknown shape cannot be generalised safely.
 */
export function toPostcodeOutward(value: string): string {
  const compact = value.trim().toUpperCase().replace(/\s+/g, ' ');
  const match = UK_POSTCODE.exec(compact);
  if (match) return match[1]!;
  return UK_OUTWARD.test(compact) ? compact : '';
}

/** Shorter keys are refused. */
export const MIN_KEY_LENGTH = 16;

export interface ProfileOptions {
  profile: Profile;
  /** CAREPIPE_PSEUDONYM_KEY; required by the research profile. */
  pseudonymKey?: string;
  /** What the columns belong to, for messages: a source name or a view file. */
  source: string;
}

/** The plan for one output column: its name and the transform of its non-null cells (if any). */
export interface ProfiledColumn {
  name: string;
  /** Index of the column in the rows read. */
  index: number;
  transform?: CellTransform;
}

/**
 * Applies a profile to a source's columns: which are written and how. In the research profile a
 * column without a declared treatment stops the export (PROFILE_UNDECLARED_COLUMN, exit 2), dropped
 * columns are left out, and the profile needs the pseudonym key (PSEUDONYM_KEY_MISSING, exit 2).
 */
export function applyProfile(columns: SourceColumn[], options: ProfileOptions): ProfiledColumn[] {
  if (options.profile === 'clinical') return columns.map((c, index) => ({ name: c.name, index }));
  if (!options.pseudonymKey) {
    throw new CarepipeError('PSEUDONYM_KEY_MISSING', 'the research profile needs CAREPIPE_PSEUDONYM_KEY: a secret key for the pseudonyms');
  }
  if (options.pseudonymKey.length < MIN_KEY_LENGTH) {
    // NHS numbers and ids are few enough to try them all: a short key would make pseudonyms guessable.
    throw new CarepipeError('PSEUDONYM_KEY_MISSING', `CAREPIPE_PSEUDONYM_KEY must be at least ${MIN_KEY_LENGTH} characters`);
  }
  const undeclared = columns.filter((c) => c.treatment === undefined).map((c) => c.name);
  if (undeclared.length > 0) {
    throw new CarepipeError(
      'PROFILE_UNDECLARED_COLUMN',
      `${options.source}: column${undeclared.length > 1 ? 's' : ''} ${undeclared.join(', ')} ha${undeclared.length > 1 ? 've' : 's'} no declared research treatment; ` +
        'declare one (keep, drop, pseudonym, year, postcode_outward) or leave the column out with --columns',
      { field: undeclared[0] },
    );
  }
  const pseudonym = pseudonymiser(options.pseudonymKey);
  const out: ProfiledColumn[] = [];
  columns.forEach((c, index) => {
    switch (c.treatment) {
      case 'drop':
        return;
      case 'keep':
        out.push({ name: c.name, index });
        return;
      case 'pseudonym':
        out.push({ name: c.name, index, transform: pseudonym });
        return;
      case 'year':
        out.push({ name: c.name, index, transform: toYear });
        return;
      case 'postcode_outward':
        out.push({ name: c.name, index, transform: toPostcodeOutward });
        return;
    }
  });
  return out;
}
