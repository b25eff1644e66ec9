/**
 * The directory's schema as carepipe knows it: the fields a hit may carry, which side of the
 * import (worker, organization) each belongs to, and which are mandatory.
 */

/** Fields describing the worker (personal). */
export const WORKER_FIELDS = [
  'rpps_number',
  'first_name',
  'last_name',
  'gender',
  'email',
  'phone_number',
  'profession_code',
  'profession_name',
] as const;

/** Fields describing the organization the worker is at. */
export const ORGANIZATION_FIELDS = [
  'finess',
  'finess_justice',
  'registered_name',
  'activity_segment_code',
  'activity_segment_name',
  'building_number',
  'city',
  'postcode',
  'bimedoc_client',
] as const;

export const DIRECTORY_FIELDS = [...WORKER_FIELDS, ...ORGANIZATION_FIELDS] as const;
export type DirectoryField = (typeof DIRECTORY_FIELDS)[number];

/** Names `return=` also accepts besides the schema's fields. */
export const RETURN_PSEUDO_FIELDS = ['_score', '_all_fields', '_no_fields'] as const;

/** Mandatory for an import, in the order they are checked (keys first). */
export const MANDATORY_FIELDS: readonly DirectoryField[] = [
  'finess',
  'registered_name',
  'rpps_number',
  'last_name',
  'first_name',
  'profession_name',
];

export function isDirectoryField(name: string): name is DirectoryField {
  return (DIRECTORY_FIELDS as readonly string[]).includes(name);
}
