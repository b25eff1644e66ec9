/**
 * The FHIR file reader: files, folders, globs and stdin holding Bundles (any type), Bulk Data ndjson
 * or single resources, gzipped or not, told apart by their content. Yields FhirItems:
 *
 *   for await (const item of readFhirFiles(['data/', 'export/*.ndjson.gz', '-'], { cwd, stdin })) …
 *
 * - Memory stays flat: ndjson is read line by line, a large Bundle entry by entry (json-stream.ts);
 *   files up to `memoryLimit` bytes are parsed whole, which is several times faster.
 * - `urn:uuid:` fullUrls of a Bundle are resolved to `Type/id` in every `reference` of every resource
 *   of that Bundle. References may point forward: a streamed Bundle's entries that point to a fullUrl
 *   not seen yet are spilled to a temporary file and yielded after the last entry (with their own
 *   entry index), so memory holds only the fullUrl → Type/id map. stdin is spooled to a temporary file.
 *   An entry without `id` whose fullUrl is `urn:uuid:X` gets the id X (what a server would assign).
 * - Entries with `request.method = DELETE` yield `delete` items.
 * - Bad records yield `invalid` items (file, line or entry, reasonCode, field, raw) and reading goes on.
 * - After each file, a `checkpoint` item `{ key: 'file:' + absolute path, state: { path, size, sha256 } }`;
 *   `skip(fingerprint)` lets the caller pass over files it already loaded (fingerprinted before reading).
 */
import { isUtf8 } from 'node:buffer';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, gunzipSync } from 'node:zlib';
import { parse as parseLossless, stringify as stringifyLossless } from 'lossless-json';
import type { FhirResource } from 'fhir/r4.js';
import type { RejectReason } from '../../pipeline/reasons.js';
import type { FhirItem, Origin } from './item.js';
import { PRIVATE_FILE_MODE } from '../../io/private-mode.js';
import { makePrivateTempDir, removePrivateTempDir, removeStaleTempDirs } from '../../io/private-temp.js';
import { expandInputs, type InputFile } from '../../io/inputs.js';
import { exceedsJsonDepth, exceedsJsonTextDepth, invalidUtf8Line, tooDeepMessage, Utf8Check } from '../../io/json-limits.js';
import { jsonEvents } from '../../io/json-stream.js';
import { readLines, splitLines } from '../../io/ndjson.js';
import { FullUrls, resolveReferences, Spill, URN_UUID } from './bundle.js';
import { byteCap, classify, countLines, mayLoseDigits, scanFile, stripBom, type FileFingerprint, type Scan } from './format.js';
import { isObject, MAX_RAW, resourceProblem } from './validate.js';



export interface ReadFhirFilesOptions {
  /** Folder relative inputs are resolved against (default process.cwd()). */
  cwd?: string;
  /** What `-` reads (default process.stdin). */
  stdin?: Readable;
  /** Return true to pass over a file, e.g. one already loaded with this fingerprint. */
  skip?: (file: FileFingerprint) => boolean | Promise<boolean>;
  signal?: AbortSignal;
  /** 'lossless': numbers as LosslessNumber, so decimals keep their digits (`1.50`); default plain numbers. */
  numbers?: 'number' | 'lossless';
  /** Files up to this many bytes are parsed in memory (default 16 MiB); 0 streams everything. */
  memoryLimit?: number;
  /**
   * false: a resource without `id` is yielded rather than rejected (its `id` is then undefined,
   * whatever the type says). For evaluating views over examples; never for loading.
   */
  requireId?: boolean;
  /** Most bytes taken from stdin (it is spooled to disk first); more is an error (exit 4). Default: no cap. */
  maxStdinBytes?: number;
  /** Told of inputs passed over without failing the run (a symbolic link loop in a folder). */
  onWarning?: (message: string, context: { file: string }) => void;
}

const DEFAULT_MEMORY_LIMIT = 16 * 1024 * 1024;


