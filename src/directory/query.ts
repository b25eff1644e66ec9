/**
 * CloudSearch request building: the search flags become `q`, `fq`, `q.parser`, `q.options`, `return`,
 * `size`, `start`/`cursor` and `sort`. Pure functions; the client sends what they build. Values put into
 * the structured `fq` are always quoted here, so a city such as `L'Île-Rousse` or a profession with
 * spaces cannot break (or widen) the filter.
 */
import { CarepipeError } from '../errors.js';
import { DIRECTORY_FIELDS, RETURN_PSEUDO_FIELDS, isDirectoryField } from './fields.js';

export const QUERY_PARSERS = ['simple', 'structured', 'lucene', 'dismax'] as const;
export type QueryParser = (typeof QUERY_PARSERS)[number];

/** CloudSearch refuses `size` above this, and `start + size` beyond it without a cursor. */
export const MAX_SIZE = 10_000;
export const DEFAULT_SIZE = 10;

export interface SearchOptions {
  /** What the user typed; without it the search matches everything (`matchall`). */
  term?: string;
  city?: string;
  /** A profession name (`Pharmacien`) or, all digits, a profession code (`21`). */
  profession?: string;
  postcode?: string;
  /** Exact keys, used by `import --rpps R --finess F`. */
  rpps?: string;
  finess?: string;
  /** A raw structured filter for experts, ANDed with the filters above. */
  fq?: string;
  size?: number;
  start?: number;
  /** `initial` or a cursor from a previous page (`hits.cursor`). */
  cursor?: string;
  sort?: string;
  parser?: QueryParser;
  /** `q.options` as JSON text, e.g. `{"fields":["last_name^2","city"],"defaultOperator":"or"}`. */
  qOptions?: string;
  /** Fields to return; all fields when absent. */
  return?: string[];
}

