import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expandInputs } from './inputs.js';

describe('expandInputs', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-inputs-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('lists every glob match, sorted, once however many links lead to it', async () => {
    const names = Array.from({ length: 30 }, (_, i) => `p${String(i).padStart(2, '0')}.ndjson`);
    mkdirSync(path.join(dir, 'data'));
    for (const name of names) writeFileSync(path.join(dir, 'data', name), '{}\n');
    symlinkSync(path.join(dir, 'data', 'p00.ndjson'), path.join(dir, 'data', 'alias.ndjson'));
    const files = await expandInputs(['data/*.ndjson', 'data'], dir);
    expect(files.map((f) => f.source)).toEqual(['data/alias.ndjson', ...names.slice(1).map((n) => `data/${n}`)]);
  });

  it('walks a folder with a link back to itself once, and warns of the loop', async () => {
    mkdirSync(path.join(dir, 'data', 'nested'), { recursive: true });
    writeFileSync(path.join(dir, 'data', 'a.ndjson'), '{}\n');
    writeFileSync(path.join(dir, 'data', 'nested', 'b.ndjson'), '{}\n');
    symlinkSync('..', path.join(dir, 'data', 'nested', 'up'));
    symlinkSync('self', path.join(dir, 'data', 'self'));
    const warnings: string[] = [];
    const files = await expandInputs(['data'], dir, { onWarning: (message) => warnings.push(message) });
    expect(files.map((f) => f.source)).toEqual(['data/a.ndjson', 'data/nested/b.ndjson']);
    expect(warnings).toEqual([
      `${path.join(dir, 'data', 'nested', 'up')} is a symbolic link loop (back to ${path.join(dir, 'data')}): not followed`,
      `${path.join(dir, 'data', 'self')} is a symbolic link loop: not followed`,
    ]);
  });

  it('refuses a named pipe named directly or through a link a glob matches, saying what it is', async () => {
    execFileSync('mkfifo', [path.join(dir, 'feed.ndjson')]);
    await expect(expandInputs(['feed.ndjson'], dir)).rejects.toThrow('feed.ndjson is a named pipe (FIFO), not a file or folder');
    // The glob itself passes over a pipe; a link to one is matched as a file.
    await expect(expandInputs(['*.ndjson'], dir)).rejects.toThrow('no file matches *.ndjson');
    symlinkSync('feed.ndjson', path.join(dir, 'link.ndjson'));
    await expect(expandInputs(['*.ndjson'], dir)).rejects.toThrow('link.ndjson is a named pipe (FIFO), not a file or folder');
    await expect(expandInputs(['/dev/null'], dir)).rejects.toThrow('/dev/null is a character device');
  });
});