/** An entry to read again once the whole Bundle has been seen. */
const DEFER = Symbol('defer');

/** Reads every input in order; throws CarepipeError INPUT_NOT_FOUND before reading when one is missing. */
export async function* readFhirFiles(inputs: readonly string[], options: ReadFhirFilesOptions = {}): AsyncGenerator<FhirItem> {
  const cwd = options.cwd ?? process.cwd();
  const files = await expandInputs(inputs, cwd, { onWarning: options.onWarning });
  await removeStaleTempDirs();
  for (const file of files) {
    options.signal?.throwIfAborted();
    if (file.path === undefined) {
      yield* readStdin(file, options);
    } else {
      yield* readOneFile(file.source, file.path, `file:${file.path}`, file.path, options);
    }
  }
}

async function* readStdin(file: InputFile, options: ReadFhirFilesOptions): AsyncGenerator<FhirItem> {
  const dir = await makePrivateTempDir('stdin');
  try {
    const spool = path.join(dir, 'stdin');
    const cap = options.maxStdinBytes ?? Infinity;
    await pipeline(options.stdin ?? process.stdin, byteCap(cap), createWriteStream(spool, { flags: 'wx', mode: PRIVATE_FILE_MODE }), { signal: options.signal });
    yield* readOneFile(file.source, spool, 'stdin', '-', options);
  } finally {
    await removePrivateTempDir(dir);
  }
}



async function* readOneFile(
  source: string,
  file: string,
  key: string,
  shownPath: string,
  options: ReadFhirFilesOptions,
): AsyncGenerator<FhirItem> {
  const scan = await scanFile(file, shownPath);
  const fingerprint: FileFingerprint = { path: scan.path, size: scan.size, sha256: scan.sha256 };
  if (options.skip && (await options.skip(fingerprint))) return;
  const reader = new ContentReader(source, file, scan, options);
  yield* reader.read();
  yield { kind: 'checkpoint', source, key, state: fingerprint };
}

/** Reads one file's content once its fingerprint is known. */
class ContentReader {
  private readonly lossless: boolean;
  private readonly parse: (text: string) => unknown;
  private readonly memoryLimit: number;

  constructor(
    private readonly source: string,
    private readonly file: string,
    private readonly scan: Scan,
    private readonly options: ReadFhirFilesOptions,
  ) {
    this.lossless = options.numbers === 'lossless';
    // lossless-json recurses: text nested too deep goes to JSON.parse (which does not), to be rejected as TOO_DEEP.
    this.parse = this.lossless
      ? (text) => (mayLoseDigits(text) && !exceedsJsonTextDepth(text) ? parseLossless(text) : JSON.parse(text))
      : (text) => JSON.parse(text);
    this.memoryLimit = options.memoryLimit ?? DEFAULT_MEMORY_LIMIT;
  }

  async *read(): AsyncGenerator<FhirItem> {
    const text = await this.readSmall();
    if (Buffer.isBuffer(text)) {
      yield* this.invalidUtf8Items(text);
      return;
    }
    if (typeof text === 'object') {
      yield text.invalid;
      return;
    }
    if (text !== undefined) {
      const kind = classify(text, true, this.file);
      if (kind === 'ndjson') {
        for (const { line, text: lineText } of splitLines(text)) {
          const item = this.lineItem(lineText, line);
          if (item) yield item;
        }
        return;
      }
      // One entry too deep would send the whole text to JSON.parse, losing every entry's digits: stream it.
      if (this.lossless && mayLoseDigits(text) && exceedsJsonTextDepth(text)) {
        yield* this.streamDocument();
        return;
      }
      let document: unknown;
      try {
        document = text.trim() === '' ? undefined : this.parse(stripBom(text));
      } catch {
        // Not one JSON value: stream it, which yields what comes before the break and then says where.
        yield* this.streamDocument();
        return;
      }
      if (document !== undefined) yield* this.documentItems(document, {});
      return;
    }
    const head = await this.peek();
    if (typeof head === 'object') {
      yield head.invalid;
      return;
    }
    if (classify(head, false, this.file) === 'ndjson') {
      for await (const { line, text: lineText, invalidUtf8 } of readLines(this.open(), { signal: this.options.signal })) {
        const item = invalidUtf8 ? this.invalidUtf8Item(line) : this.lineItem(lineText, line);
        if (item) yield item;
      }
      return;
    }
    yield* this.streamDocument();
  }

