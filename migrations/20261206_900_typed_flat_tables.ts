import type { Knex } from 'knex';
import { CarepipeError } from '../src/errors.js';
import { quoteIdent } from '../src/db/catalog.js';
import { loadShippedViews, tablesOf } from '../src/fhir/views.js';
import {
  existingColumns,
  primaryKeyName,
  RECORD_ID_COLUMN,
  RECORD_TYPE_COLUMN,
  referenceIndexName,
  RETYPABLE,
  retypeTextColumn,
  ROW_INDEX_COLUMN,
  type TableSpec,
} from '../src/fhir/write/flat-table.js';

/**
 * Flat tables an analyst can use as they are (issue 19):
 * - the shipped views' decimal, date and dateTime columns get their SQL types (numeric, date,
 *   timestamptz) instead of text; a partial date (`2020`, `2020-05`, a dateTime without its time)
 *   becomes the first instant of its period, in UTC, as ingest-fhir now stores it;
 * - every flat table (any table with the bookkeeping columns, a user's --view tables too) gets
 *   `_row_index`, the row's position among its record's rows, numbered in the order the rows were
 *   written, and the primary key (_resource_type, _resource_id, _row_index), which replaces the
 *   record index it begins with;
 * - the shipped views' reference columns (patient_id, …) are indexed;
 * - appointment.end, a reserved word, is renamed end_time.
 * A user's --view table is typed by ingest-fhir the next time it runs with that view (ensureFlatTable):
 * only the view says which of its text columns are dates or decimals.
 * A text value that is no date or number stops the migration naming table, column and value count:
 * nothing is dropped. Row history is not touched: the triggers are off while rows are numbered.
 */

/** typed → text, the form a text column held: the digits; YYYY-MM-DD; an instant in UTC. */
function backToTextSql(column: string, sqlType: string): string {
  const c = quoteIdent(column);
  if (sqlType === 'numeric') return `${c}::text`;
  if (sqlType === 'date') return `to_char(${c}, 'YYYY-MM-DD')`;
  // Fractional seconds only when there are some: 2015-01-13T15:33:34Z, 2015-01-13T15:33:34.5Z.
  return `rtrim(rtrim(to_char(${c} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z'`;
}

/** Tables of the current schema that carry the flat-table bookkeeping columns. */
async function flatTables(knex: Knex): Promise<string[]> {
  const { rows } = await knex.raw<{ rows: { table_name: string }[] }>(
    `select c.table_name from information_schema.columns c
       join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name and t.table_type = 'BASE TABLE'
      where c.table_schema = current_schema() and c.column_name in (?, ?)
      group by c.table_name having count(*) = 2 order by c.table_name`,
    [RECORD_TYPE_COLUMN, RECORD_ID_COLUMN],
  );
  return rows.map((r) => r.table_name);
}

async function shippedTables(knex: Knex): Promise<{ spec: TableSpec; columns: Map<string, string> }[]> {
  const out = [];
  for (const spec of tablesOf(loadShippedViews())) {
    const existing = await existingColumns(knex, spec.table);
    if (existing.length > 0) out.push({ spec, columns: new Map(existing.map((c) => [c.name, c.dataType])) });
  }
  return out;
}

export async function up(knex: Knex): Promise<void> {
  for (const table of await flatTables(knex)) {
    const columns = new Set((await existingColumns(knex, table)).map((c) => c.name));
    if (columns.has(ROW_INDEX_COLUMN)) continue;
    const t = quoteIdent(table);
    await knex.raw(`alter table ${t} add column ${ROW_INDEX_COLUMN} integer`);
    // Numbering the rows is no change of what they say: keep it out of row history.
    await knex.raw(`alter table ${t} disable trigger user`);
    await knex.raw(
      `update ${t} as t set ${ROW_INDEX_COLUMN} = n.i
         from (select ctid, row_number() over (partition by ${RECORD_TYPE_COLUMN}, ${RECORD_ID_COLUMN} order by ctid) - 1 as i from ${t}) as n
        where t.ctid = n.ctid`,
    );
    await knex.raw(`alter table ${t} enable trigger user`);
    await knex.raw(`alter table ${t} alter column ${ROW_INDEX_COLUMN} set not null`);
    await knex.raw(`drop index if exists ${quoteIdent(`${table.slice(0, 50)}_record_idx`)}`);
    await knex.raw(
      `alter table ${t} add constraint ${quoteIdent(primaryKeyName(table))} primary key (${RECORD_TYPE_COLUMN}, ${RECORD_ID_COLUMN}, ${ROW_INDEX_COLUMN})`,
    );
  }

  for (const { spec, columns } of await shippedTables(knex)) {
    const t = quoteIdent(spec.table);
    if (spec.table === 'appointment' && columns.has('end') && !columns.has('end_time')) {
      await knex.raw(`alter table ${t} rename column "end" to end_time`);
      columns.set('end_time', columns.get('end')!);
      columns.delete('end');
    }
    for (const column of spec.columns) {
      if (!RETYPABLE.has(column.sqlType) || columns.get(column.name) !== 'text') continue;
      const n = await retypeTextColumn(knex, spec.table, column.name, column.sqlType);
      if (n > 0) {
        throw new CarepipeError(
          'SCHEMA_BEHIND',
          `table ${spec.table}, column ${column.name}: ${n} values are not of type ${column.sqlType}; correct or clear them (set to null) and migrate again`,
          { table: spec.table, field: column.name },
        );
      }
    }
    for (const column of spec.indexed ?? []) {
      await knex.raw(`create index if not exists ${quoteIdent(referenceIndexName(spec.table, column))} on ${t} (${quoteIdent(column)})`);
    }
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const { spec, columns } of await shippedTables(knex)) {
    const t = quoteIdent(spec.table);
    for (const column of spec.indexed ?? []) await knex.raw(`drop index if exists ${quoteIdent(referenceIndexName(spec.table, column))}`);
    const view = loadShippedViews().find((v) => v.table.table === spec.table)!;
    for (const column of view.view.columns) {
      // Only what the text columns held before: a declared decimal, date or dateTime (instants were typed already).
      const sqlType = spec.columns.find((c) => c.name === column.name)?.sqlType;
      if (!sqlType || !RETYPABLE.has(sqlType) || column.fhirType === 'instant' || columns.get(column.name) === 'text') continue;
      await knex.raw(`alter table ${t} alter column ${quoteIdent(column.name)} type text using ${backToTextSql(column.name, sqlType)}`);
    }
    if (spec.table === 'appointment' && columns.has('end_time') && !columns.has('end')) {
      await knex.raw(`alter table ${t} rename column end_time to "end"`);
    }
  }
  for (const table of await flatTables(knex)) {
    const columns = new Set((await existingColumns(knex, table)).map((c) => c.name));
    if (!columns.has(ROW_INDEX_COLUMN)) continue;
    const t = quoteIdent(table);
    await knex.raw(`alter table ${t} drop constraint if exists ${quoteIdent(primaryKeyName(table))}`);
    await knex.raw(`alter table ${t} drop column ${ROW_INDEX_COLUMN}`);
    await knex.raw(`create index if not exists ${quoteIdent(`${table.slice(0, 50)}_record_idx`)} on ${t} (${RECORD_TYPE_COLUMN}, ${RECORD_ID_COLUMN})`);
  }
}
