import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CarepipeError } from '../errors.js';
import { parseFileMode, writeFileAtomically, writeOutputFile } from './output-file.js';

const mode = (file: string) => statSync(file).mode & 0o777;

describe('parseFileMode', () => {
  it('reads octal permission bits as typed, and nothing else', () => {
    expect(['600', '640', '0640', '0o644', '777'].map(parseFileMode)).toEqual([0o600, 0o640, 0o640, 0o644, 0o777]);
    expect(['', '64', '680', 'rw-r-----', '4755', '1777', '-600'].map(parseFileMode)).toEqual(Array(7).fill(undefined));
  });
});

describe('output file modes', () => {
  let dir: string;
  let umask: number;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-output-'));
    // The widest usual umask: what a file gets must not depend on it.
    umask = process.umask(0o022);
  });
  afterEach(() => {
    process.umask(umask);
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a new file 0600, or with the mode asked for, whatever the umask', async () => {
    await writeOutputFile(path.join(dir, 'a.csv'), 'a');
    expect(mode(path.join(dir, 'a.csv'))).toBe(0o600);
    process.umask(0o077);
    await writeOutputFile(path.join(dir, 'b.csv'), 'b', { mode: 0o640 });
    expect(mode(path.join(dir, 'b.csv'))).toBe(0o640);
  });

  it('keeps the mode of a replaced file, narrowed by an asked mode, never widened', async () => {
    const file = path.join(dir, 'out.csv');
    writeFileSync(file, 'old');
    chmodSync(file, 0o600);
    await writeOutputFile(file, 'new');
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(mode(file)).toBe(0o600);
    await writeOutputFile(file, 'newer', { mode: 0o644 });
    expect(mode(file)).toBe(0o600);
    chmodSync(file, 0o664);
    await writeOutputFile(file, 'again');
    expect(mode(file)).toBe(0o664);
    await writeOutputFile(file, 'last', { mode: 0o640 });
    expect(mode(file)).toBe(0o640);
  });

  it('names the missing folder as a usage error, and a folder as the target', async () => {
    const missing = path.join(dir, 'no', 'such', 'x.csv');
    const error = await writeFileAtomically(missing, async () => undefined).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CarepipeError);
    expect((error as CarepipeError).exitCode).toBe(2);
    expect((error as CarepipeError).message).toBe(`cannot write -o ${missing}: the folder ${path.dirname(missing)} does not exist`);
    await expect(writeOutputFile(dir, 'x', { flag: '--chart' })).rejects.toThrow(`cannot write --chart ${dir}: it is a folder`);
  });
});
