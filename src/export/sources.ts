/**
 * Everything `carepipe export-csv` can export by name: the core tables declared here, the flat tables
 * of the ViewDefinitions in `views/*.json` (declared by their columns' research tags) and each
 * domain's own declarations.
 *
 * A domain adds ONE line to DOMAINS below, loading its `src/<domain>/export.ts` (lazily: the CLI
 * starts without loading every domain).
 */
import { viewsDir } from '../fhir/views-dir.js';
import type { SourceDeclaration } from './treatments.js';
import { viewSources } from './view-tags.js';

type DomainModule = () => Promise<SourceDeclaration[]>;

const DOMAINS: DomainModule[] = [
  () => import('../clinicians/export.js').then((m) => [m.cliniciansSource]),
  () => import('../directory/export.js').then((m) => m.directorySources),
  () => import('../appointments/export.js').then((m) => m.appointmentSources),
  () => import('../fhir/export.js').then((m) => m.exportSources),
];

/** The core tables. The ledger and the rejects are for operators; research exports get no paths or raw records. */
export const coreSources: SourceDeclaration[] = [
  {
    name: 'fhir_resources',
    description: 'every stored FHIR resource: type, id, version, last updated and the resource as JSON',
    lastUpdatedColumn: 'last_updated',
    columns: {
      resource_type: 'keep',
      id: 'pseudonym',
      version_id: 'keep',
      last_updated: 'date_shift',
      // names, identifiers, addresses, notes: the whole resource is identifying
      resource: 'drop',
      content_hash: 'drop',
      deleted: 'keep',
      source: 'drop',
      run_id: 'keep',
      loaded_at: 'keep',
    },
    // meta.lastUpdated is a date of the patient's care: shifted by the patient the resource is about.
    // (No question mark in this SQL: knex would take it for a binding.)
    patientKey: {
      sql: `case when q.resource_type = 'Patient' then q.id
                 else (select regexp_replace(ref, '^(urn:uuid:|.*Patient/)', '')
                         from coalesce(q.resource #>> '{subject,reference}', q.resource #>> '{patient,reference}') as ref
                        where ref ~ '^(urn:uuid:|(.*/)*Patient/)[A-Za-z0-9.-]{1,64}$') end`,
    },
    elements: { id: '*.id', last_updated: '*.meta.lastUpdated', resource: '*' },
  },
  {
    name: 'runs',
    description: 'the run ledger: one row per command run, with counts and outcome',
    lastUpdatedColumn: 'started_at',
    columns: {
      id: 'keep',
      command: 'keep',
      target: 'drop',
      arguments: 'drop',
      os_user: 'drop',
      host: 'drop',
      pid: 'drop',
      started_at: 'keep',
      finished_at: 'keep',
      status: 'keep',
      exit_code: 'keep',
      read_count: 'keep',
      written_count: 'keep',
      unchanged_count: 'keep',
      rejected_count: 'keep',
      details: 'drop',
      error: 'drop',
    },
  },
  {
    name: 'rejects',
    description: 'records that were rejected, with the reason and the raw record (to fix and retry them)',
    lastUpdatedColumn: 'created_at',
    columns: {
      id: 'keep',
      run_id: 'keep',
      command: 'keep',
      source: 'drop',
      line: 'keep',
      entry: 'keep',
      record_key: 'pseudonym',
      field: 'keep',
      reason_code: 'keep',
      // messages may quote the bad value; the raw record is the patient's record
      message: 'drop',
      raw: 'drop',
      retryable: 'keep',
      resolved_run_id: 'keep',
      created_at: 'keep',
    },
  },
];

/**
 * Every declared source, by name. A domain's own declaration of a table wins over the one derived
 * from a view of the same name (it may say more, e.g. a last-updated column).
 */
export async function loadSources(options: { viewsDir?: string } = {}): Promise<Map<string, SourceDeclaration>> {
  const out = new Map<string, SourceDeclaration>();
  for (const source of viewSources(options.viewsDir ?? viewsDir())) out.set(source.name, source);
  for (const source of coreSources) out.set(source.name, source);
  for (const load of DOMAINS) {
    for (const source of await load()) out.set(source.name, source);
  }
  return out;
}
