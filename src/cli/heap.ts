/**
 * How far V8 lets the heap grow past what is live before it collects the old generation.
 *
 * V8's default tunes for throughput: after each full collection it lets the old generation grow up to
 * four times the live size before the next one. An ingest keeps little alive (a few batches, 30–60 MB measured)
 * but promotes every batch to the old generation before dropping it, so under the default the heap
 * swings between 45 and 250 MB and RSS climbs past 400 MB on long runs. A fixed growing factor of 1.5
 * keeps it near the live size. Measured (`bench/ingest-scale`, Synthea 4×, Postgres): peak RSS 408 MB
 * under V8's default, 253 MB at 100%, 223 MB at 50%, 194 MB at 15%; wall time the same within noise
 * (the database is the slower side), Node's CPU time +20% at 50%.
 *
 * The flag is read at every collection, so setting it at start-up works; a heap cap
 * (--max-old-space-size) is fixed when the process starts and would need NODE_OPTIONS.
 */
import v8 from 'node:v8';
import { CarepipeError } from '../errors.js';

export const HEAP_GROWTH_ENV = 'CAREPIPE_HEAP_GROWTH';
export const DEFAULT_HEAP_GROWTH_PERCENT = 50;

/**
 * Applies `CAREPIPE_HEAP_GROWTH` (percent over the live size, 1–1000; `0` keeps V8's own heuristics).
 * Returns the percent applied, or 0.
 */
export function limitHeapGrowth(env: Readonly<Record<string, string | undefined>>): number {
  const raw = env[HEAP_GROWTH_ENV]?.trim();
  const percent = raw === undefined || raw === '' ? DEFAULT_HEAP_GROWTH_PERCENT : Number(raw);
  if (!Number.isInteger(percent) || percent < 0 || percent > 1000) {
    throw new CarepipeError('CONFIG_INVALID', `${HEAP_GROWTH_ENV} must be a whole number of percent from 0 to 1000, not '${raw}'`);
  }
  if (percent > 0) v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}
