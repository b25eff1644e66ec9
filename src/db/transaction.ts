/**
 * Every write carepipe makes happens in a transaction that knows its run: `carepipe.run_id` is set
 * locally in it, so row-history triggers can name the run behind each change, and a batch that fails
 * takes its rows, its history and its rejects with it.
 */
import type { Knex } from 'knex';
import type { RunLedger } from './ledger.js';

export async function inRunTransaction<T>(knex: Knex, ledger: Pick<RunLedger, 'id'>, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return knex.transaction(async (trx) => {
    await trx.raw(`select set_config('carepipe.run_id', ?, true)`, [String(ledger.id)]);
    return work(trx);
  });
}