  /**
   * The items of a file read whole whose bytes are not all UTF-8: as ndjson, every line on its own (the
   * bad ones rejected); a JSON document is streamed, as a large one is, up to its bad line.
   */
  private async *invalidUtf8Items(bytes: Buffer): AsyncGenerator<FhirItem> {
    if (classify(bytes.toString('utf8'), true, this.file) !== 'ndjson') {
      yield* this.streamDocument();
      return;
    }
    let line = 0;
    for (let start = 0; start <= bytes.length; ) {
      const nl = bytes.indexOf(0x0a, start);
      const end = nl === -1 ? bytes.length : nl;
      if (nl === -1 && start === end) break;
      const lineBytes = bytes.subarray(start, end);
      line++;
      const item = invalidUtf8Line(lineBytes) !== undefined ? this.invalidUtf8Item(line) : this.lineItem(lineBytes.toString('utf8').replace(/\r$/, ''), line);
      if (item) yield item;
      start = end + 1;
    }
  }

  private invalidUtf8Item(line: number): FhirItem {
    return this.invalid({ line }, 'INVALID_UTF8', `invalid UTF-8 on line ${line}: the line is not read`);
  }

  /**
   * The whole decoded text when the file is small enough, undefined when it must be streamed; its bytes
   * when they are not all UTF-8.
   */
  private async readSmall(): Promise<string | undefined | Buffer | { invalid: FhirItem }> {
    let bytes: Buffer;
    if (this.scan.gzip) {
      if (this.scan.size > this.memoryLimit / 4) return undefined;
      const compressed = await readFile(this.file);
      try {
        bytes = gunzipSync(compressed, { maxOutputLength: Math.max(1, this.memoryLimit) });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
        return { invalid: this.invalid({}, 'INVALID_GZIP', `not a valid gzip file: ${(err as Error).message}`) };
      }
    } else {
      if (this.scan.size > this.memoryLimit) return undefined;
      bytes = await readFile(this.file);
    }
    return isUtf8(bytes) ? bytes.toString('utf8') : bytes;
  }

  /**
   * The decompressed byte stream of the file; through `check` when given, which stops it at the first
   * line that is not UTF-8 (for a JSON document; ndjson lines are checked one by one).
   */
  private open(check?: Utf8Check): Readable {
    const raw = createReadStream(this.file, { highWaterMark: 1 << 20 });
    let bytes: Readable = raw;
    if (this.scan.gzip) {
      const gunzip = createGunzip();
      raw.on('error', (err) => gunzip.destroy(err));
      gunzip.on('close', () => raw.destroy());
      bytes = raw.pipe(gunzip);
    }
    if (!check) return bytes;
    bytes.on('error', (err) => check.destroy(err));
    check.on('close', () => bytes.destroy());
    return bytes.pipe(check);
  }

  /** The first lines of a streamed file, enough to tell ndjson from a JSON document. */
  private async peek(): Promise<string | { invalid: FhirItem }> {
    const input = this.open();
    input.setEncoding('utf8');
    let head = '';
    try {
      for await (const chunk of input as AsyncIterable<string>) {
        head += chunk;
        if (head.length > 1 << 20 || countLines(head) >= 3) break;
      }
    } catch (err) {
      return { invalid: this.invalid({}, this.scan.gzip ? 'INVALID_GZIP' : 'INVALID_JSON', (err as Error).message) };
    } finally {
      input.destroy();
    }
    return head;
  }

