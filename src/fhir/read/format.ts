/**
 * The file formats the FHIR file reader tells apart by content, not by name: gzip or not (the magic
 * bytes), ndjson or a JSON document (the first lines), a byte-order mark; the one pass over the stored
 * bytes that fingerprints a file (size, SHA-256) and says whether a Bundle in it may hold `urn:uuid:`
 * references; when the lossless parse is needed; and the cap on what stdin may spool to disk.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { CarepipeError } from '../../errors.js';
import { splitLines } from '../../io/ndjson.js';

/** What identifies the content of a file: a file seen again with the same fingerprint is unchanged. */
export interface FileFingerprint {
  /** Absolute path, or `-` for stdin. */
  path: string;
  size: number;
  /** Hex SHA-256 of the bytes as stored (compressed ones for a .gz). */
  sha256: string;
}

const URN_UUID_BYTES = Buffer.from('urn:uuid:');
/** A JSON number token (or text in a string that looks like one, which only costs time). */
const NUMBER_TOKEN = /[:,[]\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?=\s*[,\]}])/g;

/**
 * Whether the text holds a number whose JavaScript form differs from its digits (`1.50`, `1e3`, `-0`,
 * 17 digits): only such text needs the lossless parse, several times slower than JSON.parse.
 */
export function mayLoseDigits(text: string): boolean {
  NUMBER_TOKEN.lastIndex = 0;
  for (let m = NUMBER_TOKEN.exec(text); m; m = NUMBER_TOKEN.exec(text)) {
    if (String(Number(m[1])) !== m[1]) return true;
  }
  return false;
}

/** Passes bytes through until more than `cap` have come, then fails: stdin is spooled to disk, whose room is finite. */
export function byteCap(cap: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > cap) {
        const mb = Number((cap / 1024 / 1024).toFixed(6));
        callback(
          new CarepipeError('SOURCE_FAILED', `stdin holds more than ${mb} MB (--max-response-mb ${mb}): raise the limit, or give the data as files`, {
            file: '-',
          }),
        );
        return;
      }
      callback(null, chunk);
    },
  });
}

export interface Scan extends FileFingerprint {
  gzip: boolean;
  /** The bytes contain `urn:uuid:` (always true for gzip, whose bytes say nothing). */
  mayHaveUrnUuid: boolean;
}

/** One streaming pass over the stored bytes: size, SHA-256, gzip magic, whether `urn:uuid:` occurs. */
export async function scanFile(file: string, shownPath: string): Promise<Scan> {
  const hash = createHash('sha256');
  let size = 0;
  let head: Buffer | undefined;
  let urn = false;
  let tail = Buffer.alloc(0);
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
    head ??= chunk.subarray(0, 2);
    if (!urn) {
      urn = chunk.includes(URN_UUID_BYTES) || Buffer.concat([tail, chunk.subarray(0, URN_UUID_BYTES.length)]).includes(URN_UUID_BYTES);
      tail = Buffer.from(chunk.subarray(Math.max(0, chunk.length - URN_UUID_BYTES.length)));
    }
  }
  const gzip = head !== undefined && head.length === 2 && head[0] === 0x1f && head[1] === 0x8b;
  return { path: shownPath, size, sha256: hash.digest('hex'), gzip, mayHaveUrnUuid: urn || gzip };
}

/** Tells ndjson from a JSON document by the first lines, falling back on the file name. */
export function classify(text: string, complete: boolean, file: string): 'ndjson' | 'json' {
  const lines: string[] = [];
  for (const { text: line } of splitLines(stripBom(text))) {
    if (line.trim() === '') continue;
    lines.push(line);
    if (lines.length === 2) break;
  }
  const namedNdjson = /\.(ndjson|jsonl)(\.gz)?$/i.test(file);
  if (lines.length < 2) return complete || !namedNdjson ? 'json' : 'ndjson';
  if (isJsonObjectText(lines[0])) return 'ndjson';
  // A bad first line is still ndjson when the next line is a whole resource, unless the first line
  // opens a document (`{"resourceType":"Bundle","entry":[` with one entry per line after it).
  if (!/[[{,:]$/.test(lines[0].trim()) && isJsonObjectText(lines[1], true)) return 'ndjson';
  return namedNdjson ? 'ndjson' : 'json';
}

export function isJsonObjectText(line: string, resource = false): boolean {
  const t = line.trim();
  if (!t.startsWith('{') || !t.endsWith('}')) return false;
  try {
    const value = JSON.parse(t) as { resourceType?: unknown };
    return !resource || typeof value.resourceType === 'string';
  } catch {
    return false;
  }
}

export function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
