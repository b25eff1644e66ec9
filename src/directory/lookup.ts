/**
 * The `directory-lookup` logic: search (a page of hits for people or JSON), import (one picked hit,
 * one hit by its keys, or every hit of a search) and list. The command file only wires flags here.
 */
import type { Writable } from 'node:stream';
import type { Knex } from 'knex';
import { csvRecord } from '../io/csv.js';
import { setting, type Settings } from '../config.js';
import { CarepipeError } from '../errors.js';
import type { RetryEvent } from '../http/retry.js';
import type { RunLedger } from '../db/ledger.js';
import { inRunTransaction } from '../db/transaction.js';
import { formatTable } from '../io/table.js';
import type { Reporter } from '../pipeline/reporter.js';
import { DirectoryClient, type SearchPage } from './client.js';
import { displayFields, toEntry, type DirectoryEntry, type DirectoryHit } from './normalise.js';
import type { SearchOptions } from './query.js';
import { saveEntries } from './store.js';
import { groupByOrganization, LIST_COLUMNS, organizationWorkerRows } from './list.js';
import { allowedOrigins, httpPolicy, type HttpFlags, type HttpPolicy } from '../http/policy.js';

export interface DirectoryConnection {
  baseUrl: string;
  timeoutMs?: number;
  maxRetries?: number;
  /** The origin rule and size cap of the run's HTTP. */
  policy: HttpPolicy;
}

/** Where the directory is: `--base-url`, DIRECTORY_BASE_URL, or `directory.baseUrl` in the config file. */
export function resolveDirectory(settings: Settings, flags: HttpFlags & { baseUrl?: string; timeout?: number; retries?: number }): DirectoryConnection {
  const baseUrl = setting(settings, flags.baseUrl, 'DIRECTORY_BASE_URL', 'directory.baseUrl');
  if (!baseUrl) throw new CarepipeError('CONFIG_INVALID', 'no directory given: pass --base-url URL or set DIRECTORY_BASE_URL');
  const number = (value: number | undefined, env: string, file: string, name: string) => {
    if (value !== undefined) return value;
    const text = setting(settings, undefined, env, file);
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) throw new CarepipeError('CONFIG_INVALID', `${env} (${name}) must be a whole number`);
    return n;
  };
  return {
    baseUrl,
    timeoutMs: number(flags.timeout, 'DIRECTORY_TIMEOUT_MS', 'directory.timeoutMs', '--timeout'),
    maxRetries: number(flags.retries, 'DIRECTORY_RETRIES', 'directory.retries', '--retries'),
    policy: httpPolicy(baseUrl, { allowOrigins: allowedOrigins(settings, flags), maxResponseMb: settings.maxResponseMb }),
  };
}

function clientFor(directory: DirectoryConnection, reporter: Reporter, signal?: AbortSignal, ledger?: RunLedger): DirectoryClient {
  return new DirectoryClient({
    ...directory,
    signal,
    onRetry: (event: RetryEvent) => {
      ledger?.bump('retries');
      reporter.warn('retry', {
        message: `${event.reason}; retrying in ${event.waitMs} ms`,
        what: event.what,
        attempt: event.attempt,
        wait_ms: event.waitMs,
        retries_left: event.retriesLeft,
      });
    },
  });
}

const TABLE_FIELDS = ['rpps_number', 'first_name', 'last_name', 'profession_name', 'registered_name', 'finess', 'city', 'postcode'] as const;

/** How to reach the next page, as flags. */
function nextPageHint(page: SearchPage, options: SearchOptions): string | undefined {
  if (page.cursor && options.cursor !== undefined) return page.hits.length > 0 ? `--cursor ${page.cursor}` : undefined;
  const shownTo = page.start + page.hits.length;
  return shownTo < page.found ? `--start ${shownTo}` : undefined;
}

export interface SearchResult {
  human: string;
  summary: Record<string, unknown>;
}

/** One page of hits: a numbered table (numbers are what `import --pick N` takes) and the JSON summary. */
export async function runSearch(options: SearchOptions, directory: DirectoryConnection, reporter: Reporter, signal?: AbortSignal): Promise<SearchResult> {
  const page = await clientFor(directory, reporter, signal).search(options);
  const hits = page.hits.map((hit, i) => ({ number: page.start + i + 1, id: hit.id, fields: displayFields(hit) }));
  const columns = options.return?.length ? TABLE_FIELDS.filter((f) => options.return!.includes(f)) : [...TABLE_FIELDS];
  const table = formatTable(
    ['#', ...columns],
    hits.map((h) => [h.number, ...columns.map((c) => h.fields[c] ?? '')]),
  );
  const next = nextPageHint(page, options);
  const shown = hits.length ? `${hits[0]!.number}–${hits[hits.length - 1]!.number}` : 'none';
  const human = `${table}${shown} of ${page.found}${next ? ` · next page: ${next}` : ''}\n`;
  return {
    human,
    summary: { found: page.found, start: page.start, ...(page.cursor ? { cursor: page.cursor } : {}), next: next ?? null, hits },
  };
}

