/**
 * Lines of a byte stream, one at a time with their 1-based number: how ndjson (FHIR Bulk Data) is
 * read, with the memory of the longest line whatever the file's size. `\r\n` endings are accepted.
 * A line that is not valid UTF-8 comes with `invalidUtf8` (its text then holds U+FFFD where the bytes
 * were bad): the caller rejects that line and reads on.
 */
import { isUtf8 } from 'node:buffer';
import type { Readable } from 'node:stream';

export interface Line {
  /** 1-based line number. */
  line: number;
  text: string;
  /** The line's bytes are not valid UTF-8. */
  invalidUtf8?: true;
}

/** Every line of `input`, blank ones included. */
export async function* readLines(input: Readable, options: { signal?: AbortSignal } = {}): AsyncGenerator<Line> {
  // The bytes after the last newline seen: the start of a line the next chunks continue.
  let rest: Buffer[] = [];
  let line = 0;
  try {
    for await (const data of input as AsyncIterable<Buffer | string>) {
      options.signal?.throwIfAborted();
      const chunk = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      const last = chunk.lastIndexOf(0x0a);
      if (last === -1) {
        rest.push(chunk);
        continue;
      }
      const head = chunk.subarray(0, last + 1);
      const block = rest.length > 0 ? Buffer.concat([...rest, head]) : head;
      rest = last + 1 < chunk.length ? [chunk.subarray(last + 1)] : [];
      // Valid UTF-8 (nearly always): one decode for the whole block, split as text.
      if (isUtf8(block)) {
        const text = block.toString('utf8');
        let start = 0;
        let nl: number;
        while ((nl = text.indexOf('\n', start)) !== -1) {
          yield { line: ++line, text: stripCr(text.slice(start, nl)) };
          start = nl + 1;
        }
        continue;
      }
      let start = 0;
      let nl: number;
      while ((nl = block.indexOf(0x0a, start)) !== -1) {
        yield lineOf(++line, block.subarray(start, nl));
        start = nl + 1;
      }
    }
    if (rest.length > 0) yield lineOf(++line, Buffer.concat(rest));
  } finally {
    input.destroy();
  }
}

function lineOf(line: number, bytes: Buffer): Line {
  const text = stripCr(bytes.toString('utf8'));
  return isUtf8(bytes) ? { line, text } : { line, text, invalidUtf8: true };
}

/** Lines of a text already in memory, same numbering as readLines. */
export function* splitLines(text: string): Generator<Line> {
  let start = 0;
  let line = 0;
  let nl: number;
  while ((nl = text.indexOf('\n', start)) !== -1) {
    yield { line: ++line, text: stripCr(text.slice(start, nl)) };
    start = nl + 1;
  }
  if (start < text.length) yield { line: ++line, text: stripCr(text.slice(start)) };
}

function stripCr(s: string): string {
  return s.endsWith('\r') ? s.slice(0, -1) : s;
}
