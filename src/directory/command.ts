/**
 * The `directory-lookup` logic: search (a page of hits for people or JSON), import (one picked hit,
 * one hit by its keys, or every hit of a search, on the engine: src/pipeline/run.ts) and list. The
 * command file only wires flags here.
 */
import type { Writable } from 'node:stream';
import type { Knex } from 'knex';
import { csvRecord } from '../io/csv.js';
import { setting, type Settings } from '../config.js';
import { CarepipeError } from '../errors.js';
import type { RetryEvent } from '../http/retry.js';
import type { RunLedger } from '../db/ledger.js';
import { formatTable } from '../io/table.js';
import type { Reporter } from '../pipeline/reporter.js';
import { run, type Pipeline } from '../pipeline/run.js';
import { DirectoryClient, readImportHits, type ImportMode, type PageEnd, type SearchPage } from './read.js';
import { displayFields, mapHit, type DirectoryEntry, type DirectoryHit } from './map.js';
import type { SearchOptions } from './query.js';
import { writeEntries } from './write.js';
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

export interface ImportContext {
  knex: Knex;
  ledger: RunLedger;
  reporter: Reporter;
  dryRun: boolean;
  signal: AbortSignal;
  now: () => Date;
}

function describeMode(mode: ImportMode): string {
  if ('pick' in mode) return `--pick ${mode.pick}`;
  if ('rpps' in mode) return `--rpps ${mode.rpps} --finess ${mode.finess}`;
  return '--all';
}

/**
 * Import per the mode on the engine: the reader's hits (a page a batch), `mapHit`, `writeEntries`.
 * Counts and rejects go to the ledger, the created/existing figures of organizations, workers and links
 * to its details, as each page commits.
 */
export async function runImport(
  mode: ImportMode,
  options: SearchOptions,
  directory: DirectoryConnection,
  ctx: ImportContext,
): Promise<{ human: string; summary: Record<string, unknown> }> {
  const { ledger, reporter } = ctx;
  const client = clientFor(directory, reporter, ctx.signal, ledger);
  await reporter.start(`directory-lookup import ${describeMode(mode)}`);
  const single = !('all' in mode);
  let found = 0;
  const pipeline: Pipeline<DirectoryHit, DirectoryEntry, PageEnd> = {
    name: 'directory-lookup import',
    // A page is one batch: its end (a checkpoint) closes it.
    batchSize: (options.size ?? 100) + 1,
    read: () => readImportHits(client, mode, options),
    map: (hit) => mapHit(hit),
    async write(trx, batch, stage) {
      const { outcomes, rows } = await writeEntries(trx, batch, { runId: stage.runId, now: ctx.now() });
      return {
        outcomes,
        committed: () => {
          rows.forEach((row, i) => {
            ledger.bump(['organizations', row.organization]);
            ledger.bump(['workers', row.worker]);
            ledger.bump(['links', row.link]);
            // One line per entry for a single import; --all says per page (below), cron logs stay short.
            const { value, at } = batch.items[i]!;
            if (single) {
              reporter.info('imported', {
                entry: at.entry,
                finess: value.organization.finess,
                rpps_number: value.worker.rpps_number,
                organization: row.organization,
                worker: row.worker,
                link: row.link,
              });
            }
          });
          for (const page of batch.checkpoints) {
            found = page.found;
            if (!single) {
              reporter.info('page', { entries: page.entries, imported: rows.length, rejected: page.entries - rows.length, through_entry: page.throughEntry });
            }
          }
        },
      };
    },
    describe: (s) => ({ text: `imported ${s.read} of ${found}`, fields: { read: s.read, found } }),
  };
  await run(pipeline, { knex: ctx.knex, ledger, signal: ctx.signal, dryRun: ctx.dryRun, reporter });
  const d = ledger.details as Record<string, Record<string, number> | undefined>;
  const figure = (kind: string) => `${d[kind]?.created ?? 0} created, ${d[kind]?.existing ?? 0} existing`;
  const { read, rejected } = ledger.counts;
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
