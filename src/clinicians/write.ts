/**
 * The write stage of `import-clinicians`: a batch upserted into `clinicians`, keyed by (provider,
 * clinician_key), inside the engine's transaction. A new clinician is inserted, a changed one updated,
 * an unchanged one only has its `last_seen` moved; a clinician already seen earlier in this run is
 * counted as a duplicate. A rejected record that still names a clinician moves that clinician's
 * `last_seen` too. After a complete listing (`finish`), the clinicians the provider no longer returns
 * are marked inactive with the day: never when the listing was empty or had a reject without a key.
 * Rows are never deleted.
 */
import type { Knex } from 'knex';
import type { Fields } from '../pipeline/reporter.js';
import type { Batch, Outcome, RunSummary, StageContext, WriteResult } from '../pipeline/run.js';
import type { ClinicianItem } from './map.js';
import type { Clinician } from './types.js';

/** The run's figures beyond the engine's counts (`ledger.details.clinicians`). */
export interface ClinicianFigures {
  inserted: number;
  updated: number;
  unchanged: number;
  /** The same clinician returned twice in one run (a page repeating a clinician). */
  duplicates: number;
  marked_inactive: number;
  /** Why no clinician was marked inactive, when the backend's listing is complete but marking was skipped. */
  inactive_marking?: string;
}

export interface WriterOptions {
  provider: string;
  /** True when one listing holds every clinician: only then are the missing ones marked inactive. */
  completeListing: boolean;
  /** One instant for the whole run: every clinician returned gets it as last_seen. */
  seenAt: Date;
  figures: ClinicianFigures;
  log: (level: 'info' | 'warn', event: string, fields: Fields) => void;
}

const CONTENT = ['given_name', 'family_name', 'title', 'clinic', 'npi', 'rpps', 'specialty', 'phone', 'email', 'active'] as const;

interface ClinicianRow {
  provider: string;
  clinician_key: string;
  given_name: string | null;
  family_name: string | null;
  title: string | null;
  clinic: string | null;
  npi: string | null;
  rpps: string | null;
  specialty: string | null;
  phone: string | null;
  email: string | null;
  active: boolean;
  inactive_since: string | null;
  last_seen: Date;
}

type Figure = 'inserted' | 'updated' | 'unchanged' | 'duplicates';

