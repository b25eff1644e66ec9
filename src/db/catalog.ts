/** What the database's catalog says about the current schema. */
import type { Knex } from 'knex';

/** Whether a table (or view) of that exact name is visible on the search path. */
export async function tableExists(knex: Knex | Knex.Transaction, table: string): Promise<boolean> {
  const result = await knex.raw<{ rows: { oid: string | null }[] }>('select to_regclass(?)::text as oid', [quoteIdent(table)]);
  return result.rows[0]?.oid != null;
}

/** A SQL identifier, quoted: names come from the catalog or from the code, but are quoted all the same. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