  private lineItem(text: string, line: number): FhirItem | undefined {
    if (line === 1) text = stripBom(text);
    if (text.trim() === '') return undefined;
    let value: unknown;
    try {
      value = this.parse(text);
    } catch (err) {
      return this.invalid({ line }, 'INVALID_JSON', `invalid JSON: ${(err as Error).message}`, undefined, text);
    }
    return this.resourceItem(value, { line }, undefined, false, text) as FhirItem;
  }

  /**
   * Streams one or more top-level JSON values; Bundles entry by entry, in one pass. An entry whose
   * urn:uuid reference is not yet known (it points forward) is spilled to a temporary file and read
   * again at the end of the file, when every fullUrl is known: memory holds only fullUrl → Type/id.
   */
  private async *streamDocument(): AsyncGenerator<FhirItem> {
    const signal = this.options.signal;
    const refs = this.scan.mayHaveUrnUuid ? new FullUrls() : undefined;
    const spill = new Spill(this.lossless);
    const check = new Utf8Check();
    // The text stops early at bytes that are not UTF-8: say that, not that the JSON is cut.
    let utf8Reported = false;
    const utf8Invalid = (entry: number | undefined) => {
      utf8Reported = true;
      const line = check.failure!.context.line!;
      return this.invalid({ line, ...(entry !== undefined ? { entry } : {}) }, 'INVALID_UTF8', `invalid UTF-8 on line ${line}: the rest of the file is not read`);
    };
    try {
      for await (const event of jsonEvents(this.open(check), { lossless: this.lossless, signal })) {
        switch (event.type) {
          case 'entry': {
            refs?.add(event.entry);
            const item = this.entryItem(event.entry, event.index, refs, true);
            if (item === DEFER) await spill.write(event.index, event.entry);
            else if (item) yield item;
            break;
          }
          case 'value':
            yield* this.documentItems(event.value, {});
            break;
          case 'error':
            if (check.failure) yield utf8Invalid(event.entry);
            else yield this.invalid(event.entry !== undefined ? { entry: event.entry } : {}, 'INVALID_JSON', `invalid JSON: ${event.message}`);
            break;
          case 'bundleEnd':
            break;
        }
      }
      if (check.failure && !utf8Reported) yield utf8Invalid(undefined);
      for await (const { index, entry } of spill.entries(this.parse)) {
        const item = this.entryItem(entry, index, refs, false);
        if (item && item !== DEFER) yield item;
      }
    } finally {
      await spill.remove();
    }
  }

  /** Items of one complete JSON value: a Bundle's entries, or a single resource. */
  private *documentItems(value: unknown, origin: Partial<Origin>): Generator<FhirItem> {
    if (isObject(value) && value.resourceType === 'Bundle' && Array.isArray(value.entry)) {
      let refs: FullUrls | undefined;
      if (this.scan.mayHaveUrnUuid) {
        refs = new FullUrls();
        for (const entry of value.entry) refs.add(entry);
      }
      for (let i = 0; i < value.entry.length; i++) {
        const item = this.entryItem(value.entry[i], i, refs) as FhirItem | undefined;
        if (item) yield item;
      }
      return;
    }
    yield this.resourceItem(value, origin, undefined) as FhirItem;
  }

  /** The item of one Bundle entry; undefined for an entry with neither resource nor DELETE (a response). */
  private entryItem(entry: unknown, index: number, refs: FullUrls | undefined, defer = false): FhirItem | undefined | typeof DEFER {
    const origin = { entry: index };
    if (!isObject(entry)) return this.invalid(origin, 'NOT_A_RESOURCE', 'a Bundle entry must be a JSON object', undefined, this.raw(entry));
    const request = isObject(entry.request) ? entry.request : undefined;
    if (typeof request?.method === 'string' && request.method.toUpperCase() === 'DELETE') return this.deleteItem(request.url, origin, refs, defer);
    if (entry.resource === undefined) return undefined;
    const resource = entry.resource;
    if (isObject(resource) && resource.id === undefined && typeof entry.fullUrl === 'string') {
      const uuid = URN_UUID.exec(entry.fullUrl)?.[1];
      if (uuid) resource.id = uuid;
    }
    return this.resourceItem(resource, origin, refs, defer);
  }

