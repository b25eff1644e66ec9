/**
 * What a user names on the command line, turned into the files to read: a file as is, a folder
 * walked recursively (files with a FHIR data extension, hidden ones left out), a glob, or `-` for stdin.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { CarepipeError } from '../errors.js';

export interface InputFile {
  /** How the file is named in messages and rejects: as the user wrote it (folder children joined to it), or `-`. */
  source: string;
  /** Absolute path; undefined for stdin. */
  path?: string;
}

/** Files a folder contributes: JSON, ndjson/jsonl, optionally gzipped. */
export const DATA_FILE = /\.(json|ndjson|jsonl|fhir)(\.gz)?$/i;

/**
 * Expands inputs in the order given; folder contents and glob matches sorted by path. A name that
 * does not exist, or a glob that matches nothing, is a usage error raised before anything is read.
 */
export async function expandInputs(inputs: readonly string[], cwd: string): Promise<InputFile[]> {
  const files: InputFile[] = [];
  const seen = new Set<string>();
  const add = (source: string, absolute: string) => {
    if (seen.has(absolute)) return;
    seen.add(absolute);
    files.push({ source, path: absolute });
  };
  for (const input of inputs) {
    if (input === '-') {
      files.push({ source: '-' });
      continue;
    }
    const absolute = path.resolve(cwd, input);
    const info = await stat(absolute).catch(() => undefined);
    if (info?.isFile()) {
      add(input, absolute);
    } else if (info?.isDirectory()) {
      for (const file of await walk(absolute)) add(path.join(input, path.relative(absolute, file)), file);
    } else if (isDynamicPattern(input)) {
      const matches = (await glob(input, { cwd, absolute: true, onlyFiles: true, dot: false })).sort();
      if (matches.length === 0) throw new CarepipeError('INPUT_NOT_FOUND', `no file matches ${input}`, { file: input });
      for (const match of matches) add(path.isAbsolute(input) ? match : path.relative(cwd, match), match);
    } else {
      throw new CarepipeError('INPUT_NOT_FOUND', `no such file or folder: ${input}`, { file: input });
    }
  }
  return files;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    // A symbolic link counts as what it points to (a drop folder may link to data elsewhere).
    const target = entry.isSymbolicLink() ? await stat(full).catch(() => undefined) : entry;
    if (target?.isDirectory()) out.push(...(await walk(full)));
    else if (target?.isFile() && DATA_FILE.test(entry.name)) out.push(full);
  }
  return out;
}
