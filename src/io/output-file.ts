/**
 * The one way carepipe writes an output file (a CSV export, a chart): atomically, and private.
 * A new file gets mode 0600, or the mode asked for (`--file-mode 640`); a file replaced keeps its own
 * mode, narrowed by an asked mode but never widened. The mode is set on the temporary file before the
 * rename, so the data is never readable by others, not even for a moment. Whatever the format: the
 * caller writes bytes to a stream.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, type Stats } from 'node:fs';
import { chmod, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { CarepipeError } from '../errors.js';
import { PRIVATE_FILE_MODE } from './private-mode.js';

export interface OutputFileOptions {
  /** Permission bits asked for (`--file-mode`); default 0600 for a new file, the old mode for a replaced one. */
  mode?: number;
  /** The flag that named the file, for messages (default `-o`). */
  flag?: string;
}

/** Parses an octal file mode as typed (`640`, `0640`, `0o640`); undefined when it is not one. */
export function parseFileMode(text: string): number | undefined {
  const digits = text.trim().replace(/^0o/i, '');
  if (!/^[0-7]{3,4}$/.test(digits)) return undefined;
  const mode = Number.parseInt(digits, 8);
  // Permission bits only: setuid, setgid and sticky make no sense on an export.
  return mode <= 0o777 ? mode : undefined;
}

/** The mode a written file ends with (see the module comment). */
export function outputMode(existing: Stats | undefined, asked: number | undefined): number {
  if (existing) return asked === undefined ? existing.mode & 0o777 : existing.mode & 0o777 & asked;
  return asked ?? PRIVATE_FILE_MODE;
}

/** A user's mistake in naming the output (no such folder, no permission) as a usage error, not a bug. */
function outputError(err: unknown, target: string, flag: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const dir = path.dirname(target);
  const reason =
    code === 'ENOENT'
      ? `the folder ${dir} does not exist`
      : code === 'ENOTDIR'
        ? `${dir} is not a folder`
        : code === 'EACCES' || code === 'EPERM'
          ? `no permission to write in ${dir}`
          : code === 'EROFS'
            ? `${dir} is on a read-only file system`
            : code === 'EISDIR'
              ? `${target} is a folder`
              : undefined;
  if (!reason) return err;
  return new CarepipeError('USAGE', `cannot write ${flag} ${target}: ${reason}`, { file: target, field: flag }, { cause: err });
}

/**
 * Writes a file so that no reader ever sees half of it: into a temporary file in the same folder
 * (same file system, so the rename is atomic), flushed to disk, then renamed over `file`. On failure
 * the temporary file is removed and an existing `file` is left as it was.
 */
export async function writeFileAtomically<T>(
  file: string,
  write: (output: Writable) => Promise<T>,
  options: OutputFileOptions = {},
): Promise<T> {
  const target = path.resolve(file);
  const flag = options.flag ?? '-o';
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new CarepipeError('USAGE', `cannot write ${flag} ${target}: it is a folder`, { file: target, field: flag });
  const mode = outputMode(existing, options.mode);
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  // 'wx': never follow or reuse something already at the temporary name; 0600 until the final mode is set.
  const output = createWriteStream(temp, { flags: 'wx', mode: PRIVATE_FILE_MODE, highWaterMark: 1 << 16 });
  const closed = new Promise<void>((resolve) => output.once('close', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      output.once('open', () => resolve());
      output.once('error', reject);
    });
  } catch (err) {
    await closed;
    throw outputError(err, target, flag);
  }
  try {
    const result = await write(output);
    await new Promise<void>((resolve, reject) => {
      output.once('error', reject);
      output.end(() => resolve());
    });
    await closed;
    // chmod, not the open mode: the umask would narrow that, and a replaced file's mode may be wider.
    await chmod(temp, mode);
    // Flushed to disk before the rename, so a crash cannot leave a complete-looking empty file.
    const handle = await open(temp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
    return result;
  } catch (err) {
    if (!output.closed) {
      output.destroy();
      await closed;
    }
    await rm(temp, { force: true });
    throw err;
  }
}

/** Writes `data` to `file` through `writeFileAtomically`: for outputs made whole in memory (a chart). */
export async function writeOutputFile(file: string, data: string | Uint8Array, options: OutputFileOptions = {}): Promise<void> {
  await writeFileAtomically(
    file,
    (output) =>
      new Promise<void>((resolve, reject) => {
        output.write(data, (err) => (err ? reject(err) : resolve()));
      }),
    options,
  );
}
