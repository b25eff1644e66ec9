import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestOnce } from './client.js';
import { allowedOrigins, checkOrigin, httpPolicy } from './policy.js';

describe('the origin rule', () => {
  it('allows the base URL origin and --allow-origin ones, refuses others naming both origins', () => {
    const policy = httpPolicy('https://fhir.example/r4', { allowOrigins: ['https://files.example:8443/any/path'] });
    expect(() => checkOrigin(policy, 'https://fhir.example/r4/Patient?page=2')).not.toThrow();
    expect(() => checkOrigin(policy, 'https://files.example:8443/export/1.ndjson')).not.toThrow();
    expect(() => checkOrigin(policy, 'http://fhir.example/r4/Patient')).toThrow(
      'refusing to send a request (and its credentials) to http://fhir.example: the configured server is https://fhir.example',
    );
    try {
      checkOrigin(policy, 'https://evil.example/x?token=t0k');
    } catch (err) {
      expect(err).toMatchObject({ code: 'SOURCE_FAILED', exitCode: 4 });
      expect((err as Error).message).toContain('pass --allow-origin https://evil.example');
      expect((err as Error).message).not.toContain('t0k');
    }
  });

  it('pins the first origin when no base URL is known', () => {
    const policy = httpPolicy(undefined);
    checkOrigin(policy, 'http://127.0.0.1:1/a');
    expect(() => checkOrigin(policy, 'http://127.0.0.1:2/a')).toThrow(/configured server is http:\/\/127\.0\.0\.1:1/);
  });

  it('takes allowed origins from flags, else the environment, else the config file, and refuses a non-URL', () => {
    const settings = { env: { CAREPIPE_ALLOW_ORIGIN: 'https://a.example, https://b.example' }, file: { allowOrigins: ['https://c.example'] } };
    expect(allowedOrigins(settings, { allowOrigin: ['https://d.example/x'] })).toEqual(['https://d.example']);
    expect(allowedOrigins(settings, {})).toEqual(['https://a.example', 'https://b.example']);
    expect(allowedOrigins({ env: {}, file: settings.file }, {})).toEqual(['https://c.example']);
    expect(() => allowedOrigins({ env: {}, file: {} }, { allowOrigin: ['files.example'] })).toThrow(/--allow-origin "files.example" is not an http\(s\) URL/);
  });
});

describe('the body size cap', () => {
  let server: http.Server;
  let base: string;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/declared') {
        res.writeHead(200, { 'content-length': String(4096) });
        res.end('x'.repeat(4096));
        return;
      }
      // Chunked, no Content-Length: the cap must count the bytes as they come.
      res.writeHead(200, { 'content-type': 'text/plain' });
      let sent = 0;
      const more = () => {
        while (sent < 64) {
          sent++;
          if (!res.write('y'.repeat(1024))) break;
        }
        if (sent < 64) res.once('drain', more);
        else res.end();
      };
      more();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('refuses an answer whose Content-Length or streamed size passes the cap, and reads one within it', async () => {
    const small = httpPolicy(base, { maxResponseMb: 2 / 1024 });
    await expect(requestOnce(`${base}/declared`, { policy: small })).rejects.toMatchObject({
      code: 'SOURCE_FAILED',
      message: `GET ${base}/declared answered more than 0.00195 MB: stopped reading (raise --max-response-mb if the answer is expected)`,
    });
    await expect(requestOnce(`${base}/chunked`, { policy: httpPolicy(base, { maxResponseMb: 16 / 1024 }) })).rejects.toMatchObject({
      code: 'SOURCE_FAILED',
      message: expect.stringContaining('answered more than 0.0156 MB'),
    });
    const whole = await requestOnce(`${base}/chunked`, { policy: httpPolicy(base, { maxResponseMb: 1 }) });
    expect(whole.text.length).toBe(64 * 1024);
  });
});
