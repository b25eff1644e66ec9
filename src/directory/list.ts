/**
 * Listing what was imported: every organization with its workers, read from the
 * `organizations_workers` view in keyset pages so a large directory is never held in memory at once.
 */
import type { Knex } from 'knex';
import type { OrganizationRecord, WorkerRecord } from './map.js';

/** Columns of a listing row, in CSV order. */
export const LIST_COLUMNS = [
  'finess',
  'organization_name',
  'finess_justice',
  'activity_segment_code',
  'activity_segment_name',
  'building_number',
  'city',
  'postcode',
  'bimedoc_client',
  'rpps_number',
  'last_name',
  'first_name',
  'gender',
  'email',
  'phone_number',
  'profession_code',
  'profession_name',
] as const;
export type ListColumn = (typeof LIST_COLUMNS)[number];
export type ListRow = Record<ListColumn, string | boolean | null>;

export interface ListOptions {
  finess?: string;
  pageSize?: number;
}

/** Rows ordered by finess then rpps_number (organizations without workers come with null workers). */
export async function* organizationWorkerRows(knex: Knex, options: ListOptions = {}): AsyncGenerator<ListRow> {
  const pageSize = options.pageSize ?? 1000;
  let after: { finess: string; rpps: string | null } | undefined;
  for (;;) {
    const query = knex('organizations_workers')
      .select([...LIST_COLUMNS])
      .orderBy([{ column: 'finess' }, { column: 'rpps_number', nulls: 'first' }])
      .limit(pageSize);
    if (options.finess) query.where('finess', options.finess);
    if (after) {
      const { finess, rpps } = after;
      // (finess, rpps_number) > (after): nulls sort first within an organization.
      query.where((w) => {
        w.where('finess', '>', finess);
        if (rpps === null) w.orWhere((x) => x.where('finess', finess).whereNotNull('rpps_number'));
        else w.orWhere((x) => x.where('finess', finess).where('rpps_number', '>', rpps));
      });
    }
    const rows = (await query) as ListRow[];
    for (const row of rows) yield row;
    if (rows.length < pageSize) return;
    const last = rows[rows.length - 1]!;
    after = { finess: last.finess as string, rpps: (last.rpps_number as string | null) ?? null };
  }
}

/** An organization as stored, with the workers linked to it. */
export interface OrganizationListing extends OrganizationRecord {
  workers: WorkerRecord[];
}

/** Group flat rows (ordered by finess) into organizations with their workers. */
export async function* groupByOrganization(rows: AsyncIterable<ListRow>): AsyncGenerator<OrganizationListing> {
  let current: OrganizationListing | undefined;
  for await (const row of rows) {
    if (!current || current.finess !== row.finess) {
      if (current) yield current;
      current = {
        finess: row.finess as string,
        name: row.organization_name as string,
        finess_justice: row.finess_justice as string | null,
        activity_segment_code: row.activity_segment_code as string | null,
        activity_segment_name: row.activity_segment_name as string | null,
        building_number: row.building_number as string | null,
        city: row.city as string | null,
        postcode: row.postcode as string | null,
        bimedoc_client: row.bimedoc_client as boolean | null,
        workers: [],
      };
    }
    if (row.rpps_number !== null) {
      current.workers.push({
        rpps_number: row.rpps_number as string,
        last_name: row.last_name as string,
        first_name: row.first_name as string,
        gender: row.gender as string | null,
        email: row.email as string | null,
        phone_number: row.phone_number as string | null,
        profession_code: row.profession_code as string | null,
        profession_name: row.profession_name as string,
      });
    }
  }
  if (current) yield current;
}
