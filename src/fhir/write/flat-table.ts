/**
 * Flat tables: a table per view spec (columns and their SQL types) plus three bookkeeping columns that
 * name the record each row came from and the row's position among that record's rows: together the
 * primary key, so BI tools can identify rows and all the rows of one record can be replaced at once.
 * Knows nothing of FHIR: the caller says what the table is and what the rows are.
 */
import type { Knex } from 'knex';
import { CarepipeError } from '../../errors.js';
import { quoteIdent } from '../../db/catalog.js';
import type { DatabaseKind } from '../../db/connection.js';
import { recordset, writeRows, type ColumnSqlType, type Row, type TableColumn } from '../../io/json-rows.js';

export interface TableSpec {
  table: string;
  columns: TableColumn[];
  /** Columns other tables join on (references): each gets an index when the table is created. */
  indexed?: string[];
}

/** Bookkeeping columns every flat table carries: the type and id of the record the row came from. */
export const RECORD_TYPE_COLUMN = '_resource_type';
export const RECORD_ID_COLUMN = '_resource_id';
/** The row's position (0, 1, …) among the rows of its record: with the two above, the primary key. */
export const ROW_INDEX_COLUMN = '_row_index';

/** information_schema.columns.data_type for each type we create. */
const INFORMATION_SCHEMA_TYPE: Record<ColumnSqlType, string> = {
  boolean: 'boolean',
  integer: 'integer',
  bigint: 'bigint',
  numeric: 'numeric',
  bytea: 'bytea',
  date: 'date',
  timestamptz: 'timestamp with time zone',
  text: 'text',
  jsonb: 'jsonb',
};

/**
 * The columns of `table` (the one its plain name finds on the search path, whichever schema holds it),
 * in order, with their information_schema data types; [] when it does not exist. Generated columns are left out: derived by the database (e.g. a code system's
 * name added by a migration), they are not written, so they do not change the table's shape for a view.
 */
export async function existingColumns(knex: Knex | Knex.Transaction, table: string): Promise<{ name: string; dataType: string }[]> {
  const result = await knex.raw<{ rows: { column_name: string; data_type: string }[] }>(
    `select column_name, data_type from information_schema.columns
      where (table_schema, table_name) = (select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
                                            where c.oid = to_regclass(?))
        and is_generated = 'NEVER' order by ordinal_position`,
    [quoteIdent(table)],
  );
  return result.rows.map((r) => ({ name: r.column_name, dataType: r.data_type }));
}

/** Names Postgres keeps for itself: a table named so is shadowed by, or mistaken for, a system one. */
const SYSTEM_NAME = /^(pg_|sql_)|^information_schema$/i;

/**
 * Refuses (exit 2) a flat table named like a system table or like a relation of the schema that is not a
 * flat table, in whichever of carepipe's schemas the search path finds it: carepipe's own tables (runs, rejects, fhir_resources, …, and
 * knex's own), or anything else a user keeps there. The schema is the list, so a table a later migration
 * adds is covered without being named here.
 */
export async function refuseReservedTableName(knex: Knex | Knex.Transaction, table: string): Promise<void> {
  const refuse = (what: string) => {
    throw new CarepipeError('VIEW_INVALID', `the view name '${table}' is ${what}: give the view another name`, { field: 'name', table });
  };
  if (SYSTEM_NAME.test(table)) refuse('reserved for system tables (pg_*, sql_*, information_schema)');
  const result = await knex.raw<{ rows: { flat: boolean }[] }>(
    `select exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = ? and not a.attisdropped) as flat
       from pg_class c
      where c.oid = to_regclass(?) and c.relkind in ('r', 'p', 'v', 'm', 'f')`,
    [RECORD_ID_COLUMN, quoteIdent(table)],
  );
  if (result.rows.some((r) => !r.flat)) refuse('a carepipe table (or another table of the database) that is not a view table');
}

/**
 * Creates the table of `spec` in `schema` (the FHIR schema; the search path's first when not given)
 * when no table of its name is on the search path; when one is, checks it has exactly the spec's
 * columns and types, and refuses (exit 2) otherwise: rows of two different shapes must never share a table.
 */
