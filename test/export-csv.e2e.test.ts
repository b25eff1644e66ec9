/**
 * `carepipe export-csv` through the built binary, on both back ends: exact CSV bytes, the empty
 * header, formula guarding, the atomic file write, the research profile, bound --where values and
 * ViewDefinitions over the stored resources.
 */
import { createHmac } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { runCli } from './helpers/cli.js';

const KEY_A = 'research-key-A-0123456789';
const KEY_B = 'research-key-B-9876543210';

const PATIENT_1 = {
  resourceType: 'Patient',
  id: 'pat-1',
  identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: '9434765919' }],
  name: [{ family: 'Oyelaran', given: ['Adaeze'] }],
  gender: 'female',
  birthDate: '1984-07-21',
  address: [{ line: ['14 Cholmeley Park'], city: 'London', postalCode: 'N6 5EU' }],
  active: true,
};
const PATIENT_2 = {
  resourceType: 'Patient',
  id: 'pat-2',
  identifier: [{ system: 'https://fhir.nhs.uk/Id/nhs-number', value: '4010232137' }],
  name: [{ family: '=HYPERLINK("http://evil.example")', given: ['Jo, "JJ"'] }],
  gender: 'male',
  birthDate: '1990-02-03',
  address: [{ line: ['1 Long Lane'], city: 'Leeds', postalCode: 'ls61ab' }],
};

/** A ViewDefinition of patients; `research` tags on every column unless `untagged` names one. */
function patientView(untagged?: string): unknown {
  const column = (name: string, p: string, research: string, extra: Record<string, unknown> = {}) => ({
    name,
    path: p,
    ...extra,
    ...(name === untagged ? {} : { tag: [{ name: 'research', value: research }] }),
  });
  return {
    resourceType: 'ViewDefinition',
    name: 'patient_demographics',
    resource: 'Patient',
    status: 'active',
    select: [
      {
        column: [
          column('id', 'getResourceKey()', 'pseudonym'),
          column('nhs_number', "identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value.first()", 'drop'),
          column('family', 'name.first().family', 'drop'),
          column('given', 'name.first().given', 'drop', { collection: true }),
          column('gender', 'gender', 'keep'),
          column('birth_date', 'birthDate', 'year'),
          column('postcode', 'address.first().postalCode', 'postcode_outward'),
          column('street', 'address.first().line.first()', 'drop'),
          column('active', 'active', 'keep'),
        ],
      },
    ],
  };
}

async function storeResources(knex: Knex, resources: { resource: object; deleted?: boolean; lastUpdated: string }[]): Promise<void> {
  await knex('fhir_resources').insert(
    resources.map(({ resource, deleted, lastUpdated }) => ({
      resource_type: (resource as { resourceType: string }).resourceType,
      id: (resource as { id: string }).id,
      version_id: '1',
      last_updated: lastUpdated,
      resource: JSON.stringify(resource),
      content_hash: 'h',
      deleted: deleted ?? false,
      source: 'fixtures/patients.ndjson',
      loaded_at: '2026-11-20T09:00:00Z',
    })),
  );
}

/** A run and some rejects with awkward values: quotes, commas, line breaks, formulas, NULLs. */
async function storeRejects(knex: Knex): Promise<void> {
  await knex('runs').insert({ id: 900, command: 'ingest-fhir', os_user: 'ops', host: 'h', pid: 1, started_at: '2026-11-20T09:00:00Z' });
  await knex('rejects').insert([
    { id: 1, run_id: 900, command: 'ingest-fhir', source: 'a.ndjson', line: 3, entry: null, record_key: 'pat-1', field: 'birthDate', reason_code: 'DATE_INVALID', message: 'bad date, "1984-13-01"', raw: '{"a":1}\n', retryable: false, created_at: '2026-11-20T09:00:01.5Z' },
    { id: 2, run_id: 900, command: 'ingest-fhir', source: 'a.ndjson', line: -3, entry: 7, record_key: 'pat-2', field: '', reason_code: "x' or '1'='1", message: '=SUM(A1:A9)', raw: '+1', retryable: true, created_at: '2026-11-20T10:30:00+02:00' },
    { id: 3, run_id: 900, command: 'ingest-fhir', source: 'b.ndjson', line: null, entry: null, record_key: null, field: null, reason_code: 'R', message: '@cmd', raw: '-2', retryable: false, created_at: '2026-11-21T00:00:00Z' },
  ]);
}

const REJECT_COLUMNS = 'id,run_id,command,source,line,entry,record_key,field,reason_code,message,raw,retryable,resolved_run_id,created_at';

