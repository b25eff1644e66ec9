/**
 * Patient data on disk is for its owner only: folders 0700, files 0600, whatever the umask. Used for
 * the embedded database, whose engine (PGlite's node file system) creates files as 0666 & ~umask.
 */
import { chmod, lstat, readdir } from 'node:fs/promises';
import path from 'node:path';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;
const PRIVATE_UMASK = 0o077;

let holders = 0;
let savedUmask: number | undefined;

/**
 * Sets the process umask to 077 until the returned function is called, so that whatever a library
 * creates meanwhile (database files, WAL segments, lock folders) is private from its first byte.
 * Holds nest: the umask comes back when the last holder lets go. Where the umask cannot be set
 * (a worker thread), nothing changes and `tightenFolder` remains the safeguard.
 */
export function holdPrivateUmask(): () => void {
  try {
    if (holders === 0) savedUmask = process.umask(PRIVATE_UMASK);
    holders++;
  } catch {
    return () => undefined;
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    holders--;
    if (holders === 0 && savedUmask !== undefined) {
      process.umask(savedUmask);
      savedUmask = undefined;
    }
  };
}

/**
 * Makes `dir` and everything in it private: folders 0700, files 0600 (symbolic links are left, as
 * their own mode means nothing). Returns how many entries had to be tightened: 0 when all were private.
 */
export async function tightenFolder(dir: string): Promise<number> {
  let changed = 0;
  const visit = async (entry: string): Promise<void> => {
    const info = await lstat(entry).catch(() => undefined);
    if (!info || info.isSymbolicLink()) return;
    const wanted = info.isDirectory() ? PRIVATE_DIR_MODE : PRIVATE_FILE_MODE;
    if ((info.mode & 0o7777) !== wanted) {
      await chmod(entry, wanted);
      changed++;
    }
    if (info.isDirectory()) {
      for (const name of await readdir(entry).catch(() => [] as string[])) await visit(path.join(entry, name));
    }
  };
  await visit(dir);
  return changed;
}
