/**
 * A work table shared by cooperating runs: `--workers N` on one machine, or several hosts started on
 * the same input against the same database. Nothing but Postgres coordinates them:
 *
 * - `enqueue` adds units (idempotent: a unit already in the queue is left as it is);
 * - `claim` takes the oldest unit that is pending or whose lease has expired, with
 *   `FOR UPDATE SKIP LOCKED` so two workers never take the same row and never wait on each other;
 * - `complete` marks a unit done inside the caller's transaction, the one that wrote its last rows,
 *   so "done" and the data commit together or not at all;
 * - a worker that dies stops renewing its lease; when the lease runs out the unit is claimable again,
 *   and since every batch is an idempotent upsert, finishing a half-loaded unit twice is harmless.
 *
 * Leases are measured with the database clock (now()), never the workers' clocks, which may disagree.
 */
import type { Knex } from 'knex';

export interface WorkUnit<P = Record<string, unknown>> {
  id: number;
  queue: string;
  unit_key: string;
  payload: P;
  attempts: number;
  claimed_by: string;
}

export interface QueueCounts {
  pending: number;
  claimed: number;
  done: number;
  failed: number;
}

export async function enqueue(knex: Knex, queue: string, units: { key: string; payload?: unknown }[]): Promise<number> {
  let added = 0;
  // Chunks keep each statement's parameter count well under Postgres' limit of 65535.
  for (let i = 0; i < units.length; i += 1000) {
    const rows = units.slice(i, i + 1000).map((u) => ({ queue, unit_key: u.key, payload: JSON.stringify(u.payload ?? {}) }));
    const inserted = await knex('work_items').insert(rows).onConflict(['queue', 'unit_key']).ignore().returning('id');
    added += inserted.length;
  }
  return added;
}

/** Claim one unit for `worker` for `leaseMs`, or undefined when nothing is claimable now. */
export async function claim<P = Record<string, unknown>>(
  knex: Knex,
  queue: string,
  worker: string,
  leaseMs: number,
  options: { maxAttempts?: number } = {},
): Promise<WorkUnit<P> | undefined> {
  const maxAttempts = options.maxAttempts ?? 5;
  const result = await knex.raw<{ rows: WorkUnit<P>[] }>(
    `update work_items w
        set status = 'claimed', claimed_by = ?, attempts = w.attempts + 1,
            lease_until = now() + make_interval(secs => ?), updated_at = now()
      where w.id = (
        select id from work_items
         where queue = ?
           and (status = 'pending' or (status = 'claimed' and lease_until < now()))
           and attempts < ?
         order by id
         for update skip locked
         limit 1)
      returning w.id, w.queue, w.unit_key, w.payload, w.attempts, w.claimed_by`,
    [worker, leaseMs / 1000, queue, maxAttempts],
  );
  return result.rows[0];
}

/**
 * Extend the lease of a unit this worker still holds. Returns false when the unit was taken over
 * (the lease had run out and another worker claimed it): the caller should stop working on it.
 */
export async function renew(knex: Knex, unit: Pick<WorkUnit, 'id' | 'claimed_by'>, leaseMs: number): Promise<boolean> {
  const updated = await knex('work_items')
    .where({ id: unit.id, claimed_by: unit.claimed_by, status: 'claimed' })
    .update({ lease_until: knex.raw('now() + make_interval(secs => ?)', [leaseMs / 1000]), updated_at: knex.fn.now() });
  return updated === 1;
}

/**
 * Mark a unit done in the transaction that wrote its rows. Returns false when this worker no longer
 * holds it (another worker took it over after the lease expired); the caller should roll back.
 */
export async function complete(trx: Knex.Transaction, unit: Pick<WorkUnit, 'id' | 'claimed_by'>, runId: number | null): Promise<boolean> {
  const updated = await trx('work_items')
    .where({ id: unit.id, claimed_by: unit.claimed_by, status: 'claimed' })
    .update({ status: 'done', lease_until: null, done_run_id: runId, updated_at: trx.fn.now() });
  return updated === 1;
}

/** Give a unit back after an error: pending again for another attempt, or failed after the last one. */
export async function release(knex: Knex, unit: Pick<WorkUnit, 'id' | 'claimed_by'>, error: string, maxAttempts = 5): Promise<void> {
  await knex('work_items')
    .where({ id: unit.id, claimed_by: unit.claimed_by })
    .update({
      status: knex.raw(`case when attempts >= ? then 'failed' else 'pending' end`, [maxAttempts]),
      claimed_by: null,
      lease_until: null,
      last_error: error.slice(0, 2000),
      updated_at: knex.fn.now(),
    });
}

export async function queueCounts(knex: Knex, queue: string): Promise<QueueCounts> {
  const rows = await knex('work_items').where({ queue }).select('status').count<{ status: string; count: number | string }[]>('* as count').groupBy('status');
  const counts: QueueCounts = { pending: 0, claimed: 0, done: 0, failed: 0 };
  for (const r of rows) counts[r.status as keyof QueueCounts] = Number(r.count);
  return counts;
}
