import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';

describe('where the embedded database is', () => {
  let folder: string;
  beforeEach(() => {
    folder = mkdtempSync(path.join(os.tmpdir(), 'carepipe-location-'));
  });
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  const readOnly: [string, string[]][] = [
    ['runs', ['runs']],
    ['history', ['history', 'fhir_resources', 'Patient/1']],
    ['export-csv', ['export-csv', 'rejects']],
    ['sql', ['sql', 'select 1']],
    ['directory-lookup list', ['directory-lookup', 'list']],
    ['migrate --status', ['migrate', '--status']],
    ['db serve', ['db', 'serve', '--port', '0']],
  ];
  for (const [name, args] of readOnly) {
    it(`${name} in a folder without a database exits 2, names the folder and the ways to point elsewhere, creates nothing`, async () => {
      const result = await runCli(args, { cwd: folder });
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      const dataDir = path.join(folder, '.carepipe', 'db');
      expect(result.stderr).toBe(
        `carepipe: no embedded database in ${dataDir}; point at yours with --data-dir DIR, CAREPIPE_HOME (its db/ folder) or DATABASE_URL (a Postgres server), or run carepipe from the folder holding .carepipe/\n`,
      );
      expect(existsSync(path.join(folder, '.carepipe'))).toBe(false);
    });
  }

  it('the command that creates it says where, once; a subfolder then finds it as git finds .git', async () => {
    const created = await runCli(['migrate'], { cwd: folder });
    expect(created.code).toBe(0);
    const dataDir = path.join(folder, '.carepipe', 'db');
    expect(created.stderr).toMatch(new RegExp(`^time=\\S+ level=info event=database_created message="created a new embedded database in ${dataDir}"\\n$`));
    const sub = path.join(folder, 'exports', 'daily');
    mkdirSync(sub, { recursive: true });
    const again = await runCli(['sql', 'select count(*) as n from knex_migrations where name like $$20261123_000%$$', '--format', 'csv'], { cwd: sub });
    expect(again.stderr).not.toContain('database_created');
    expect(again.code).toBe(0);
    expect(again.stdout).toBe('n\r\n1\r\n');
    expect(existsSync(path.join(sub, '.carepipe'))).toBe(false);
  });
});
