import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { CliIO } from './io.js';
import { Reporter } from './output.js';

/** A stderr that says it is a terminal, of `columns` width (changeable, as a window is). */
function terminal(columns: number | undefined) {
  const stderr = Object.assign(new PassThrough(), { isTTY: true, columns, cursorTo: () => true, moveCursor: () => true, clearLine: () => true });
  let written = '';
  stderr.setEncoding('utf8').on('data', (d: string) => (written += d));
  const io: CliIO = {
    stdout: new PassThrough(),
    stderr,
    stdin: new PassThrough(),
    env: {},
    cwd: '/',
    isTTY: true,
    stdoutIsTTY: false,
    stderrColumns: () => stderr.columns,
  };
  return { io, stderr, written: () => written };
}

describe('Reporter on a terminal', () => {
  it('draws no spinner on a terminal that reports no width, or too narrow a one: plain lines', async () => {
    for (const columns of [0, undefined, 12]) {
      const { io, written } = terminal(columns);
      const reporter = new Reporter(io, { json: false, quiet: false, color: false });
      expect(reporter.interactive).toBe(false);
      await reporter.start('ingest-fhir: reading');
      reporter.progress('ingest-fhir: 1 files', { files: 1 });
      reporter.stop(true);
      await new Promise((r) => setImmediate(r));
      expect(written()).toBe('start (what=ingest-fhir: reading)\nprogress (files=1)\n');
    }
  });

  it('draws the spinner on a wide terminal, and drops it for plain lines when the window shrinks to no width', async () => {
    const { io, stderr, written } = terminal(80);
    const reporter = new Reporter(io, { json: false, quiet: false, color: false });
    expect(reporter.interactive).toBe(true);
    await reporter.start('ingest-fhir: reading');
    await new Promise((r) => setImmediate(r));
    expect(written()).toContain('⠋ ingest-fhir: reading');
    stderr.columns = 0;
    stderr.emit('resize');
    reporter.info('retry', { message: 'page 2 again' });
    reporter.stop(true);
    await new Promise((r) => setImmediate(r));
    expect(written()).toContain('ingest-fhir: reading');
    expect(written().endsWith('page 2 again\n')).toBe(true);
    expect(stderr.listenerCount('resize')).toBe(0);
  });
});
