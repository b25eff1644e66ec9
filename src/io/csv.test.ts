import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { guardFormula, writeCsv, writeFileAtomically, type Cell } from './csv.js';

async function* from(rows: Cell[][]): AsyncGenerator<Cell[][]> {
  // two batches, the second possibly empty
  yield rows.slice(0, 1);
  yield rows.slice(1);
}

async function csvOf(rows: Cell[][], header: string[], options = {}): Promise<string> {
  const out = new PassThrough();
  let text = '';
  out.setEncoding('utf8').on('data', (d: string) => (text += d));
  await writeCsv(from(rows), header, out, options);
  return text;
}

describe('writeCsv', () => {
  it('quotes per RFC 4180, a lone CR or LF included, and tells NULL (empty) from an empty string ("")', async () => {
    expect(await csvOf([['a,b', 'say "hi"', 'line\nbreak', 'cr\rhere', '', null, 'plain']], ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7'])).toBe(
      'c1,c2,c3,c4,c5,c6,c7\r\n"a,b","say ""hi""","line\nbreak","cr\rhere","",,plain\r\n',
    );
  });

  it('writes the header when there are no rows', async () => {
    expect(await csvOf([], ['a', 'b'])).toBe('a,b\r\n');
  });

  it('takes a delimiter, LF records and a BOM', async () => {
    expect(await csvOf([['x;y', 'z']], ['a', 'b'], { delimiter: ';', eol: '\n', bom: true })).toBe('\ufeffa;b\n"x;y";z\n');
  });
});

describe('guardFormula', () => {
  it('prefixes a quote to cells a spreadsheet would run as formulas', () => {
    expect(['=1+2', '+1', '-1', '@SUM(A1)', '\tx', '\rx'].map(guardFormula)).toEqual(["'=1+2", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx"]);
    expect(['', 'abc', '1-2', ' =x'].map(guardFormula)).toEqual(['', 'abc', '1-2', ' =x']);
  });
});

describe('writeFileAtomically', () => {
  it('writes under a temporary name in the same folder; the target appears only when complete', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-atomic-'));
    const target = path.join(dir, 'out.csv');
    await writeFileAtomically(target, async (out) => {
      out.write('half');
      await new Promise((r) => setTimeout(r, 10));
      expect(existsSync(target)).toBe(false);
      const temps = readdirSync(dir);
      expect(temps).toHaveLength(1);
      expect(temps[0]).toMatch(/^\.out\.csv\.\d+\.[0-9a-f]+\.tmp$/);
      out.write(' and the rest');
    });
    expect(readFileSync(target, 'utf8')).toBe('half and the rest');
    expect(readdirSync(dir)).toEqual(['out.csv']);
  });

  it('on failure removes the temporary file and leaves the old file intact', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-atomic-'));
    const target = path.join(dir, 'out.csv');
    writeFileSync(target, 'old');
    await expect(
      writeFileAtomically(target, async (out) => {
        out.write('partial rows');
        throw new Error('the database went away');
      }),
    ).rejects.toThrow('the database went away');
    expect(readFileSync(target, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['out.csv']);
  });
});
