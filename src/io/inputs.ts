/**
 * What a user names on the command line, turned into the files to read: a file as is, a folder
 * walked recursively (files with a FHIR data extension, hidden ones left out), a glob, or `-` for stdin.
 */
import type { Stats } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
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

export interface ExpandOptions {
  /** Told of what was passed over without failing the run: a symbolic link loop, for one. */
  onWarning?: (message: string, context: { file: string }) => void;
}

/**
 * Expands inputs in the order given; folder contents and glob matches sorted by path. A name that
 * does not exist, or a glob that matches nothing, is a usage error raised before anything is read;
 * so is a named pipe or a device (only `-` reads a stream). Each file is listed once, however many
 * paths or symbolic links lead to it, and a folder reached again through a link is not walked again.
 */
export async function expandInputs(inputs: readonly string[], cwd: string, options: ExpandOptions = {}): Promise<InputFile[]> {
  const files: InputFile[] = [];
  const seen = new Set<string>();
  const add = async (source: string, absolute: string) => {
    const real = await realpath(absolute).catch(() => absolute);
    if (seen.has(real)) return;
    seen.add(real);
    files.push({ source, path: absolute });
  };
  const walked = new Set<string>();
  for (const input of inputs) {
    if (input === '-') {
      files.push({ source: '-' });
      continue;
    }
    const absolute = path.resolve(cwd, input);
    const info = await stat(absolute).catch(() => undefined);
    if (info?.isFile()) {
      await add(input, absolute);
    } else if (info?.isDirectory()) {
      for (const file of await walk(absolute, walked, [], options)) await add(path.join(input, path.relative(absolute, file)), file);
    } else if (info) {
      throw notAFile(input, info);
    } else if (isDynamicPattern(input)) {
      const matches = (await glob(input, { cwd, absolute: true, onlyFiles: true, dot: false })).sort();
      if (matches.length === 0) throw new CarepipeError('INPUT_NOT_FOUND', `no file matches ${input}`, { file: input });
      for (const match of matches) {
        const shown = path.isAbsolute(input) ? match : path.relative(cwd, match);
        const found = await stat(match).catch(() => undefined);
        if (found && !found.isFile()) throw notAFile(shown, found);
        await add(shown, match);
      }
    } else {
      throw new CarepipeError('INPUT_NOT_FOUND', `no such file or folder: ${input}`, { file: input });
    }
  }
  return files;
}

/** A named pipe or a device: reading one would block or never end, so it is refused by name. */
function notAFile(input: string, info: Stats): CarepipeError {
  return new CarepipeError('USAGE', `${input} is ${specialKind(info)}, not a file or folder: give files, folders, globs, or - with the data on stdin`, {
    file: input,
  });
}

/** What a path that is neither file nor folder is, in words a user knows. */
function specialKind(info: Stats): string {
  if (info.isFIFO()) return 'a named pipe (FIFO)';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  if (info.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * The data files under `dir`. `walked` holds the real path of every folder walked so far: a symbolic
 * link back to a folder being walked (a loop) or to one already walked is passed over, so a loop
 * cannot make the walk run away and no file is listed twice. `ancestors` tells a loop from a repeat.
 */
async function walk(dir: string, walked: Set<string>, ancestors: string[], options: ExpandOptions): Promise<string[]> {
  const real = await realpath(dir);
  if (walked.has(real)) {
    // The same folder named twice on the command line is no news; a link back into the walk is.
    if (ancestors.includes(real)) options.onWarning?.(`${dir} is a symbolic link loop (back to ${real}): not followed`, { file: dir });
    else if (ancestors.length > 0) options.onWarning?.(`${dir} leads to ${real}, already read: not read again`, { file: dir });
    return [];
  }
  walked.add(real);
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    // A symbolic link counts as what it points to (a drop folder may link to data elsewhere).
    const target = entry.isSymbolicLink()
      ? await stat(full).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ELOOP') options.onWarning?.(`${full} is a symbolic link loop: not followed`, { file: full });
          return undefined;
        })
      : entry;
    if (target?.isDirectory()) out.push(...(await walk(full, walked, [...ancestors, real], options)));
    else if (target?.isFile() && DATA_FILE.test(entry.name)) out.push(full);
  }
  return out;
}
