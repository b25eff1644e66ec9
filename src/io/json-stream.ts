/**
 * Streaming JSON documents whose size has no bound: a Bundle's `entry` array arrives element by
 * element, so a 500 MB Bundle is read with the memory of one entry. Built on stream-json's tokenizer
 * with a small assembler of our own (faster than its Assembler + Pick chain, and able to keep decimals
 * as LosslessNumber). Several top-level values one after another (concatenated JSON) are read too.
 */
import type { Readable } from 'node:stream';
import { LosslessNumber } from 'lossless-json';
import Parser from 'stream-json/Parser.js';

export type JsonEvent =
  /** One element of a top-level Bundle's `entry` array; `index` counts from 0 per Bundle. */
  | { type: 'entry'; index: number; entry: unknown; bundle: number }
  /** A complete top-level value other than a streamed Bundle (a single resource, or anything else). */
  | { type: 'value'; value: unknown; bundle: number }
  /** The end of a streamed Bundle, with its other elements (type, meta, …) but no `entry`. */
  | { type: 'bundleEnd'; bundle: Record<string, unknown>; entries: number; index: number }
  /** The text stops being JSON here; `entry` is the index of the entry being read, when inside one. */
  | { type: 'error'; message: string; entry?: number; bundle: number };

export interface JsonStreamOptions {
  /** Keep numbers as LosslessNumber (decimals keep their digits: `1.50`). */
  lossless?: boolean;
  signal?: AbortSignal;
}

interface Token {
  name: string;
  value?: string;
}

const HIGH_WATER = 256;

/**
 * Events from a JSON text stream (already decompressed). Back-pressure by pausing the tokenizer while
 * the consumer has not taken the events already assembled.
 */
export async function* jsonEvents(input: Readable, options: JsonStreamOptions = {}): AsyncGenerator<JsonEvent> {
  const parser = new Parser({ packValues: true, streamValues: false, jsonStreaming: true });
  const queue: JsonEvent[] = [];
  let finished = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  // Assembler state.
  const stack: unknown[] = [];
  const keys: (string | undefined)[] = [];
  let key: string | undefined;
  let entryArray: unknown[] | undefined;
  let entryIndex = 0;
  let topIndex = 0;
  const lossless = options.lossless === true;

  const push = (event: JsonEvent) => {
    queue.push(event);
    if (queue.length >= HIGH_WATER) parser.pause();
    notify();
  };

  const addValue = (value: unknown) => {
    const depth = stack.length;
    if (depth === 0) {
      const top = value as Record<string, unknown> | null;
      if (entryArray && top && typeof top === 'object') {
        push({ type: 'bundleEnd', bundle: top, entries: entryIndex, index: topIndex });
      } else {
        push({ type: 'value', value, bundle: topIndex });
      }
      entryArray = undefined;
      entryIndex = 0;
      topIndex++;
      return;
    }
    const parent = stack[depth - 1];
    if (parent === entryArray) {
      push({ type: 'entry', index: entryIndex++, entry: value, bundle: topIndex });
    } else if (Array.isArray(parent)) {
      parent.push(value);
    } else if (key === '__proto__') {
      // As JSON.parse does: an own member, not the object's prototype.
      Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
    } else {
      (parent as Record<string, unknown>)[key as string] = value;
    }
  };

  parser.on('data', (token: Token) => {
    switch (token.name) {
      case 'startObject':
        keys.push(key);
        stack.push({});
        key = undefined;
        break;
      case 'endObject': {
        const obj = stack.pop();
        key = keys.pop();
        addValue(obj);
        break;
      }
      case 'startArray': {
        const arr: unknown[] = [];
        // The entries of a top-level Bundle are streamed rather than kept; a Bundle whose
        // resourceType comes after its entries (unusual) is assembled whole and split afterwards.
        if (stack.length === 1 && key === 'entry' && (stack[0] as Record<string, unknown>).resourceType === 'Bundle') {
          entryArray = arr;
        }
        keys.push(key);
        stack.push(arr);
        key = undefined;
        break;
      }
      case 'endArray': {
        const arr = stack.pop();
        key = keys.pop();
        if (arr !== entryArray) addValue(arr);
        break;
      }
      case 'keyValue':
        key = token.value;
        break;
      case 'stringValue':
        addValue(token.value);
        break;
      case 'numberValue':
        addValue(lossless ? new LosslessNumber(token.value as string) : Number(token.value));
        break;
      case 'nullValue':
        addValue(null);
        break;
      case 'trueValue':
        addValue(true);
        break;
      case 'falseValue':
        addValue(false);
        break;
    }
  });
  parser.on('end', () => {
    if (stack.length > 0) {
      push({ type: 'error', message: 'the JSON text ends in the middle of a value (truncated?)', entry: entryArray ? entryIndex : undefined, bundle: topIndex });
    }
    finished = true;
    notify();
  });
  parser.on('error', (err: Error) => {
    push({ type: 'error', message: err.message, entry: entryArray ? entryIndex : undefined, bundle: topIndex });
    finished = true;
    input.unpipe(parser);
    notify();
  });
  input.on('error', (err: Error) => {
    push({ type: 'error', message: err.message, entry: entryArray ? entryIndex : undefined, bundle: topIndex });
    finished = true;
    notify();
  });
  input.pipe(parser);

  try {
    let head = 0;
    for (;;) {
      if (head < queue.length) {
        const event = queue[head++];
        if (head === queue.length) {
          queue.length = 0;
          head = 0;
          if (!finished) parser.resume();
        }
        yield event;
        continue;
      }
      if (finished) break;
      options.signal?.throwIfAborted();
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    input.unpipe(parser);
    parser.destroy();
    input.destroy();
  }
}