/** The writer and the finish of one run (they share the rejects that still named a clinician). */
export function clinicianWriter(options: WriterOptions) {
  const { provider, seenAt, figures } = options;
  /** Committed rejects that named a clinician; the others (summary.rejected less these) had no key. */
  let keyedRejects = 0;

  async function write(trx: Knex.Transaction, batch: Batch<ClinicianItem, never>, ctx: StageContext): Promise<WriteResult> {
    const clinicians: Clinician[] = [];
    const seen: string[] = [];
    for (const { value } of batch.items) {
      if ('clinician' in value) clinicians.push(value.clinician);
      else seen.push(value.seen);
    }
    const counted = await upsertBatch(trx, provider, clinicians, seenAt, ctx.runId);
    if (seen.length > 0) await trx('clinicians').where({ provider }).whereIn('clinician_key', seen).update({ last_seen: seenAt });
    const outcomes: Outcome[] = [];
    let c = 0;
    for (const { value } of batch.items) {
      if ('reject' in value) outcomes.push({ reject: value.reject });
      else outcomes.push(counted.outcomes[c++]!);
    }
    return {
      outcomes,
      committed: () => {
        for (const k of Object.keys(counted.figures) as Figure[]) figures[k] += counted.figures[k];
        keyedRejects += seen.length;
      },
    };
  }

  /** After a complete read: mark inactive who a complete listing no longer returns; the rows marked. */
  async function finish(trx: Knex.Transaction, summary: RunSummary, ctx: StageContext): Promise<number> {
    if (!options.completeListing) return 0;
    const unkeyed = summary.rejected - keyedRejects;
    if (summary.read === 0) {
      // An empty answer is more likely a provider fault than everyone leaving at once.
      figures.inactive_marking = 'skipped: the listing was empty';
    } else if (unkeyed > 0) {
      // A rejected record we cannot key might be a clinician still listed: do not call anyone gone.
      figures.inactive_marking = `skipped: ${unkeyed} rejected record(s) without a key`;
    }
    if (figures.inactive_marking) {
      options.log('warn', 'inactive_marking_skipped', { reason: figures.inactive_marking });
      return 0;
    }
    figures.marked_inactive = await trx('clinicians')
      .where({ provider, active: true })
      .where('last_seen', '<', seenAt)
      .update({ active: false, inactive_since: isoDay(seenAt), source_run: ctx.runId });
    if (figures.marked_inactive > 0) options.log('info', 'marked_inactive', { provider, clinicians: figures.marked_inactive });
    return figures.marked_inactive;
  }

  return { write, finish };
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function toRow(provider: string, c: Clinician, previous: ClinicianRow | undefined, seenAt: Date): Omit<ClinicianRow, 'last_seen'> {
  return {
    provider,
    clinician_key: c.key,
    given_name: c.givenName,
    family_name: c.familyName,
    title: c.title,
    clinic: c.clinic,
    npi: c.npi,
    rpps: c.rpps,
    specialty: c.specialty,
    phone: c.phone,
    email: c.email,
    active: c.active,
    // keep the day a clinician went inactive; clear it when they are back
    inactive_since: c.active ? null : previous && !previous.active ? previous.inactive_since : isoDay(seenAt),
  };
}

/**
 * Compare a batch with what is stored, then insert the new, update the changed, and only move
 * `last_seen` on the unchanged. A clinician already seen earlier in this run is a duplicate (the
 * engine never puts two copies of one key in a batch): unchanged, or updated when its fields differ.
 */
async function upsertBatch(
  trx: Knex.Transaction,
  provider: string,
  clinicians: Clinician[],
  seenAt: Date,
  runId: number | null,
): Promise<{ outcomes: Outcome[]; figures: Record<Figure, number> }> {
  const figures: Record<Figure, number> = { inserted: 0, updated: 0, unchanged: 0, duplicates: 0 };
  if (clinicians.length === 0) return { outcomes: [], figures };
  const stored = (await trx('clinicians')
    .select('clinician_key', ...CONTENT, 'inactive_since', 'last_seen')
    .where({ provider })
    .whereIn(
      'clinician_key',
      clinicians.map((c) => c.key),
    )) as ClinicianRow[];
  const byKey = new Map(stored.map((row) => [row.clinician_key, row]));
  const changed: Record<string, unknown>[] = [];
  const unchangedKeys: string[] = [];
  const outcomes: Outcome[] = [];
  for (const clinician of clinicians) {
    const previous = byKey.get(clinician.key);
    const row = toRow(provider, clinician, previous, seenAt);
    const again = previous !== undefined && new Date(previous.last_seen).getTime() >= seenAt.getTime();
    if (again) figures.duplicates += 1;
    if (!previous) {
      figures.inserted += 1;
      changed.push({ ...row, first_seen: seenAt, last_seen: seenAt, source_run: runId });
      outcomes.push('written');
    } else if (CONTENT.some((column) => previous[column] !== row[column])) {
      figures.updated += 1;
      changed.push({ ...row, first_seen: seenAt, last_seen: seenAt, source_run: runId });
      outcomes.push('written');
    } else {
      if (!again) {
        figures.unchanged += 1;
        unchangedKeys.push(clinician.key);
      }
      outcomes.push('unchanged');
    }
  }
  if (changed.length > 0) {
    await trx('clinicians')
      .insert(changed)
      .onConflict(['provider', 'clinician_key'])
      .merge([...CONTENT, 'inactive_since', 'last_seen', 'source_run']);
  }
  if (unchangedKeys.length > 0) {
    await trx('clinicians').where({ provider }).whereIn('clinician_key', unchangedKeys).update({ last_seen: seenAt });
  }
  return { outcomes, figures };
}
