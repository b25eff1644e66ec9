/**
 * The CLI sits on top: nothing below src/cli imports from it (domain code gets a Reporter from
 * src/pipeline/reporter.ts and tables from src/io/table.ts instead).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/cli.js';

const SRC = path.join(REPO_ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [full] : [];
  });
}

describe('layering', () => {
  it('no module outside src/cli imports from src/cli', () => {
    const cli = path.join(SRC, 'cli') + path.sep;
    const upward: string[] = [];
    const files = sources(SRC).filter((file) => !file.startsWith(cli));
    expect(files.length).toBeGreaterThan(50);
    for (const file of files) {
      for (const match of readFileSync(file, 'utf8').matchAll(/from '(\.[^']*)'/g)) {
        const target = path.resolve(path.dirname(file), match[1]!);
        if (target.startsWith(cli)) upward.push(`${path.relative(REPO_ROOT, file)} imports ${match[1]}`);
      }
    }
    expect(upward).toEqual([]);
  });
});
