/**
 * No planted secret comes out, through the built binary: a password in a URL's userinfo and an
 * `api_key=` query parameter, given to every command that takes a URL or a `--where` (ingest-fhir
 * --server, import-clinicians, directory-lookup, export-csv with a bad --where value and one without an
 * operator, config --json, runs). Each run fails the way it should (retries against a server that
 * answers 503, exit 4; exit 2 for the --where mistakes); stdout, stderr and every column of the `runs`
 * table are then searched for either secret.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from './helpers/cli.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';

const PASSWORD = 'pw-Planted-51x';
const API_KEY = 'ak-Planted-51x';

for (const backend of BACKENDS) {
  describe(`secrets planted in URLs and --where on ${backend}`, () => {
    const ctx = useTestDatabase(backend);
    let server: Server;
    let port: number;
    beforeEach(async () => {
      // Always busy: every command retries, logs the retry, then fails with its error text.
      server = createServer((_req, res) => {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '0' });
        res.end('{"message":"busy"}');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
    });
    afterEach(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    it('keeps the password and the api_key out of stdout, stderr and the runs table for every command', async () => {
      await ctx.release();
      const secretUrl = (user: string, suffix = '') => `http://${user}:${PASSWORD}@127.0.0.1:${port}${suffix}?api_key=${API_KEY}`;
      const configFile = path.join(ctx.test.tmp, 'carepipe.config.json');
      writeFileSync(
        configFile,
        JSON.stringify({ directory: { baseUrl: secretUrl('dir') }, backends: { noteworth: { baseUrl: secretUrl('nw') } }, allowOrigins: ['https://files.example'] }),
      );
      const runs: [string, CliResult, number][] = [];
      const run = async (name: string, args: string[], expected: number) => {
        const result = await runCli([...args, ...ctx.test.args]);
        runs.push([name, result, expected]);
        return result;
      };

      await run('ingest-fhir --server', ['ingest-fhir', '--server', secretUrl('etl', '/fhir'), '--type', 'Patient', '--max-retries', '1', '--json'], 4);
      await run('ingest-fhir --server (text)', ['ingest-fhir', '--server', secretUrl('etl', '/fhir'), '--type', 'Patient', '--max-retries', '1'], 4);
      await run('import-clinicians', ['import-clinicians', 'noteworth', '--base-url', secretUrl('nw'), '--max-retries', '1', '--retry-delay', '10'], 4);
      await run('import-clinicians --json', ['import-clinicians', 'noteworth', '--config', configFile, '--max-retries', '1', '--retry-delay', '10', '--json'], 4);
      await run('directory-lookup search', ['directory-lookup', 'search', 'Dupont', '--base-url', secretUrl('dir'), '--retries', '1', '--json'], 4);
      await run('directory-lookup import', ['directory-lookup', 'import', 'Dupont', '--all', '--config', configFile, '--retries', '1'], 4);
      await run('export-csv --where bad value', ['export-csv', 'rejects', '--where', `line=${secretUrl('u')}`], 2);
      await run('export-csv --where bad value --json', ['export-csv', 'rejects', '-o', path.join(ctx.test.tmp, 'r.csv'), '--where', `line=${PASSWORD}`, '--json'], 2);
      await run('export-csv --where without operator', ['export-csv', 'rejects', '--where', `${PASSWORD} ${API_KEY}`], 2);
      await run('config --json', ['config', '--config', configFile, '--json'], 0);
      await run('config', ['config', '--config', configFile], 0);
      await run('runs', ['runs', '--limit', '50'], 0);
      await run('runs --json', ['runs', '--limit', '50', '--json'], 0);

      for (const [name, result, expected] of runs) {
        expect(result.code, `${name}: ${result.stderr}`).toBe(expected);
        for (const secret of [PASSWORD, API_KEY]) {
          expect(result.stdout, `${name} stdout`).not.toContain(secret);
          expect(result.stderr, `${name} stderr`).not.toContain(secret);
        }
      }
      // The failures did name what failed, masked: the test looks where a secret would be.
      const ingest = runs[0]![1];
      expect(ingest.stderr).toContain('"event":"retry"');
      expect(ingest.stdout).toContain('"status":"failed"');
      const config = JSON.parse(runs.find(([name]) => name === 'config --json')![1].stdout) as Record<string, unknown>;
      expect(JSON.stringify(config)).toContain(`dir:****@127.0.0.1:${port}`);
      expect(config).toMatchObject({ maxResponseMb: 512, allowOrigins: ['https://files.example'] });

      const db = await ctx.test.connect();
      try {
        const rows = (await db.knex('runs').select('*')) as Record<string, unknown>[];
        expect(rows.map((r) => r.command)).toEqual(expect.arrayContaining(['ingest-fhir', 'import-clinicians', 'directory-lookup import', 'export-csv']));
        expect(rows.filter((r) => r.error !== null).length).toBeGreaterThanOrEqual(4);
        const text = JSON.stringify(rows);
        expect(text).not.toContain(PASSWORD);
        expect(text).not.toContain(API_KEY);
      } finally {
        await db.close();
      }
    }, 600_000);
  });
}
