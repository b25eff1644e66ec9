/**
 * Lines of a text stream, one at a time with their 1-based number: how ndjson (FHIR Bulk Data) is
 * read, with the memory of the longest line whatever the file's size. `\r\n` endings are accepted.
 */
import type { Readable } from 'node:stream';

export interface Line {
  /** 1-based line number. */
  line: number;
  text: string;
}

/** Every line of `input` (decoded as UTF-8), blank ones included. */
export async function* readLines(input: Readable, options: { signal?: AbortSignal } = {}): AsyncGenerator<Line> {
  input.setEncoding('utf8');
  let rest = '';
  let line = 0;
  try {
    for await (const chunk of input as AsyncIterable<string>) {
      options.signal?.throwIfAborted();
      let start = 0;
      let nl = chunk.indexOf('\n');
      if (nl === -1) {
        rest += chunk;
        continue;
      }
      // The first line of this chunk continues what the previous chunks left.
      yield { line: ++line, text: stripCr(rest + chunk.slice(0, nl)) };
      rest = '';
      start = nl + 1;
      while ((nl = chunk.indexOf('\n', start)) !== -1) {
        yield { line: ++line, text: stripCr(chunk.slice(start, nl)) };
        start = nl + 1;
      }
      rest = chunk.slice(start);
    }
    if (rest.length > 0) yield { line: ++line, text: stripCr(rest) };
  } finally {
    input.destroy();
  }
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
