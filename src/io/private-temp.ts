/**
 * Temporary folders for patient data (the stdin spool, a Bundle's spilled entries): 0700, in the
 * system temp folder, named `carepipe-<kind>-<pid>-<random>` so that a later run can tell whose they
 * are. They are removed when done, on any exit that runs JavaScript, and, after a kill -9, by the
 * next run (`removeStaleTempDirs`), which removes those whose process is gone.
 */
import { rmSync } from 'node:fs';
import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const NAME = /^carepipe-(?:stdin|spill)-(\d+)-[A-Za-z0-9]{6}$/;

const live = new Set<string>();
let exitHookInstalled = false;

/** A new 0700 folder (mkdtemp's mode) for `kind`; call `removePrivateTempDir` when done. */
export async function makePrivateTempDir(kind: 'stdin' | 'spill'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `carepipe-${kind}-${process.pid}-`));
  live.add(dir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // process.exit (bin/carepipe after main returns, or a crash) skips pending finally blocks.
    process.once('exit', () => {
      for (const left of live) rmSync(left, { recursive: true, force: true });
    });
  }
  return dir;
}

export async function removePrivateTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  live.delete(dir);
}

/** Whether a process with this id runs on this machine (EPERM: it does, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes carepipe temp folders left by processes that no longer run (killed with -9, or the machine
 * stopped). Only this user's folders: another user's are not ours to judge. Returns how many went.
 */
export async function removeStaleTempDirs(): Promise<number> {
  const tmp = os.tmpdir();
  const names = await readdir(tmp).catch(() => [] as string[]);
  const uid = process.getuid?.();
  let removed = 0;
  for (const name of names) {
    const match = NAME.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const full = path.join(tmp, name);
    const info = await lstat(full).catch(() => undefined);
    if (!info?.isDirectory() || (uid !== undefined && info.uid !== uid)) continue;
    await rm(full, { recursive: true, force: true }).catch(() => undefined);
    removed++;
  }
  return removed;
}
