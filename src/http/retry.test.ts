import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRetryAfter, RetryableError, withRetry, type RetryEvent } from './retry.js';
import { parseJsonBody, request } from './client.js';

describe('withRetry', () => {
  it('waits what Retry-After says, then succeeds, reporting each failed attempt', async () => {
    const waits: number[] = [];
    const events: RetryEvent[] = [];
    let calls = 0;
    const value = await withRetry(
      async () => {
        calls += 1;
        if (calls === 1) throw new RetryableError('HTTP 429', 429, 7_000);
        if (calls === 2) throw new RetryableError('HTTP 503', 503);
        return 'ok';
      },
      { what: 'GET /x', maxRetries: 3, baseDelayMs: 100, sleep: async (ms) => void waits.push(ms), onRetry: (e) => events.push(e) },
    );
    expect(value).toBe('ok');
    expect(waits[0]).toBe(7_000);
    expect(waits[1]).toBeGreaterThanOrEqual(10);
    expect(waits[1]).toBeLessThanOrEqual(200);
    expect(events.map((e) => [e.attempt, e.status])).toEqual([
      [1, 429],
      [2, 503],
    ]);
  });

  it('gives up after maxRetries + 1 attempts with RETRIES_EXHAUSTED naming the call', async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls += 1;
          throw new RetryableError('HTTP 500', 500);
        },
        { what: 'GET http://p/providers', maxRetries: 2, sleep: async () => undefined },
      ),
    ).rejects.toMatchObject({ code: 'RETRIES_EXHAUSTED', message: 'GET http://p/providers failed after 3 attempts: HTTP 500' });
    expect(calls).toBe(3);
  });

  it('does not retry a final error', async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls += 1;
          throw new Error('bad request');
        },
        { what: 'x', sleep: async () => undefined },
      ),
    ).rejects.toThrow('bad request');
    expect(calls).toBe(1);
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe('request over HTTP', () => {
  let server: http.Server;
  let base: string;
  const script: ((res: http.ServerResponse) => void)[] = [];
  beforeAll(async () => {
    server = http.createServer((_req, res) => (script.shift() ?? ((r) => r.end('{}')))(res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('retries 500, a cut JSON body and a stall, then returns the parsed body', async () => {
    script.push(
      (res) => res.writeHead(500).end('boom'),
      (res) => res.writeHead(200).end('{"providers": [{"na'),
      (res) => void setTimeout(() => res.end('{}'), 4_000),
      (res) => res.writeHead(200).end('{"ok": true}'),
    );
    const reasons: string[] = [];
    const body = await request(`${base}/providers`, {
      // not shorter: a first request on a loaded machine can take a few hundred ms
      timeoutMs: 1_500,
      baseDelayMs: 1,
      maxRetries: 5,
      parse: parseJsonBody,
      onRetry: (e) => reasons.push(e.reason),
    });
    expect(body).toEqual({ ok: true });
    expect(reasons).toEqual(['HTTP 500', 'malformed JSON body', 'timeout after 1500 ms']);
  });

  it('fails at once on 404 with the OperationOutcome text', async () => {
    script.push((res) =>
      res.writeHead(404).end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ diagnostics: 'Unknown resource type Foo' }] })),
    );
    await expect(request(`${base}/Foo`, { baseDelayMs: 1 })).rejects.toMatchObject({
      code: 'SOURCE_FAILED',
      message: expect.stringContaining('HTTP 404: Unknown resource type Foo'),
    });
  });
});
