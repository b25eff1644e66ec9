/**
 * English and French wording of every reason and message of `ingest-appointments` and
 * `appointments refresh-missed`. Messages name the field and never repeat a patient identifier.
 */
import type { ReasonCode } from '../appointments/rules.js';
import { defineCatalogue, translate, type Lang, type MessageParams } from './catalogue.js';

type MessageKey =
  | ReasonCode
  | 'NOW_INVALID'
  | 'INPUT_NOT_FOUND'
  | 'SUMMARY'
  | 'REFRESH_SUMMARY'
  | 'FILE_KIND'
  | 'REJECTED_LINE';

export const appointmentMessages = defineCatalogue<MessageKey>({
  MISSING_FIELD: {
    en: 'the field {field} is missing',
    fr: 'le champ {field} est absent',
  },
  NHS_NUMBER_INVALID: {
    en: 'the NHS number must be 10 digits (spaces and dashes allowed)',
    fr: 'le numéro NHS doit comporter 10 chiffres (espaces et tirets acceptés)',
  },
  NHS_NUMBER_CHECK_DIGIT: {
    en: 'the NHS number fails the modulus 11 check digit',
    fr: 'le numéro NHS échoue au contrôle de la clé modulo 11',
  },
  POSTCODE_INVALID: {
    en: 'the postcode is not a UK postcode (expected a shape like N6 2FA)',
    fr: "le code postal n'est pas un code postal britannique (forme attendue : N6 2FA)",
  },
  TIMESTAMP_NAIVE: {
    en: 'the time has no timezone offset (expected e.g. 2025-06-04T16:30:00+01:00)',
    fr: "l'heure n'a pas de décalage horaire (attendu par exemple 2025-06-04T16:30:00+01:00)",
  },
  TIMESTAMP_INVALID: {
    en: 'the time is not an ISO 8601 date-time with an offset',
    fr: "l'heure n'est pas une date-heure ISO 8601 avec décalage",
  },
  DATE_INVALID: {
    en: 'the date is not a real past date YYYY-MM-DD',
    fr: "la date n'est pas une date passée réelle AAAA-MM-JJ",
  },
  DURATION_INVALID: {
    en: 'the duration must be like 15m, 1h or 1h30m (more than 0, at most 24h)',
    fr: 'la durée doit être de la forme 15m, 1h ou 1h30m (plus de 0, au plus 24h)',
  },
  STATUS_INVALID: {
    en: 'the status must be one of {allowed}',
    fr: "le statut doit être l'un de {allowed}",
  },
  NAME_INVALID: {
    en: 'the name is missing or blank',
    fr: 'le nom est absent ou vide',
  },
  APPOINTMENT_ID_INVALID: {
    en: 'the appointment id is not a uuid',
    fr: "l'identifiant du rendez-vous n'est pas un uuid",
  },
  RECORD_NOT_OBJECT: {
    en: 'the record is not a JSON object',
    fr: "l'enregistrement n'est pas un objet JSON",
  },
  FILE_KIND_UNKNOWN: {
    en: 'cannot tell whether this file holds patients or appointments (its first record has neither nhs_number nor patient)',
    fr: "impossible de savoir si ce fichier contient des patients ou des rendez-vous (son premier enregistrement n'a ni nhs_number ni patient)",
  },
  FILE_INVALID: {
    en: 'the file is not a JSON array of records: {detail}',
    fr: "le fichier n'est pas un tableau JSON d'enregistrements : {detail}",
  },
  TOO_DEEP: {
    en: 'the record nests objects and arrays more than {limit} levels deep',
    fr: "l'enregistrement imbrique objets et tableaux sur plus de {limit} niveaux",
  },
  INVALID_UTF8: {
    en: 'the file is not valid UTF-8 on line {line}: the rest of the file is not read',
    fr: "le fichier n'est pas en UTF-8 valide à la ligne {line} : la suite du fichier n'est pas lue",
  },
  PATIENT_UNKNOWN: {
    en: 'the patient is not known yet; the appointment is kept and retried when the patient arrives',
    fr: "le patient n'est pas encore connu ; le rendez-vous est conservé et réessayé à l'arrivée du patient",
  },
  APPOINTMENT_CANCELLED_IS_FINAL: {
    en: 'the appointment was cancelled and cannot be set back to {status}; the cancelled row stays',
    fr: 'le rendez-vous a été annulé et ne peut pas repasser à {status} ; la ligne annulée est conservée',
  },
  NOW_INVALID: {
    en: '--now must be a date-time with an offset, e.g. 2026-01-01T09:00:00Z',
    fr: '--now doit être une date-heure avec décalage, par exemple 2026-01-01T09:00:00Z',
  },
  INPUT_NOT_FOUND: {
    en: 'no such file: {file}',
    fr: 'fichier introuvable : {file}',
  },
  FILE_KIND: {
    en: '{file}: {kind}',
    fr: '{file} : {kind}',
  },
  SUMMARY: {
    en: (p) =>
      `Read ${p.read} records: ${p.written} written, ${p.unchanged} unchanged, ${p.rejected} rejected; ` +
      `${p.missed} appointments marked missed; ${p.resolved} earlier rejects resolved, ${p.pending} still waiting for their patient`,
    fr: (p) =>
      `${p.read} enregistrements lus : ${p.written} écrits, ${p.unchanged} inchangés, ${p.rejected} rejetés ; ` +
      `${p.missed} rendez-vous marqués manqués ; ${p.resolved} rejets antérieurs résolus, ${p.pending} toujours en attente de leur patient`,
  },
  REFRESH_SUMMARY: {
    en: '{missed} appointments marked missed as of {now}',
    fr: '{missed} rendez-vous marqués manqués au {now}',
  },
  REJECTED_LINE: {
    en: 'rejected',
    fr: 'rejeté',
  },
});

export type AppointmentMessageKey = MessageKey;

/** A message of the appointments commands in `lang`. */
export function appointmentMessage(lang: Lang, key: MessageKey, params?: MessageParams): string {
  return translate(appointmentMessages, lang, key, params);
}