describe.each(BACKENDS)('export-csv on %s', (backend) => {
  const ctx = useTestDatabase(backend);

  async function run(args: string[], env: Record<string, string> = {}) {
    await ctx.release();
    return runCli(['export-csv', ...args], { env: { ...ctx.test.env, ...env }, cwd: ctx.test.tmp });
  }

  it('writes exact RFC 4180 bytes: quoting, NULL vs empty string, booleans, ISO timestamps with offset, guarded formulas', async () => {
    await storeRejects(ctx.db.knex);
    const result = await run(['rejects']);
    expect(result.stderr).not.toContain('error');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `${REJECT_COLUMNS}\r\n` +
        '1,900,ingest-fhir,a.ndjson,3,,pat-1,birthDate,DATE_INVALID,"bad date, ""1984-13-01""","{""a"":1}\n",false,,2026-11-20T09:00:01.5+00:00\r\n' +
        `2,900,ingest-fhir,a.ndjson,-3,7,pat-2,"",x' or '1'='1,'=SUM(A1:A9),'+1,true,,2026-11-20T08:30:00+00:00\r\n` +
        "3,900,ingest-fhir,b.ndjson,,,,,R,'@cmd,'-2,false,,2026-11-21T00:00:00+00:00\r\n",
    );
  });

  it('writes the header alone when there are no rows', async () => {
    const result = await run(['rejects']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${REJECT_COLUMNS}\r\n`);
  });

  it('leaves cells as they are with --no-formula-guard, and honours --delimiter, --bom, --eol lf and --columns', async () => {
    await storeRejects(ctx.db.knex);
    const result = await run(['rejects', '--no-formula-guard', '--delimiter', ';', '--bom', '--eol', 'lf', '--columns', 'message,raw,line,id', '--where', 'id>=2']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('\ufeffmessage;raw;line;id\n=SUM(A1:A9);+1;-3;2\n@cmd;-2;;3\n');
  });

  it('converts timestamps to --timezone', async () => {
    await storeRejects(ctx.db.knex);
    const result = await run(['rejects', '--columns', 'id,created_at', '--where', 'id=2', '--timezone', 'Asia/Kolkata']);
    expect(result.stdout).toBe('id,created_at\r\n2,2026-11-20T14:00:00+05:30\r\n');
  });

  it('binds --where values: a quote-laden value matches only itself', async () => {
    await storeRejects(ctx.db.knex);
    const injection = await run(['rejects', '--columns', 'id', '--where', "reason_code=x' or '1'='1"]);
    expect(injection.code).toBe(0);
    expect(injection.stdout).toBe('id\r\n2\r\n');
    const noMatch = await run(['rejects', '--columns', 'id', '--where', "field=x' or '1'='1"]);
    expect(noMatch.stdout).toBe('id\r\n');
    const both = await run(['rejects', '--columns', 'id', '--where', 'retryable=false', '--where', 'line>0']);
    expect(both.stdout).toBe('id\r\n1\r\n');
  }, 240_000);

  it('refuses --where on a column the source does not have, naming it', async () => {
    const result = await run(['rejects', '--where', '1=1 or true--=x']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/rejects has no column '1'/);
    expect(result.stdout).toBe('');
  });

  it('refuses a --where value that does not fit its column with exit 2', async () => {
    const result = await run(['rejects', '--where', 'line=abc']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/does not fit its column/);
  });

  it('filters on the last-updated column with --since', async () => {
    await storeRejects(ctx.db.knex);
    // id 2 was created at 10:30+02:00, before 08:45Z.
    const result = await run(['rejects', '--columns', 'id', '--since', '2026-11-20T08:45:00Z']);
    expect(result.stdout).toBe('id\r\n1\r\n3\r\n');
  });

  it('writes -o atomically: the file appears complete, and a failed export leaves the old file and no temporary file', async () => {
    await storeRejects(ctx.db.knex);
    const file = path.join(ctx.test.tmp, 'out', 'rejects.csv');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.dirname(file));
    writeFileSync(file, 'OLD CONTENT\n');
    const failed = await run(['rejects', '-o', file, '--since', 'not a time']);
    expect(failed.code).toBe(2);
    expect(readFileSync(file, 'utf8')).toBe('OLD CONTENT\n');
    expect(readdirSync(path.dirname(file))).toEqual(['rejects.csv']);

    const ok = await run(['rejects', '-o', file, '--columns', 'id']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`3 rows of rejects (clinical) written to ${file}`);
    expect(readFileSync(file, 'utf8')).toBe('id\r\n1\r\n2\r\n3\r\n');
    expect(readdirSync(path.dirname(file))).toEqual(['rejects.csv']);
  }, 240_000);

  it('records the export in the ledger with its source, profile and row count, without --where values', async () => {
    await storeRejects(ctx.db.knex);
    const result = await run(['rejects', '-o', 'r.csv', '--where', 'record_key=pat-1', '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ command: 'export-csv', status: 'succeeded', rows: 1, source: 'rejects', profile: 'clinical' });
    const db = await ctx.test.connect();
    try {
      const [runRow] = await db.knex('runs').where({ command: 'export-csv' }).select('*');
      expect(runRow.details).toMatchObject({ source: 'rejects', profile: 'clinical', rows: 1 });
      expect(runRow.written_count).toBe(1);
      expect(JSON.stringify(runRow)).not.toContain('pat-1');
      expect(runRow.arguments).toContain('record_key=****');
    } finally {
      await db.close();
    }
  });

  it('exports a ViewDefinition evaluated over the stored resources (not deleted, of its type)', async () => {
    await storeResources(ctx.db.knex, [
      { resource: PATIENT_2, lastUpdated: '2026-11-02T00:00:00Z' },
      { resource: PATIENT_1, lastUpdated: '2026-11-01T00:00:00Z' },
      { resource: { resourceType: 'Patient', id: 'pat-gone', name: [{ family: 'Deleted' }] }, deleted: true, lastUpdated: '2026-11-01T00:00:00Z' },
      { resource: { resourceType: 'Observation', id: 'obs-1', status: 'final' }, lastUpdated: '2026-11-01T00:00:00Z' },
    ]);
    writeFileSync(path.join(ctx.test.tmp, 'patients.json'), JSON.stringify(patientView()));
    const result = await run(['--view', 'patients.json']);
    expect(result.stderr).not.toContain('error');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      'id,nhs_number,family,given,gender,birth_date,postcode,street,active\r\n' +
        'pat-1,9434765919,Oyelaran,"[""Adaeze""]",female,1984-07-21,N6 5EU,14 Cholmeley Park,true\r\n' +
        `pat-2,4010232137,"'=HYPERLINK(""http://evil.example"")","[""Jo, \\""JJ\\""""]",male,1990-02-03,ls61ab,1 Long Lane,\r\n`,
    );
    const since = await run(['--view', 'patients.json', '--columns', 'id', '--since', '2026-11-02T00:00:00Z']);
    expect(since.stdout).toBe('id\r\npat-2\r\n');
    const where = await run(['--view', 'patients.json', '--columns', 'id', '--where', 'gender=female']);
    expect(where.stdout).toBe('id\r\npat-1\r\n');
  }, 240_000);

  it('a resource that does not fit the view goes to rejects (exit 1) and the others are exported', async () => {
    await storeResources(ctx.db.knex, [
      { resource: { resourceType: 'Patient', id: 'p-ok', multipleBirthInteger: 2 }, lastUpdated: '2026-11-01T00:00:00Z' },
      { resource: { resourceType: 'Patient', id: 'p-bad', multipleBirthInteger: 'twins' }, lastUpdated: '2026-11-01T00:00:00Z' },
    ]);
    const view = {
      resourceType: 'ViewDefinition',
      name: 'births',
      resource: 'Patient',
      status: 'active',
      select: [{ column: [{ name: 'id', path: 'id' }, { name: 'births', path: 'multipleBirth.ofType(integer)', type: 'integer' }] }],
    };
    writeFileSync(path.join(ctx.test.tmp, 'births.json'), JSON.stringify(view));
    const result = await run(['--view', 'births.json', '-o', 'births.csv']);
    expect(result.code).toBe(1);
    expect(readFileSync(path.join(ctx.test.tmp, 'births.csv'), 'utf8')).toBe('id,births\r\np-ok,2\r\n');
    const db = await ctx.test.connect();
    try {
      const rejects = await db.knex('rejects').select('record_key', 'field', 'reason_code');
      expect(rejects).toEqual([{ record_key: 'Patient/p-bad', field: 'births', reason_code: 'RECORD_INVALID' }]);
    } finally {
      await db.close();
    }
  });

  it('--dry-run reads and counts but writes no file', async () => {
    await storeRejects(ctx.db.knex);
    const result = await run(['rejects', '-o', 'r.csv', '--dry-run']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('dry run: 3 rows of rejects (clinical) would be written to r.csv\n');
    expect(existsSync(path.join(ctx.test.tmp, 'r.csv'))).toBe(false);
  });

  it('research profile: no name, NHS number or address anywhere; pseudonyms stable per key and different across keys', async () => {
    await storeResources(ctx.db.knex, [
      { resource: PATIENT_1, lastUpdated: '2026-11-01T00:00:00Z' },
      { resource: PATIENT_2, lastUpdated: '2026-11-02T00:00:00Z' },
    ]);
    writeFileSync(path.join(ctx.test.tmp, 'patients.json'), JSON.stringify(patientView()));
    const first = await run(['--view', 'patients.json', '--profile', 'research'], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
    expect(first.code).toBe(0);
    const pseudo = (key: string, id: string) => createHmac('sha256', key).update(id).digest('hex');
    // Rows in pseudonym order: the order of the real ids says nothing.
    const rows = [`${pseudo(KEY_A, 'pat-1')},female,1984,N6,true\r\n`, `${pseudo(KEY_A, 'pat-2')},male,1990,LS6,\r\n`].sort();
    expect(first.stdout).toBe('id,gender,birth_date,postcode,active\r\n' + rows.join(''));
    const again = await run(['--view', 'patients.json', '--profile', 'research'], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
    expect(again.stdout).toBe(first.stdout);
    const otherKey = await run(['--view', 'patients.json', '--profile', 'research'], { CAREPIPE_PSEUDONYM_KEY: KEY_B });
    expect(otherKey.code).toBe(0);
    expect(otherKey.stdout).not.toBe(first.stdout);
    expect(otherKey.stdout).not.toContain(pseudo(KEY_A, 'pat-1'));

    // The stored resources themselves, in research profile: the JSON (names, identifiers, address) is dropped.
    const table = await run(['fhir_resources', '--profile', 'research'], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
    expect(table.code).toBe(0);
    expect(table.stdout.split('\r\n')[0]).toBe('resource_type,id,version_id,last_updated,deleted,run_id,loaded_at');
    expect(table.stdout).toContain(pseudo(KEY_A, 'pat-1'));
    for (const output of [first.stdout, otherKey.stdout, table.stdout]) {
      for (const identifying of ['Oyelaran', 'Adaeze', 'HYPERLINK', 'Jo,', '9434765919', '4010232137', 'Cholmeley', 'Long Lane', 'London', 'Leeds', '5EU', '1AB', 'pat-1', 'pat-2', '07-21', 'patients.ndjson']) {
        expect(output).not.toContain(identifying);
      }
    }
  }, 240_000);

  it('research profile refuses to run without CAREPIPE_PSEUDONYM_KEY (exit 2)', async () => {
    const result = await run(['rejects', '--profile', 'research', '-o', 'x.csv']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/CAREPIPE_PSEUDONYM_KEY/);
    expect(existsSync(path.join(ctx.test.tmp, 'x.csv'))).toBe(false);
  });

  it('research profile: a column with no declared treatment blocks the export and is named (views and tables)', async () => {
    await ctx.db.knex.schema.alterTable('rejects', (t) => t.text('free_text_note'));
    await ctx.db.knex('runs').insert({ id: 901, command: 'x', os_user: 'u', host: 'h', pid: 1 });
    await ctx.db.knex('rejects').insert({ run_id: 901, command: 'x', source: 's', reason_code: 'R', message: 'm', free_text_note: 'lives alone' });
    writeFileSync(path.join(ctx.test.tmp, 'patients.json'), JSON.stringify(patientView('street')));
    const view = await run(['--view', 'patients.json', '--profile', 'research'], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
    expect(view.code).toBe(2);
    expect(view.stderr).toMatch(/column street has no declared research treatment/);
    expect(view.stdout).toBe('');

    const table = await run(['rejects', '--profile', 'research'], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
    expect(table.code).toBe(2);
    expect(table.stderr).toMatch(/rejects: column free_text_note has no declared research treatment/);
    expect(table.stdout).not.toContain('lives alone');
    // The clinical profile exports it; the research profile can leave it out with --columns.
    const clinical = await run(['rejects', '--columns', 'id,free_text_note']);
    expect(clinical.stdout).toContain('lives alone');
    const chosen = await run(['rejects', '--profile', 'research', '--columns', 'reason_code,record_key'], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
    expect(chosen.code).toBe(0);
    expect(chosen.stdout).toBe('reason_code,record_key\r\nR,\r\n');
  }, 240_000);

  it('research profile refuses to filter on identifying columns or to select dropped ones', async () => {
    const filter = await run(['rejects', '--profile', 'research', '--where', 'record_key=pat-1'], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
    expect(filter.code).toBe(2);
    expect(filter.stderr).toMatch(/'record_key' is pseudonym/);
    const dropped = await run(['rejects', '--profile', 'research', '--columns', 'id,raw'], { CAREPIPE_PSEUDONYM_KEY: KEY_A });
    expect(dropped.code).toBe(2);
    expect(dropped.stderr).toMatch(/'raw' is dropped/);
  }, 240_000);

  it('names an unknown source and lists the sources', async () => {
    const unknown = await run(['no_such_table']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown source 'no_such_table'/);
    const list = await run(['--list', '--json']);
    expect(list.code).toBe(0);
    const sources = JSON.parse(list.stdout) as { name: string; columns: { name: string; research: string }[] }[];
    expect(sources.find((s) => s.name === 'fhir_resources')?.columns).toContainEqual({ name: 'resource', research: 'drop' });
  }, 240_000);
});
