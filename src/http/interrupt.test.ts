/**
 * The run's signal firing during a request, or during the wait before a retry, ends the request with
 * INTERRUPTED (exit 130), not with the signal's plain Error (exit 70, a stack trace).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../errors.js';
import { request } from './client.js';

describe('a request when the run is interrupted', () => {
  let server: http.Server;
  let base: string;
  beforeAll(async () => {
    // /never does not answer; /busy answers 503 with a long Retry-After.
    server = http.createServer((req, res) => {
      if (req.url === '/busy') res.writeHead(503, { 'retry-after': '30' }).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));

  for (const [what, path] of [['while waiting for the answer', '/never'], ['while waiting to retry', '/busy']] as const) {
    it(`ends with INTERRUPTED ${what}`, async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error('interrupted by SIGINT')), 100);
      const failure = await request(`${base}${path}`, { signal: controller.signal, timeoutMs: 10_000, maxRetries: 3 }).catch((err: unknown) => err);
      expect(failure).toMatchObject({ code: 'INTERRUPTED', exitCode: ExitCode.INTERRUPTED, message: expect.stringContaining(`GET ${base}${path}`) });
    });
  }
});
