/**
 * Why a record was rejected: one closed list for every command, stored in `rejects.reason_code`.
 * A code names what is wrong with the record, never the command that met it, so the same fault reads
 * the same whether it came from a FHIR file, a provider's API, the directory or an appointment export.
 * Adding a code is a change to this list (and to docs/commands/rejects.md), not a string at a call site.
 */

export const RejectReasons = {
  // The input could not be read as records at all.
  /** Text that is not JSON (a line of ndjson, a whole document). */
  INVALID_JSON: 'INVALID_JSON',
  /** A .gz file that is not gzip, or is cut short. */
  INVALID_GZIP: 'INVALID_GZIP',
  /** Bytes that are not UTF-8: that line, or a document from that line on, is not read. */
  INVALID_UTF8: 'INVALID_UTF8',
  /** Objects and arrays nested deeper than the reader's limit (src/io/json-limits.ts). */
  TOO_DEEP: 'TOO_DEEP',
  /** A file whose layout is not the one its format requires. */
  FILE_INVALID: 'FILE_INVALID',
  /** A file that is none of the kinds the command reads. */
  FILE_KIND_UNKNOWN: 'FILE_KIND_UNKNOWN',
  /** A record that is not a JSON object. */
  RECORD_NOT_OBJECT: 'RECORD_NOT_OBJECT',
  /** A record that is an object but not of the shape its source promises. */
  RECORD_INVALID: 'RECORD_INVALID',

  // FHIR resources.
  /** JSON that is not a FHIR resource (no object, or a Bundle where a resource belongs). */
  NOT_A_RESOURCE: 'NOT_A_RESOURCE',
  /** A resource without `resourceType`. */
  MISSING_RESOURCE_TYPE: 'MISSING_RESOURCE_TYPE',
  /** A `resourceType` that is not a FHIR type name. */
  INVALID_RESOURCE_TYPE: 'INVALID_RESOURCE_TYPE',
  /** A Bundle entry or search hit without a usable resource. */
  RESOURCE_INVALID: 'RESOURCE_INVALID',
  /** `meta.lastUpdated` that is not an instant, or `meta.versionId` that is not a string. */
  INVALID_META: 'INVALID_META',
  /** A Bundle `urn:uuid:` reference to no entry of the Bundle. */
  UNRESOLVED_REFERENCE: 'UNRESOLVED_REFERENCE',
  /** A Bundle DELETE request carepipe cannot apply (no type and id in its URL). */
  UNSUPPORTED_DELETE: 'UNSUPPORTED_DELETE',

  // Keys and fields, in any source.
  /** No identifier to key the record by. */
  MISSING_ID: 'MISSING_ID',
  /** An identifier that is not of the form its source requires. */
  INVALID_ID: 'INVALID_ID',
  /** A required field is absent or empty. */
  MISSING_FIELD: 'MISSING_FIELD',
  /** A person's name is absent or empty. */
  NAME_MISSING: 'NAME_MISSING',
  /** A field's value is not one the field allows. */
  INVALID_VALUE: 'INVALID_VALUE',
  /** Several values where one is expected. */
  MULTIPLE_VALUES: 'MULTIPLE_VALUES',
  /** A value that does not fit the column's type (a view's type hint). */
  WRONG_TYPE: 'WRONG_TYPE',

  // Directory entries.
  /** An `rpps_number` that is not 11 digits. */
  INVALID_RPPS: 'INVALID_RPPS',
  /** A `finess` that is not 9 characters of the FINESS form. */
  INVALID_FINESS: 'INVALID_FINESS',

  // Patients and appointments (NHS rules, src/appointments/rules.ts).
  /** An NHS number that is not 10 digits. */
  NHS_NUMBER_INVALID: 'NHS_NUMBER_INVALID',
  /** An NHS number whose check digit is wrong. */
  NHS_NUMBER_CHECK_DIGIT: 'NHS_NUMBER_CHECK_DIGIT',
  /** A postcode that is not a UK postcode. */
  POSTCODE_INVALID: 'POSTCODE_INVALID',
  /** A timestamp without a time-zone offset. */
  TIMESTAMP_NAIVE: 'TIMESTAMP_NAIVE',
  /** A timestamp that is not ISO 8601. */
  TIMESTAMP_INVALID: 'TIMESTAMP_INVALID',
  /** A date that does not exist, or a birth date in the future. */
  DATE_INVALID: 'DATE_INVALID',
  /** A duration that is not a positive number of minutes. */
  DURATION_INVALID: 'DURATION_INVALID',
  /** A status outside the list the export allows. */
  STATUS_INVALID: 'STATUS_INVALID',
  /** A name that is empty or not text. */
  NAME_INVALID: 'NAME_INVALID',
  /** An appointment id that is not a UUID. */
  APPOINTMENT_ID_INVALID: 'APPOINTMENT_ID_INVALID',
  /** Kept, retryable: loaded by a later run once the patient arrives. */
  PATIENT_UNKNOWN: 'PATIENT_UNKNOWN',
  /** A change to an appointment already cancelled: cancellation is final. */
  APPOINTMENT_CANCELLED_IS_FINAL: 'APPOINTMENT_CANCELLED_IS_FINAL',

  // The database.
  /** Postgres refused a value (a data exception, e.g. a NUL character in text); found by halving the batch. */
  DATABASE_REFUSED: 'DATABASE_REFUSED',
} as const;

export type RejectReason = keyof typeof RejectReasons;

/** Codes stored by earlier versions, and the code that replaced each (migration 20261207_000). */
export const RENAMED_REASONS: Readonly<Record<string, { to: RejectReason; command: string }>> = {
  ID_MISSING: { to: 'MISSING_ID', command: 'import-clinicians' },
  FIELD_MISSING: { to: 'MISSING_FIELD', command: 'ingest-appointments' },
};

export function isRejectReason(code: string): code is RejectReason {
  return Object.prototype.hasOwnProperty.call(RejectReasons, code);
}