export type ImportMode = { pick: number } | { rpps: string; finess: string } | { all: true };

export interface ImportContext {
  knex: Knex;
  ledger: RunLedger;
  reporter: Reporter;
  dryRun: boolean;
  signal: AbortSignal;
  now: () => Date;
}

/** Raised inside a dry run's transaction to roll it back once everything was checked and counted. */
class DryRunRollback extends Error {}

/** Import one page of hits in one transaction: every hit is written whole or rejected whole. */
async function importPage(ctx: ImportContext, page: SearchPage, hits: { hit: DirectoryHit; entry: number }[]): Promise<void> {
  const { ledger, reporter } = ctx;
  const work = async (trx: Knex.Transaction) => {
    const accepted: { entry: number; value: DirectoryEntry }[] = [];
    for (const { hit, entry } of hits) {
      ledger.add({ read: 1 });
      const result = toEntry(hit);
      if (result.ok) {
        accepted.push({ entry, value: result.entry });
        continue;
      }
      const [first] = result.issues;
      const message = result.issues.map((i) => i.message).join('; ');
      reporter.warn('rejected', { message: `entry ${entry} (${hit.id}): ${message}`, entry, record: hit.id, field: first!.field, reason: first!.reasonCode });
      await ledger.reject({ source: page.url, entry, recordKey: hit.id, field: first!.field, reasonCode: first!.reasonCode, message, raw: hit }, trx);
    }
    const outcomes = await saveEntries(
      trx,
      accepted.map((a) => a.value),
      { runId: ledger.id, now: ctx.now() },
    );
    outcomes.forEach((outcome, i) => {
      const { entry, value } = accepted[i]!;
      ledger.bump(['organizations', outcome.organization]);
      ledger.bump(['workers', outcome.worker]);
      ledger.bump(['links', outcome.link]);
      const created = outcome.organization === 'created' || outcome.worker === 'created' || outcome.link === 'created';
      ledger.add(created ? { written: 1 } : { unchanged: 1 });
      // One line per entry for a single import; --all says per page (below), cron logs stay short.
      if (hits.length === 1) reporter.info('imported', {
        entry,
        finess: value.organization.finess,
        rpps_number: value.worker.rpps_number,
        organization: outcome.organization,
        worker: outcome.worker,
        link: outcome.link,
      });
    });
    if (hits.length > 1) {
      reporter.info('page', { entries: hits.length, imported: accepted.length, rejected: hits.length - accepted.length, through_entry: hits[hits.length - 1]!.entry });
    }
    if (ctx.dryRun) throw new DryRunRollback();
  };
  try {
    await inRunTransaction(ctx.knex, ctx.ledger, work);
  } catch (err) {
    if (!(err instanceof DryRunRollback)) throw err;
  }
}

function describeMode(mode: ImportMode): string {
  if ('pick' in mode) return `--pick ${mode.pick}`;
  if ('rpps' in mode) return `--rpps ${mode.rpps} --finess ${mode.finess}`;
  return '--all';
}

