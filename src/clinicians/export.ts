/**
 * The `clinicians` table for export-csv. Clinicians are staff, not patients, but their names and
 * contacts identify them: the research profile drops them and keeps the professional attributes.
 */
import type { SourceDeclaration } from '../export/treatments.js';

export const cliniciansSource: SourceDeclaration = {
  name: 'clinicians',
  relation: 'clinicians',
  description: 'clinicians imported from provider backends (import-clinicians), one row per provider and clinician key',
  lastUpdatedColumn: 'last_seen',
  columns: {
    provider: 'keep',
    clinician_key: 'pseudonym',
    given_name: 'drop',
    family_name: 'drop',
    title: 'keep',
    clinic: 'keep',
    // a public professional register number, but it identifies the person as directly as a name
    npi: 'drop',
    rpps: 'drop',
    specialty: 'keep',
    phone: 'drop',
    email: 'drop',
    active: 'keep',
    inactive_since: 'keep',
    first_seen: 'keep',
    last_seen: 'keep',
    source_run: 'keep',
  },
};
