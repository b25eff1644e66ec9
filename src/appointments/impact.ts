/**
 * Missed-appointment impact: per group (clinician or department) and period (week or month), how many
 * appointments were due, how many were missed, the missed rate and the clinician minutes lost (the sum
 * of the missed appointments' durations).
 *
 * Counted: appointments that have concluded as of the clock, i.e. attended or missed, where an
 * appointment still `active` after its end counts as missed even if refresh-missed has not run yet.
 * Cancelled appointments and those not yet over are left out of both counts. Periods are calendar
 * weeks (Monday) or months in UK local time (Europe/London), so an appointment at 23:30 UTC on
 * 31 March (00:30 BST) belongs to April.
 */
import { CarepipeError } from '../errors.js';
import type { ExportParams } from '../export/treatments.js';

export const IMPACT_TIME_ZONE = 'Europe/London';

export type ImpactGroupBy = 'clinician' | 'department';
export type ImpactPeriod = 'week' | 'month';

export interface ImpactRow {
  group: string | null;
  /** YYYY-MM-DD, first day of the week or month */
  period_start: string;
  appointments: number;
  missed: number;
  /** missed / appointments, 4 decimals, as text (numeric) */
  missed_rate: string;
  clinician_minutes_lost: number;
}

export interface ImpactOptions {
  by: ImpactGroupBy;
  period: ImpactPeriod;
  from?: string;
  to?: string;
  now: Date;
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** Export flags to checked options: a mistake names the flag and what it accepts. */
export function impactOptions(params: ExportParams): ImpactOptions {
  const by = params.by ?? 'department';
  if (by !== 'clinician' && by !== 'department') {
    throw new CarepipeError('USAGE', `--by must be clinician or department, not '${by}'`, { field: '--by' });
  }
  const period = params.period ?? 'month';
  if (period !== 'week' && period !== 'month') {
    throw new CarepipeError('USAGE', `--period must be week or month, not '${period}'`, { field: '--period' });
  }
  for (const [flag, value] of [['--from', params.from], ['--to', params.to]] as const) {
    if (value !== undefined && (!DAY.test(value) || Number.isNaN(Date.parse(`${value}T00:00:00Z`)))) {
      throw new CarepipeError('USAGE', `${flag} must be a date YYYY-MM-DD, not '${value}'`, { field: flag });
    }
  }
  return { by, period, from: params.from, to: params.to, now: params.now ?? new Date() };
}

/** The impact SQL with its bindings; `--from`/`--to` are inclusive days in UK local time. */
export function impactQuery(options: ImpactOptions): { sql: string; bindings: unknown[] } {
  const column = options.by === 'clinician' ? 'clinician' : 'department';
  const local = `(starts_at at time zone '${IMPACT_TIME_ZONE}')`;
  const ended = `starts_at + duration * interval '1 minute' < ?::timestamptz`;
  const now = options.now.toISOString();
  // In the order the placeholders appear: period, the select list's clock, the where clause's clock.
  const bindings: unknown[] = [options.period, now, now];
  const filters: string[] = [];
  if (options.from) {
    filters.push(`${local}::date >= ?::date`);
    bindings.push(options.from);
  }
  if (options.to) {
    filters.push(`${local}::date <= ?::date`);
    bindings.push(options.to);
  }
  const sql = `
    with concluded as (
      select ${column} as grp,
             date_trunc(?, ${local})::date as period_start,
             (status = 'missed' or (status = 'active' and ${ended})) as is_missed,
             duration
        from appointments
       where (status in ('attended', 'missed') or (status = 'active' and ${ended}))
             ${filters.map((f) => `and ${f}`).join(' ')}
    )
    select grp as "group",
           to_char(period_start, 'YYYY-MM-DD') as period_start,
           count(*)::integer as appointments,
           count(*) filter (where is_missed)::integer as missed,
           round(count(*) filter (where is_missed)::numeric / count(*), 4) as missed_rate,
           coalesce(sum(duration) filter (where is_missed), 0)::integer as clinician_minutes_lost
      from concluded
     group by grp, period_start
     order by grp nulls last, period_start`;
  return { sql, bindings };
}
