/**
 * What export-csv may take from the directory tables, column by column. Organizations are not people:
 * their columns are kept. Workers are: names, e-mail and phone drop in the research profile, and the
 * RPPS number (a national identifier of the person) becomes a keyed pseudonym, the same in every table
 * so that links still join.
 */
import type { SourceDeclaration } from '../export/treatments.js';

const organizations: SourceDeclaration = {
  name: 'organizations',
  description: 'healthcare organizations from the directory, keyed by FINESS',
  lastUpdatedColumn: 'last_seen_at',
  columns: {
    finess: 'keep',
    name: 'keep',
    finess_justice: 'keep',
    activity_segment_code: 'keep',
    activity_segment_name: 'keep',
    building_number: 'keep',
    city: 'keep',
    postcode: 'keep',
    bimedoc_client: 'keep',
    first_seen_at: 'keep',
    last_seen_at: 'keep',
    run_id: 'keep',
    last_seen_run_id: 'keep',
  },
};

const healthCareWorkers: SourceDeclaration = {
  name: 'health_care_workers',
  description: 'healthcare workers from the directory, keyed by RPPS number',
  lastUpdatedColumn: 'last_seen_at',
  columns: {
    rpps_number: 'pseudonym',
    last_name: 'drop',
    first_name: 'drop',
    gender: 'keep',
    email: 'drop',
    phone_number: 'drop',
    profession_code: 'keep',
    profession_name: 'keep',
    first_seen_at: 'keep',
    last_seen_at: 'keep',
    run_id: 'keep',
    last_seen_run_id: 'keep',
  },
};

const organizationWorkers: SourceDeclaration = {
  name: 'organization_workers',
  description: 'which worker works at which organization, with the profession there',
  lastUpdatedColumn: 'last_seen_at',
  columns: {
    finess: 'keep',
    rpps_number: 'pseudonym',
    profession_code: 'keep',
    profession_name: 'keep',
    directory_id: 'drop',
    first_seen_at: 'keep',
    last_seen_at: 'keep',
    run_id: 'keep',
    last_seen_run_id: 'keep',
  },
};

const organizationsWorkers: SourceDeclaration = {
  name: 'organizations_workers',
  description: 'every organization joined with its workers (one row per worker, or one empty row)',
  lastUpdatedColumn: 'last_seen_at',
  columns: {
    finess: 'keep',
    organization_name: 'keep',
    finess_justice: 'keep',
    activity_segment_code: 'keep',
    activity_segment_name: 'keep',
    building_number: 'keep',
    city: 'keep',
    postcode: 'keep',
    bimedoc_client: 'keep',
    rpps_number: 'pseudonym',
    last_name: 'drop',
    first_name: 'drop',
    gender: 'keep',
    email: 'drop',
    phone_number: 'drop',
    profession_code: 'keep',
    profession_name: 'keep',
    last_seen_at: 'keep',
  },
};

/** The directory's export sources, for src/export/sources.ts. */
export const directorySources: SourceDeclaration[] = [organizations, healthCareWorkers, organizationWorkers, organizationsWorkers];
