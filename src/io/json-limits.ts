/**
 * What every reader of JSON input checks before a value goes further, so that no input can wedge a
 * run: nesting depth (reject TOO_DEEP) and UTF-8 validity (reject INVALID_UTF8). The file, Bulk Data,
 * search and appointment readers all use these, so the limits are the same everywhere.
 */
import { isUtf8 } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import { isLosslessNumber } from 'lossless-json';
import { CarepipeError } from '../errors.js';

/**
 * The deepest nesting of objects and arrays accepted, a resource itself counting as level 1. Real FHIR
 * resources stay well under 30; the limit keeps every recursive walk after the readers (mapping, views,
 * hashing, history) far from the stack's end.
 */
export const MAX_JSON_DEPTH = 256;

/**
 * Whether `value` nests objects and arrays deeper than `limit` levels. Walks with a stack of its own, so
 * a value of any depth is safe to check (JSON.parse itself does not recurse).
 */
export function exceedsJsonDepth(value: unknown, limit: number = MAX_JSON_DEPTH): boolean {
  if (value === null || typeof value !== 'object') return false;
  const nodes: object[] = [value];
  const depths: number[] = [1];
  while (nodes.length > 0) {
    const node = nodes.pop()!;
    const depth = depths.pop()!;
    if (depth > limit) return true;
    if (Array.isArray(node)) {
      for (const child of node) {
        if (child !== null && typeof child === 'object' && !isLosslessNumber(child)) {
          nodes.push(child);
          depths.push(depth + 1);
        }
      }
    } else {
      for (const key in node) {
        const child = (node as Record<string, unknown>)[key];
        if (child !== null && typeof child === 'object' && !isLosslessNumber(child)) {
          nodes.push(child);
          depths.push(depth + 1);
        }
      }
    }
  }
  return false;
}

/**
 * Whether JSON text nests deeper than `limit`, from its brackets outside strings: for parsers that
 * recurse (lossless-json), which must not be given such text.
 */
export function exceedsJsonTextDepth(text: string, limit: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** The message of a TOO_DEEP reject. */
export function tooDeepMessage(): string {
  return `JSON nested more than ${MAX_JSON_DEPTH} levels deep`;
}

/**
 * The 1-based line of the first invalid UTF-8 sequence in `bytes` (numbering from `firstLine`), or
 * undefined when they are valid UTF-8. Multi-byte characters never hold a newline byte, so the lines can
 * be checked one by one.
 */
export function invalidUtf8Line(bytes: Uint8Array, firstLine = 1): number | undefined {
  if (isUtf8(bytes)) return undefined;
  let line = firstLine;
  let start = 0;
  for (;;) {
    const nl = bytes.indexOf(0x0a, start);
    if (nl === -1 || !isUtf8(bytes.subarray(start, nl))) return line;
    line++;
    start = nl + 1;
  }
}

/** The error of a UTF-8 check: a record-level problem, whose reason code is INVALID_UTF8. */
export function invalidUtf8Error(line: number): CarepipeError {
  return new CarepipeError('RECORD_INVALID', `invalid UTF-8 on line ${line}`, { line, reasonCode: 'INVALID_UTF8' });
}

/** Length of `bytes` without a multi-byte character cut off at its end (the next chunk completes it). */
function completeLength(bytes: Uint8Array): number {
  for (let i = bytes.length - 1; i >= 0 && i >= bytes.length - 4; i--) {
    const b = bytes[i]!;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back for the lead byte
    const size = b < 0x80 ? 1 : (b & 0xe0) === 0xc0 ? 2 : (b & 0xf0) === 0xe0 ? 3 : (b & 0xf8) === 0xf0 ? 4 : 1;
    return i + size > bytes.length ? i : bytes.length;
  }
  return bytes.length;
}

/**
 * A byte stream passed on unchanged while it is UTF-8. At the first invalid sequence it passes on the
 * lines before it, ends there, and keeps an INVALID_UTF8 error naming the line in `failure`: the
 * parser after it reads every record before the bad line (then sees the text end early), and the
 * reader reports `failure` in place of the parser's complaint. It never decodes into U+FFFD.
 */
export class Utf8Check extends Transform {
  failure: CarepipeError | undefined;
  private carry: Buffer = Buffer.alloc(0);
  private line = 1;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.failure) return done();
    const bytes = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    const cut = completeLength(bytes);
    const whole = bytes.subarray(0, cut);
    const bad = invalidUtf8Line(whole, this.line);
    if (bad !== undefined) {
      let start = 0;
      for (let line = this.line; line < bad; line++) start = whole.indexOf(0x0a, start) + 1;
      this.failure = invalidUtf8Error(bad);
      this.carry = Buffer.alloc(0);
      return done(null, whole.subarray(0, start));
    }
    for (let nl = whole.indexOf(0x0a); nl !== -1; nl = whole.indexOf(0x0a, nl + 1)) this.line++;
    this.carry = Buffer.from(bytes.subarray(cut));
    done(null, whole);
  }

  override _flush(done: TransformCallback): void {
    // A multi-byte character the file ends in the middle of.
    if (!this.failure && this.carry.length > 0) this.failure = invalidUtf8Error(this.line);
    done();
  }
}
