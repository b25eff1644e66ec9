/**
 * What makes a parsed JSON value a resource the FHIR readers hand on: an object with a resourceType of
 * FHIR's form and (when loading) an id of FHIR's form. A value that is not is an `invalid` item with
 * one of the closed list's codes (src/pipeline/reasons.ts) and the field at fault.
 */
import { isLosslessNumber } from 'lossless-json';
import type { RejectReason } from '../../pipeline/reasons.js';

export type Json = Record<string, unknown>;

/** Longest `raw` text kept with an invalid item. */
export const MAX_RAW = 1024 * 1024;
const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !isLosslessNumber(value);
}

/**
 * Why `value` is not a resource, or undefined when it is. `show` writes a value for a message (e.g. a
 * resourceType that is not a string); `requireId: false` lets a resource without an id through.
 */
export function resourceProblem(
  value: unknown,
  options: { requireId: boolean; show: (value: unknown) => string },
): { reason: RejectReason; message: string; field?: string } | undefined {
  if (!isObject(value)) {
    return { reason: 'NOT_A_RESOURCE', message: `expected a FHIR resource (a JSON object), got ${Array.isArray(value) ? 'an array' : typeof value}` };
  }
  const { resourceType, id } = value;
  if (resourceType === undefined) return { reason: 'MISSING_RESOURCE_TYPE', message: 'the resource has no resourceType', field: 'resourceType' };
  if (typeof resourceType !== 'string' || !RESOURCE_TYPE.test(resourceType)) {
    return { reason: 'INVALID_RESOURCE_TYPE', message: `resourceType ${JSON.stringify(options.show(resourceType))} is not a FHIR resource type`, field: 'resourceType' };
  }
  if (id === undefined && options.requireId) return { reason: 'MISSING_ID', message: `the ${resourceType} has no id`, field: 'id' };
  if (id !== undefined && (typeof id !== 'string' || !FHIR_ID.test(id))) {
    return { reason: 'INVALID_ID', message: `the ${resourceType} id is not a FHIR id (1-64 letters, digits, '-' or '.')`, field: 'id' };
  }
  return undefined;
}