  private deleteItem(url: unknown, origin: Partial<Origin>, refs: FullUrls | undefined, defer: boolean): FhirItem | typeof DEFER {
    if (typeof url !== 'string') return this.invalid(origin, 'UNSUPPORTED_DELETE', 'a DELETE entry needs request.url', 'request.url');
    let target = url;
    if (url.startsWith('urn:uuid:')) {
      const resolved = refs?.resolve(url);
      if (!resolved && defer) return DEFER;
      if (!resolved) return this.invalid(origin, 'UNRESOLVED_REFERENCE', `DELETE ${url} is not the fullUrl of any entry`, 'request.url', url);
      target = resolved;
    }
    if (target.includes('?')) {
      return this.invalid(origin, 'UNSUPPORTED_DELETE', `conditional DELETE ${target} is not supported: name the resource as Type/id`, 'request.url', url);
    }
    const match = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]*)?\/?$/.exec(target);
    if (!match) return this.invalid(origin, 'UNSUPPORTED_DELETE', `DELETE ${target}: request.url must be Type/id`, 'request.url', url);
    return { kind: 'delete', source: this.source, ...origin, resourceType: match[1], id: match[2] };
  }

  /**
   * Checks a parsed value is a resource, and resolves its urn:uuid references when in a Bundle. `text`,
   * the JSON `value` was parsed from, is handed on when no reference can be rewritten in `value`.
   */
  private resourceItem(value: unknown, origin: Partial<Origin>, refs: FullUrls | undefined, defer = false, text?: string): FhirItem | typeof DEFER {
    // Before anything walks it: what comes after the reader may recurse.
    if (exceedsJsonDepth(value)) return this.invalid(origin, 'TOO_DEEP', tooDeepMessage(), undefined, text);
    const problem = resourceProblem(value, { requireId: this.options.requireId !== false, show: (v) => this.raw(v) });
    if (problem) return this.invalid(origin, problem.reason, problem.message, problem.field, this.raw(value));
    const { resourceType } = value as { resourceType: string };
    // A Bundle read as a resource (an ndjson line) keeps its own urn:uuid references as they are.
    const rewrites = resourceType !== 'Bundle' && (refs !== undefined || this.scan.mayHaveUrnUuid);
    if (rewrites) {
      const unresolved: string[] = [];
      resolveReferences(value, refs, '', unresolved);
      // Resolved references are rewritten in place, so the spilled copy only lacks the forward ones.
      if (unresolved.length > 0 && defer) return DEFER;
      if (unresolved.length > 0) {
        return this.invalid(
          origin,
          'UNRESOLVED_REFERENCE',
          `${unresolved.length === 1 ? 'the reference' : `${unresolved.length} references, the first`} at ${unresolved[0]} is a urn:uuid that no entry of ${refs ? 'this Bundle' : 'a Bundle'} declares`,
          unresolved[0],
          this.raw(value),
        );
      }
    }
    const resource = value as unknown as FhirResource & { id: string };
    return { kind: 'resource', source: this.source, ...origin, resource, ...(text !== undefined && !rewrites ? { text } : {}) };
  }

  private invalid(origin: Partial<Origin>, reasonCode: RejectReason, message: string, field?: string, raw?: string): FhirItem {
    return {
      kind: 'invalid',
      source: this.source,
      ...origin,
      reasonCode,
      message,
      ...(field !== undefined ? { field } : {}),
      ...(raw !== undefined ? { raw: raw.length > MAX_RAW ? raw.slice(0, MAX_RAW) : raw } : {}),
    };
  }

  private raw(value: unknown): string {
    if (typeof value === 'string') return value;
    try {
      return (this.lossless ? stringifyLossless(value) : JSON.stringify(value)) ?? String(value);
    } catch {
      return String(value);
    }
  }
}