export async function ensureFlatTable(knex: Knex | Knex.Transaction, spec: TableSpec, schema?: string): Promise<'created' | 'exists'> {
  await refuseReservedTableName(knex, spec.table);
  const existing = await existingColumns(knex, spec.table);
  if (existing.length === 0) {
    await createFlatTable(knex, spec, schema);
    return 'created';
  }
  const bookkeeping = new Set([RECORD_TYPE_COLUMN, RECORD_ID_COLUMN, ROW_INDEX_COLUMN]);
  const have = existing.filter((c) => !bookkeeping.has(c.name));
  const describe = (cols: { name: string; dataType: string }[]) => cols.map((c) => `${c.name} ${c.dataType}`).join(', ');
  const want = spec.columns.map((c) => ({ name: c.name, dataType: INFORMATION_SCHEMA_TYPE[c.sqlType] }));
  // A table made before its view's dates and decimals were typed: its text columns are converted, rows kept.
  const retype = spec.columns.filter((c, i) => RETYPABLE.has(c.sqlType) && have[i]?.name === c.name && have[i]?.dataType === 'text');
  if (retype.length > 0 && existing.length === have.length + bookkeeping.size && describe(have.map((c, i) => (retype.some((r) => r.name === c.name) ? want[i]! : c))) === describe(want)) {
    for (const column of retype) {
      const misfits = await retypeTextColumn(knex, spec.table, column.name, column.sqlType);
      if (misfits > 0) {
        throw new CarepipeError(
          'VIEW_INVALID',
          `table ${spec.table}, column ${column.name}: the view makes it ${column.sqlType} but ${misfits} stored values are not; correct or clear them (set to null) and run again`,
          { table: spec.table, field: column.name },
        );
      }
    }
    return 'exists';
  }
  if (existing.length !== have.length + bookkeeping.size || describe(have) !== describe(want)) {
    throw new CarepipeError(
      'VIEW_INVALID',
      `table ${spec.table} already exists with other columns (${describe(have)}) than the view gives (${describe(want)}): ` +
        'give the view another name, or drop the table if its rows are not needed',
      { table: spec.table },
    );
  }
  return 'exists';
}

/**
 * Creates the table of `spec` in `schema` under the name `as` (the spec's own by default): its columns,
 * the bookkeeping columns, the primary key and the reference indexes, named after `as`. `views
 * refresh` builds a table anew under another name and renames it and its key and indexes afterwards.
 */
export async function createFlatTable(
  knex: Knex | Knex.Transaction,
  spec: TableSpec,
  schema?: string,
  as = spec.table,
  options: { keys?: boolean } = {},
): Promise<void> {
  const builder = schema ? knex.schema.withSchema(schema) : knex.schema;
  await builder.createTable(as, (t) => {
    for (const column of spec.columns) t.specificType(column.name, column.sqlType);
    t.text(RECORD_TYPE_COLUMN).notNullable();
    t.text(RECORD_ID_COLUMN).notNullable();
    t.integer(ROW_INDEX_COLUMN).notNullable();
    if (options.keys !== false) keysOf(t, spec, as);
  });
}

/**
 * The primary key and reference indexes of a table created with `keys: false`: built once over the
 * filled table, which is faster than keeping them up to date row by row (`views refresh`).
 */
export async function addFlatTableKeys(knex: Knex | Knex.Transaction, spec: TableSpec, schema: string, as = spec.table): Promise<void> {
  await knex.schema.withSchema(schema).alterTable(as, (t) => keysOf(t, spec, as));
}

function keysOf(t: Knex.CreateTableBuilder | Knex.AlterTableBuilder, spec: TableSpec, as: string): void {
  // The key leads with the record, so it also serves the delete of a record's rows.
  t.primary([RECORD_TYPE_COLUMN, RECORD_ID_COLUMN, ROW_INDEX_COLUMN], { constraintName: primaryKeyName(as) });
  for (const column of spec.indexed ?? []) t.index([column], referenceIndexName(as, column));
}

/** Whether the columns of `existing` (as existingColumns gives them) are exactly those `spec` makes. */
export function sameColumns(existing: { name: string; dataType: string }[], spec: TableSpec): boolean {
  const bookkeeping = new Set([RECORD_TYPE_COLUMN, RECORD_ID_COLUMN, ROW_INDEX_COLUMN]);
  const have = existing.filter((c) => !bookkeeping.has(c.name)).map((c) => `${c.name} ${c.dataType}`);
  const want = spec.columns.map((c) => `${c.name} ${INFORMATION_SCHEMA_TYPE[c.sqlType]}`);
  return existing.length === have.length + bookkeeping.size && have.join(', ') === want.join(', ');
}

/** Column types that earlier versions stored as text (a view's declared decimal, date and dateTime). */
export const RETYPABLE: ReadonlySet<ColumnSqlType> = new Set(['numeric', 'date', 'timestamptz']);

/** What each retypable type accepts as text: anything else would make the conversion fail, so it is counted first. */
// Months 01–12, days 01–31, hours 00–23, minutes and seconds 00–59 (60 for a leap second): a value
// that passes still fails the cast if its day does not exist in its month (2021-02-30), which
// retypeTextColumn catches and counts as a misfit too.
const MONTH = '(0[1-9]|1[0-2])';
const DAY = '(0[1-9]|[12]\\d|3[01])';
const TIME = '([01]\\d|2[0-3]):[0-5]\\d(:([0-5]\\d|60)(\\.\\d+)?)?';
const TEXT_GRAMMAR: Record<string, string> = {
  numeric: '^-?\\d+(\\.\\d+)?([eE][+-]?\\d+)?$',
  date: `^\\d{4}(-${MONTH}(-${DAY})?)?$`,
  timestamptz: `^\\d{4}(-${MONTH}(-${DAY}(T${TIME}(Z|[+-]\\d\\d:\\d\\d))?)?)?$`,
};