/** Import per the mode; counts and rejects go to the ledger, the exit code follows from them. */
export async function runImport(
  mode: ImportMode,
  options: SearchOptions,
  directory: DirectoryConnection,
  ctx: ImportContext,
): Promise<{ human: string; summary: Record<string, unknown> }> {
  const client = clientFor(directory, ctx.reporter, ctx.signal, ctx.ledger);
  await ctx.reporter.start(`directory-lookup import ${describeMode(mode)}`);
  if ('all' in mode) {
    let entry = 0;
    for await (const page of client.pages(options)) {
      if (ctx.signal.aborted) break;
      const hits = page.hits.map((hit) => ({ hit, entry: ++entry }));
      await importPage(ctx, page, hits);
      ctx.reporter.progress(`imported ${ctx.ledger.counts.read} of ${page.found}`, { read: ctx.ledger.counts.read, found: page.found });
    }
  } else if ('pick' in mode) {
    if (!Number.isInteger(mode.pick) || mode.pick < 1) throw new CarepipeError('USAGE', '--pick must be a number from the search table (1, 2, …)');
    let page: SearchPage;
    let hit: DirectoryHit | undefined;
    if (options.cursor !== undefined) {
      // A cursor page has no absolute offset: N counts from its first row.
      page = await client.search(options);
      hit = page.hits[mode.pick - 1];
    } else {
      page = await client.search({ ...options, start: mode.pick - 1, size: 1, return: undefined });
      hit = page.hits[0];
    }
    if (!hit) {
      throw new CarepipeError('USAGE', `--pick ${mode.pick}: the search has ${page.found} hit${page.found === 1 ? '' : 's'}`);
    }
    await importPage(ctx, page, [{ hit, entry: mode.pick }]);
  } else {
    const page = await client.search({ ...options, rpps: mode.rpps, finess: mode.finess, start: undefined, cursor: undefined, size: 10, return: undefined });
    // The filter is exact, but an analysed field could match loosely: keep the hit with these keys.
    const hit = page.hits.find((h) => {
      const f = displayFields(h);
      return f.rpps_number === mode.rpps && f.finess?.toUpperCase() === mode.finess.toUpperCase();
    });
    if (!hit) throw new CarepipeError('USAGE', `no directory entry for rpps_number ${mode.rpps} at finess ${mode.finess}`);
    await importPage(ctx, page, [{ hit, entry: 1 }]);
  }
  const d = ctx.ledger.details as Record<string, Record<string, number> | undefined>;
  const figure = (kind: string) => `${d[kind]?.created ?? 0} created, ${d[kind]?.existing ?? 0} existing`;
  const { read, rejected } = ctx.ledger.counts;
  const human = [
    `${ctx.dryRun ? 'Dry run: would import' : 'Imported'} ${read - rejected} of ${read} entr${read === 1 ? 'y' : 'ies'}${rejected ? ` (${rejected} rejected)` : ''}`,
    `organizations: ${figure('organizations')}`,
    `workers: ${figure('workers')}`,
    `links: ${figure('links')}`,
  ].join('\n');
  return { human, summary: {} };
}

export type ListFormat = 'table' | 'json' | 'csv';

/**
 * A writer that waits when the stream is full (so a large CSV streams at the reader's pace) and stops
 * quietly when the reader goes away (`carepipe … | head`).
 */
export function streamWriter(stream: Writable): (text: string) => Promise<void> {
  let closed = false;
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') closed = true;
  });
  return async (text) => {
    if (closed) throw new ReaderGone();
    if (!stream.write(text)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          stream.off('drain', done);
          stream.off('error', done);
          stream.off('close', done);
          resolve();
        };
        stream.on('drain', done).on('error', done).on('close', done);
      });
    }
  };
}

/** The output's reader closed its end: stop producing, it is not an error. */
export class ReaderGone extends Error {}

/** The listing in a format, written piecewise through `write` (CSV streams; JSON and table are for people-sized lists). */
export async function runList(
  knex: Knex,
  options: { finess?: string; format: ListFormat },
  write: (text: string) => void | Promise<void>,
): Promise<number> {
  const rows = organizationWorkerRows(knex, { finess: options.finess });
  let organizations = 0;
  if (options.format === 'csv') {
    await write(csvRecord(LIST_COLUMNS));
    for await (const row of rows) await write(csvRecord(LIST_COLUMNS.map((c) => row[c])));
    return organizations;
  }
  if (options.format === 'json') {
    await write('[');
    for await (const org of groupByOrganization(rows)) {
      await write(`${organizations++ ? ',' : ''}\n${JSON.stringify(org)}`);
    }
    await write(organizations ? '\n]\n' : ']\n');
    return organizations;
  }
  const table: (string | null)[][] = [];
  for await (const org of groupByOrganization(rows)) {
    organizations++;
    if (org.workers.length === 0) table.push([org.finess, org.name, org.city, '', '', '']);
    org.workers.forEach((w, i) => {
      table.push(i === 0 ? [org.finess, org.name, org.city, w.rpps_number, `${w.first_name} ${w.last_name}`, w.profession_name] : ['', '', '', w.rpps_number, `${w.first_name} ${w.last_name}`, w.profession_name]);
    });
  }
  await write(formatTable(['finess', 'organization', 'city', 'rpps_number', 'worker', 'profession'], table));
  await write(`${organizations} organization${organizations === 1 ? '' : 's'}\n`);
  return organizations;
}
