import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CarepipeError } from '../errors.js';
import { request, withAttempts } from './client.js';
import { RetryableError } from './retry.js';

describe('withAttempts, the one retry wrapper', () => {
  let server: http.Server;
  let base: string;
  /** Requests the server has seen (and left hanging when `hang`). */
  let seen = 0;
  let hang = false;
  beforeAll(async () => {
    server = http.createServer((_req, res) => {
      seen += 1;
      if (!hang) res.writeHead(503, { 'retry-after': '60' }).end('busy');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));

  it('ends a request under way with INTERRUPTED when the run is stopped, not a failure or a retry', async () => {
    hang = true;
    seen = 0;
    const stop = new AbortController();
    const failures: Error[] = [];
    const call = request(`${base}/providers?api_key=s3cret`, { signal: stop.signal, timeoutMs: 30_000, baseDelayMs: 1, onFailure: (e) => failures.push(e) });
    while (seen === 0) await new Promise((r) => setTimeout(r, 5));
    stop.abort(new Error('interrupted by SIGINT'));
    const err = (await call.catch((e: unknown) => e)) as CarepipeError;
    expect(err).toBeInstanceOf(CarepipeError);
    expect(err.code).toBe('INTERRUPTED');
    expect(err.message).toContain(`GET ${base}/providers?api_key=****`);
    expect(err.message).not.toContain('s3cret');
    expect(failures).toEqual([]);
    expect(seen).toBe(1);
  });

  it('ends the wait for Retry-After with INTERRUPTED when the run is stopped', async () => {
    hang = false;
    seen = 0;
    const stop = new AbortController();
    const retries: number[] = [];
    const started = Date.now();
    const call = request(`${base}/providers`, { signal: stop.signal, baseDelayMs: 1, onRetry: (e) => retries.push(e.waitMs) });
    while (retries.length === 0) await new Promise((r) => setTimeout(r, 5));
    stop.abort(new Error('interrupted by SIGINT'));
    await expect(call).rejects.toMatchObject({ code: 'INTERRUPTED' });
    // the 60 s wait was cut short
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(retries).toEqual([60_000]);
    expect(seen).toBe(1);
  });

  it('turns a timed-out attempt into a retry, tells each failure, counts each attempt', async () => {
    const failures: string[] = [];
    let attempts = 0;
    const value = await withAttempts(
      'GET http://p/x',
      { timeoutMs: 50, baseDelayMs: 1, onAttempt: () => void (attempts += 1), onFailure: (e) => failures.push(e.message) },
      async ({ signal, number }) => {
        if (number === 1) await new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
        if (number === 2) throw new RetryableError('HTTP 500', 500);
        return 'ok';
      },
    );
    expect(value).toBe('ok');
    expect(attempts).toBe(3);
    expect(failures).toEqual(['timeout after 50 ms', 'HTTP 500']);
  });

  it('passes a final error of the caller through untouched, after one attempt', async () => {
    class Refused extends Error {}
    let attempts = 0;
    await expect(withAttempts('GET http://p/x', { baseDelayMs: 1, onAttempt: () => void (attempts += 1) }, async () => {
      throw new Refused('token refused');
    })).rejects.toBeInstanceOf(Refused);
    expect(attempts).toBe(1);
  });
});