/** Quote a value for the structured syntax: single quotes, with `\` and `'` escaped by a backslash. */
export function quoteValue(value: string): string {
  return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/** `field:'value'`, the value quoted. */
export function fieldClause(field: string, value: string): string {
  if (!/^[a-z][a-z0-9_]*$/.test(field)) throw new CarepipeError('USAGE', `'${field}' is not a field name`, { field });
  return `${field}:${quoteValue(value)}`;
}

/** The `fq` from the filter flags and the raw `--fq`, or undefined when there is nothing to filter. */
export function buildFilterQuery(options: Pick<SearchOptions, 'city' | 'profession' | 'postcode' | 'rpps' | 'finess' | 'fq'>): string | undefined {
  const clauses: string[] = [];
  const add = (field: string, value: string | undefined) => {
    if (value === undefined) return;
    const trimmed = value.normalize('NFC').trim();
    if (trimmed === '') throw new CarepipeError('USAGE', `the filter on ${field} is empty`, { field });
    clauses.push(fieldClause(field, trimmed));
  };
  add('rpps_number', options.rpps);
  add('finess', options.finess);
  add('city', options.city);
  if (options.profession !== undefined) add(/^\d+$/.test(options.profession.trim()) ? 'profession_code' : 'profession_name', options.profession);
  add('postcode', options.postcode);
  if (options.fq !== undefined && options.fq.trim() !== '') clauses.push(options.fq.normalize('NFC').trim());
  if (clauses.length === 0) return undefined;
  return clauses.length === 1 ? clauses[0] : `(and ${clauses.join(' ')})`;
}

/** Check a `sort` expression: `field asc|desc` items separated by commas, on known fields or `_score`. */
function checkSort(sort: string): string {
  for (const item of sort.split(',')) {
    const match = /^\s*([a-z_][a-z0-9_]*)\s+(asc|desc)\s*$/.exec(item);
    if (!match) throw new CarepipeError('USAGE', `--sort '${item.trim()}' must be 'FIELD asc' or 'FIELD desc'`);
    if (match[1] !== '_score' && !isDirectoryField(match[1]!)) {
      throw new CarepipeError('USAGE', `--sort: unknown field '${match[1]}' (known: _score, ${DIRECTORY_FIELDS.join(', ')})`, { field: match[1] });
    }
  }
  return sort.trim();
}

/**
 * The CloudSearch parameters, in a stable order. Refuses what the directory would refuse anyway
 * (unknown `return` fields fail the whole request there) with a usage error naming the flag.
 */
export function buildSearchParams(options: SearchOptions): [string, string][] {
  const params: [string, string][] = [];
  const term = options.term?.normalize('NFC').trim();
  let parser = options.parser;
  if (parser !== undefined && !QUERY_PARSERS.includes(parser)) {
    throw new CarepipeError('USAGE', `--parser must be one of ${QUERY_PARSERS.join(', ')}`);
  }
  if (term) {
    params.push(['q', term]);
  } else {
    // CloudSearch needs a q; matchall is the structured way to say "everything" (the filter narrows it).
    if (parser !== undefined && parser !== 'structured') throw new CarepipeError('USAGE', `a search TERM is needed with --parser ${parser}`);
    params.push(['q', 'matchall']);
    parser = 'structured';
  }
  if (parser !== undefined) params.push(['q.parser', parser]);
  if (options.qOptions !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(options.qOptions);
    } catch {
      throw new CarepipeError('USAGE', '--q-options must be a JSON object, e.g. {"fields":["last_name","city"]}');
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new CarepipeError('USAGE', '--q-options must be a JSON object, e.g. {"fields":["last_name","city"]}');
    }
    params.push(['q.options', JSON.stringify(parsed)]);
  }
  const fq = buildFilterQuery(options);
  if (fq !== undefined) params.push(['fq', fq]);
  if (options.return !== undefined) {
    const fields = options.return.map((f) => f.trim()).filter(Boolean);
    const unknown = fields.filter((f) => !isDirectoryField(f) && !(RETURN_PSEUDO_FIELDS as readonly string[]).includes(f));
    if (unknown.length > 0) {
      throw new CarepipeError('USAGE', `--return: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (known: ${DIRECTORY_FIELDS.join(', ')})`, {
        field: unknown[0],
      });
    }
    if (fields.length > 0) params.push(['return', fields.join(',')]);
  }
  const size = options.size ?? DEFAULT_SIZE;
  if (!Number.isInteger(size) || size < 0 || size > MAX_SIZE) throw new CarepipeError('USAGE', `--size must be between 0 and ${MAX_SIZE}`);
  params.push(['size', String(size)]);
  if (options.start !== undefined && options.cursor !== undefined) {
    throw new CarepipeError('USAGE', 'use --start or --cursor, not both');
  }
  if (options.start !== undefined) {
    if (!Number.isInteger(options.start) || options.start < 0) throw new CarepipeError('USAGE', '--start must be a whole number');
    if (options.start + size > MAX_SIZE) {
      throw new CarepipeError('USAGE', `--start + --size beyond ${MAX_SIZE}: page deeper with --cursor initial`);
    }
    if (options.start > 0) params.push(['start', String(options.start)]);
  }
  if (options.cursor !== undefined) {
    if (options.cursor.trim() === '') throw new CarepipeError('USAGE', '--cursor is empty (use --cursor initial to start)');
    params.push(['cursor', options.cursor.trim()]);
  }
  if (options.sort !== undefined) params.push(['sort', checkSort(options.sort)]);
  return params;
}

/**
 * The request URL: `{base}/?q=…`, keeping any path and query the base already has. Values are
 * percent-encoded (`%20`, never `+`, which gateways do not all read as a space).
 */
export function searchUrl(baseUrl: string, params: [string, string][]): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new CarepipeError('CONFIG_INVALID', `the directory base URL '${baseUrl}' is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CarepipeError('CONFIG_INVALID', `the directory base URL must be http:// or https://`);
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  const existing = url.search.replace(/^\?/, '');
  const ours = params.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  url.search = '';
  return `${url.toString()}?${existing ? `${existing}&` : ''}${ours}`;
}
