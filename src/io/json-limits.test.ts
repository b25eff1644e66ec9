import { Readable } from 'node:stream';
import { LosslessNumber } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { parseJsonBody } from '../http/client.js';
import { exceedsJsonDepth, exceedsJsonTextDepth, invalidUtf8Line, MAX_JSON_DEPTH, Utf8Check } from './json-limits.js';

/** Arrays nested `levels` deep around a string. */
const nested = (levels: number): unknown => JSON.parse(`${'['.repeat(levels)}"x"${']'.repeat(levels)}`);

async function through(chunks: Buffer[]): Promise<{ out: Buffer; failure: string | undefined; line: unknown }> {
  const check = new Utf8Check();
  const parts: Buffer[] = [];
  for await (const part of Readable.from(chunks).pipe(check) as AsyncIterable<Buffer>) parts.push(part);
  return { out: Buffer.concat(parts), failure: check.failure?.message, line: check.failure?.context.line };
}

describe('JSON depth', () => {
  it('accepts 256 levels and refuses 257, a value itself being level 1, at any depth without recursing', () => {
    expect(MAX_JSON_DEPTH).toBe(256);
    expect(exceedsJsonDepth(nested(256))).toBe(false);
    expect(exceedsJsonDepth(nested(257))).toBe(true);
    expect(exceedsJsonDepth(nested(1_000_000))).toBe(true);
    expect(exceedsJsonDepth({ a: { b: [1, 'x', null] } }, 3)).toBe(false);
    expect(exceedsJsonDepth({ a: { b: [1, 'x', null] } }, 2)).toBe(true);
    // A lossless decimal is a number, not a level.
    expect(exceedsJsonDepth({ a: new LosslessNumber('1.50') }, 1)).toBe(false);
    expect(exceedsJsonDepth('text')).toBe(false);
  });

  it('counts brackets of text outside strings, escaped quotes included', () => {
    expect(exceedsJsonTextDepth(`${'['.repeat(256)}${']'.repeat(256)}`)).toBe(false);
    expect(exceedsJsonTextDepth(`${'['.repeat(257)}${']'.repeat(257)}`)).toBe(true);
    expect(exceedsJsonTextDepth(`{"a":"${'['.repeat(300)}\\"${'{'.repeat(300)}"}`)).toBe(false);
  });
});

describe('UTF-8', () => {
  it('names the first line holding bytes that are not UTF-8', () => {
    expect(invalidUtf8Line(Buffer.from('a\nbé\nc'))).toBeUndefined();
    expect(invalidUtf8Line(Buffer.from([0x61, 0x0a, 0x62, 0x0a, 0xff, 0x0a]))).toBe(3);
    expect(invalidUtf8Line(Buffer.from([0xc3, 0x28]), 7)).toBe(7);
  });

  it('passes UTF-8 on unchanged, a character cut between chunks included', async () => {
    const text = Buffer.from('{"name":"Ngô Élodie 刘桂荣"}\n');
    const cut = text.indexOf(Buffer.from('刘')) + 1;
    expect(await through([text.subarray(0, cut), text.subarray(cut)])).toEqual({ out: text, failure: undefined, line: undefined });
  });

  it('stops at the start of the first bad line, passing on the lines before it, and names that line', async () => {
    const good = Buffer.from('[\n{"a":1},\n');
    const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"},\n{"a":3}\n]\n')]);
    expect(await through([good.subarray(0, 3), Buffer.concat([good.subarray(3), bad])])).toEqual({ out: good, failure: 'invalid UTF-8 on line 3', line: 3 });
    // A file that ends in the middle of a character.
    expect((await through([Buffer.from('ab\ncd'), Buffer.from([0xe5, 0x88])])).line).toBe(2);
  });
});

describe('HTTP JSON bodies', () => {
  it('refuses a body nested deeper than the readers accept, as the source failing (exit 4), and parses the rest', () => {
    const response = (text: string) => ({ status: 200, headers: new Headers(), text, url: 'https://directory.example/search?token=secret' });
    expect(() => parseJsonBody(response(`{"hits":${'['.repeat(5000)}${']'.repeat(5000)}}`))).toThrow(
      expect.objectContaining({ code: 'SOURCE_FAILED', exitCode: 4, message: expect.stringContaining('answered JSON nested more than 256 levels deep') }),
    );
    expect(parseJsonBody(response('{"hits":[[1]]}'))).toEqual({ hits: [[1]] });
  });
});