/** text → `sqlType`, a partial date (`2020`, `2020-05`, a dateTime without its time) as the first instant of its period, in UTC. */
export function fromTextSql(column: string, sqlType: ColumnSqlType): string {
  const c = quoteIdent(column);
  if (sqlType === 'numeric') return `${c}::numeric`;
  if (sqlType === 'date') {
    return `case when ${c} ~ '^\\d{4}$' then (${c} || '-01-01')::date when ${c} ~ '^\\d{4}-\\d\\d$' then (${c} || '-01')::date else ${c}::date end`;
  }
  return `case when ${c} ~ '^\\d{4}$' then (${c} || '-01-01T00:00:00Z')::timestamptz
               when ${c} ~ '^\\d{4}-\\d\\d$' then (${c} || '-01T00:00:00Z')::timestamptz
               when ${c} ~ '^\\d{4}-\\d\\d-\\d\\d$' then (${c} || 'T00:00:00Z')::timestamptz
               else ${c}::timestamptz end`;
}

/**
 * Converts a text column of a flat table to numeric, date or timestamptz, as ingest-fhir stores them.
 * Returns how many values are not of that type: when any, nothing is changed.
 */
export async function retypeTextColumn(knex: Knex | Knex.Transaction, table: string, column: string, sqlType: ColumnSqlType): Promise<number> {
  const t = quoteIdent(table);
  const c = quoteIdent(column);
  const bad = await knex.raw<{ rows: { n: string }[] }>(`select count(*) as n from ${t} where ${c} is not null and ${c} !~ ?`, [TEXT_GRAMMAR[sqlType]]);
  const misfits = Number(bad.rows[0]!.n);
  if (misfits > 0) return misfits;
  try {
    // In a savepoint: a date of the right shape that does not exist (2021-02-30) fails the cast alone.
    await knex.transaction((trx) => trx.raw(`alter table ${t} alter column ${c} type ${sqlType} using ${fromTextSql(column, sqlType)}`));
  } catch (err) {
    if (!String((err as { code?: unknown }).code ?? '').startsWith('22')) throw err;
    return countUncastable(knex, t, c, sqlType);
  }
  return 0;
}

/** Values of the right shape that still do not cast (a day its month lacks), counted one by one. */
async function countUncastable(knex: Knex | Knex.Transaction, t: string, c: string, sqlType: ColumnSqlType): Promise<number> {
  const { rows } = await knex.raw<{ rows: { v: string }[] }>(`select distinct ${c} as v from ${t} where ${c} is not null`);
  let n = 0;
  for (const { v } of rows) {
    try {
      await knex.transaction((trx) => trx.raw(`select ${fromTextSql('v', sqlType)} from (select ?::text as v) as one`, [v]));
    } catch {
      n += 1;
    }
  }
  return Math.max(n, 1);
}

/** `<table>_pkey`, the name Postgres itself would give, cut so it fits in 63 characters. */
export function primaryKeyName(table: string): string {
  return `${table.slice(0, 58)}_pkey`;
}

/** `<table>_<column>_idx`, cut to 63 characters. */
export function referenceIndexName(table: string, column: string): string {
  return `${table}_${column}`.slice(0, 59) + '_idx';
}

export async function dropFlatTable(knex: Knex | Knex.Transaction, table: string): Promise<void> {
  await knex.schema.dropTableIfExists(table);
}

/** A record whose rows a flat table holds. */
export interface RecordKey {
  type: string;
  id: string;
}

/**
 * Replaces the rows of `keys` in the table: deletes what they had, inserts `rows` (each row carries
 * its record's key and its position in the bookkeeping columns). Deleting with an empty `rows` removes the records.
 */
export async function replaceRecordRows(
  trx: Knex.Transaction,
  kind: DatabaseKind,
  spec: TableSpec,
  keys: RecordKey[],
  rows: Row[],
): Promise<void> {
  if (keys.length > 0) {
    await trx.raw(
      `delete from ?? as t using ${recordset([{ name: 'type', sqlType: 'text' }, { name: 'id', sqlType: 'text' }], 'k')}
        where t.${RECORD_TYPE_COLUMN} = k.type and t.${RECORD_ID_COLUMN} = k.id`,
      [spec.table, JSON.stringify(keys)],
    );
  }
  await writeRows(trx, kind, spec.table, [...spec.columns, ...BOOKKEEPING], rows);
}

export const BOOKKEEPING: TableColumn[] = [
  { name: RECORD_TYPE_COLUMN, sqlType: 'text' },
  { name: RECORD_ID_COLUMN, sqlType: 'text' },
  { name: ROW_INDEX_COLUMN, sqlType: 'integer' },
];
