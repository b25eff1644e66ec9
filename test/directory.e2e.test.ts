/**
 * directory-lookup end to end: the CLI against the local directory fake over real HTTP, into real
 * tables on both back ends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDirectoryServer, type DirectoryServer } from '../fixtures/directory-server.js';
import type { SampleHit } from '../fixtures/directory-data.js';
import { BACKENDS, useTestDatabase } from './helpers/db.js';
import { directorySources } from '../src/directory/export.js';
import { runCli, runMain } from './helpers/cli.js';

const PARC = {
  finess: '690001234',
  finess_justice: '690009999',
  registered_name: 'PHARMACIE DU PARC',
  activity_segment_code: '2',
  activity_segment_name: "Pharmacie d'officine",
  building_number: '12',
  postcode: '69003',
  city: 'LYON',
  bimedoc_client: '0',
};
const AJACCIO = {
  finess: '2A0004567',
  registered_name: "CENTRE HOSPITALIER D'AJACCIO",
  activity_segment_code: '1',
  activity_segment_name: 'Établissement de santé',
  building_number: 27,
  postcode: '20000',
  city: 'AJACCIO',
  bimedoc_client: 1,
};
const ELODIE = {
  rpps_number: '10001234567',
  first_name: 'Élodie',
  last_name: "N'Diaye",
  gender: 'F',
  email: 'elodie.ndiaye@sante.mssante.example',
  phone_number: '04 72 00 00 01',
  profession_code: '21',
  profession_name: 'Pharmacien',
};
// Decomposed accents (NFD), as some sources send them: carepipe stores them composed (NFC).
const HELENE = {
  rpps_number: ['10007654321'],
  first_name: ['He\u0301le\u0300ne'],
  last_name: ["D'Artagnan"],
  gender: ['F'],
  profession_code: [10],
  profession_name: ['Me\u0301decin'],
};

const hit = (worker: Record<string, unknown>, org: Record<string, unknown>): SampleHit => ({
  id: `${[worker.rpps_number].flat()[0]}-${org.finess}`,
  fields: { ...worker, ...org },
});

/** The small directory most tests use: two organizations, two workers, Élodie at both. */
const SMALL: SampleHit[] = [hit(ELODIE, PARC), hit(ELODIE, AJACCIO), hit(HELENE, PARC)];

/** Hits missing one mandatory field each, told apart by their building_number. */
const MANDATORY = ['finess', 'registered_name', 'rpps_number', 'last_name', 'first_name', 'profession_name'] as const;
const MISSING: SampleHit[] = MANDATORY.map((field) => {
  const h = hit({ ...ELODIE, rpps_number: '10000000001' }, { ...PARC, finess: '690000001', building_number: `miss-${field}` });
  delete h.fields[field];
  h.id = `miss-${field}`;
  return h;
});
const BAD_KEYS: SampleHit[] = [
  { id: 'bad-rpps', fields: { ...ELODIE, ...PARC, rpps_number: '1000123456', building_number: 'bad-rpps' } },
  { id: 'bad-finess', fields: { ...ELODIE, ...PARC, finess: '69000123', building_number: 'bad-finess' } },
];

let small: DirectoryServer;
let sample: DirectoryServer;

beforeAll(async () => {
  small = await startDirectoryServer({ hits: [...SMALL, ...MISSING, ...BAD_KEYS] });
  sample = await startDirectoryServer();
});
afterAll(async () => {
  await small.close();
  await sample.close();
});

for (const backend of BACKENDS) {
  describe(`directory-lookup on ${backend}`, () => {
    const ctx = useTestDatabase(backend);

    /** The CLI in-process against this test's database. */
    const carepipe = (server: DirectoryServer, ...args: string[]) =>
      runMain(['directory-lookup', ...args, ...ctx.test.args], { env: { DIRECTORY_BASE_URL: server.url } });

    async function tables() {
      const db = await ctx.test.connect();
      try {
        const organizations = await db.knex('organizations').select('finess', 'name', 'city', 'postcode', 'bimedoc_client', 'building_number').orderBy('finess');
        const workers = await db.knex('health_care_workers').select('rpps_number', 'first_name', 'last_name', 'profession_name').orderBy('rpps_number');
        const links = await db.knex('organization_workers').select('finess', 'rpps_number', 'profession_name').orderBy(['finess', 'rpps_number']);
        const rejects = await db.knex('rejects').select('record_key', 'field', 'reason_code', 'message').orderBy('id');
        return { organizations, workers, links, rejects };
      } finally {
        await db.close();
      }
    }

    it('imports a picked hit as an organization, a worker and their link', async () => {
      await ctx.release();
      const result = await carepipe(small, 'import', 'diaye', '--city', 'LYON', '--pick', '1');
      expect(result.stderr).not.toContain('error');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('organizations: 1 created, 0 existing');
      const t = await tables();
      expect(t.organizations).toEqual([{ finess: '690001234', name: 'PHARMACIE DU PARC', city: 'LYON', postcode: '69003', bimedoc_client: false, building_number: '12' }]);
      expect(t.workers).toEqual([{ rpps_number: '10001234567', first_name: 'Élodie', last_name: "N'Diaye", profession_name: 'Pharmacien' }]);
      expect(t.links).toEqual([{ finess: '690001234', rpps_number: '10001234567', profession_name: 'Pharmacien' }]);
    });

    it('does not create an existing organization again when a second worker joins it', async () => {
      await ctx.release();
      expect((await carepipe(small, 'import', '--rpps', '10001234567', '--finess', '690001234')).code).toBe(0);
      const second = await carepipe(small, 'import', '--rpps', '10007654321', '--finess', '690001234', '--json');
      expect(second.code).toBe(0);
      expect(JSON.parse(second.stdout)).toMatchObject({ organizations: { existing: 1 }, workers: { created: 1 }, links: { created: 1 } });
      const t = await tables();
      expect(t.organizations.map((o) => o.finess)).toEqual(['690001234']);
      expect(t.workers.map((w) => w.rpps_number)).toEqual(['10001234567', '10007654321']);
      expect(t.links).toHaveLength(2);
    });

    it('links an existing worker to a second organization without creating them again', async () => {
      await ctx.release();
      expect((await carepipe(small, 'import', '--rpps', '10001234567', '--finess', '690001234')).code).toBe(0);
      const second = await carepipe(small, 'import', '--rpps', '10001234567', '--finess', '2A0004567', '--json');
      expect(second.code).toBe(0);
      expect(JSON.parse(second.stdout)).toMatchObject({ organizations: { created: 1 }, workers: { existing: 1 }, links: { created: 1 } });
      const t = await tables();
      expect(t.workers).toHaveLength(1);
      expect(t.links).toEqual([
        { finess: '2A0004567', rpps_number: '10001234567', profession_name: 'Pharmacien' },
        { finess: '690001234', rpps_number: '10001234567', profession_name: 'Pharmacien' },
      ]);
      // numbers from the directory normalised: building 27 → '27', bimedoc_client 1 → true
      expect(t.organizations[0]).toMatchObject({ finess: '2A0004567', building_number: '27', bimedoc_client: true });
    });

    it.each(MANDATORY)('refuses a hit without %s, naming the field, writing nothing', async (field) => {
      await ctx.release();
      const result = await carepipe(small, 'import', '--fq', `building_number:'miss-${field}'`, '--pick', '1');
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`${field} is missing`);
      expect(result.stdout).toContain('Imported 0 of 1 entry (1 rejected)');
      const t = await tables();
      expect(t.organizations).toEqual([]);
      expect(t.workers).toEqual([]);
      expect(t.links).toEqual([]);
      expect(t.rejects).toEqual([{ record_key: `miss-${field}`, field, reason_code: 'MISSING_FIELD', message: expect.stringContaining(`${field} is missing`) }]);
    });

    it('rejects an rpps_number that is not 11 digits and a finess that is not 9 characters, with the reason', async () => {
      await ctx.release();
      const result = await carepipe(small, 'import', '--fq', "(or building_number:'bad-rpps' building_number:'bad-finess')", '--all');
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("rpps_number '1000123456' is not 11 digits");
      expect(result.stderr).toContain("finess '69000123' is not 9 characters");
      const t = await tables();
      expect(t.rejects.map((r) => [r.record_key, r.field, r.reason_code])).toEqual([
        ['bad-rpps', 'rpps_number', 'INVALID_RPPS'],
        ['bad-finess', 'finess', 'INVALID_FINESS'],
      ]);
      expect(t.organizations).toEqual([]);
      expect(t.workers).toEqual([]);
    });

    it('keeps accented names with apostrophes composed (NFC) from the directory to the database and back', async () => {
      await ctx.release();
      expect((await carepipe(small, 'import', '--rpps', '10007654321', '--finess', '690001234')).code).toBe(0);
      const t = await tables();
      expect(t.workers).toEqual([{ rpps_number: '10007654321', first_name: 'H\u00e9l\u00e8ne', last_name: "D'Artagnan", profession_name: 'M\u00e9decin' }]);
      const csv = await carepipe(small, 'list', '--format', 'csv');
      expect(csv.stdout).toContain("D'Artagnan,H\u00e9l\u00e8ne,F,,,10,M\u00e9decin");
      expect(csv.stdout).not.toContain('e\u0301');
    });

    it('imports every hit of a search with --all, page by page, and a second run changes nothing', async () => {
      await ctx.release();
      const lyon = sample.hits.filter((h) => h.fields.city === 'LYON');
      const before = sample.requests.length;
      const first = await carepipe(sample, 'import', '--city', 'LYON', '--all', '--size', '7', '--json');
      expect(first.code).toBe(0);
      const firstSummary = JSON.parse(first.stdout);
      expect(firstSummary.counts).toEqual({ read: lyon.length, written: lyon.length, unchanged: 0, rejected: 0 });
      // paged with a CloudSearch cursor, 7 at a time
      const pages = sample.requests.slice(before);
      expect(pages[0]!.get('cursor')).toBe('initial');
      expect(pages.length).toBe(Math.ceil(lyon.length / 7));
      expect(pages[1]!.get('cursor')).not.toBe('initial');
      const t1 = await tables();
      expect(t1.organizations.map((o) => o.finess)).toEqual([...new Set(lyon.map((h) => h.fields.finess as string))].sort());
      expect(t1.workers.map((w) => w.rpps_number)).toEqual([...new Set(lyon.map((h) => h.fields.rpps_number as string))].sort());
      expect(t1.links).toHaveLength(lyon.length);

      const second = await carepipe(sample, 'import', '--city', 'LYON', '--all', '--json');
      expect(second.code).toBe(0);
      expect(JSON.parse(second.stdout).counts).toEqual({ read: lyon.length, written: 0, unchanged: lyon.length, rejected: 0 });
      expect(await tables()).toEqual(t1);
    });

    it('lists organizations with their workers as a table, JSON and exact CSV', async () => {
      await ctx.release();
      const fq = "(and (or finess:'690001234' finess:'2A0004567') (or rpps_number:'10001234567' rpps_number:'10007654321'))";
      expect((await carepipe(small, 'import', '--fq', fq, '--all')).code).toBe(0);
      const csv = await carepipe(small, 'list', '--format', 'csv');
      expect(csv.code).toBe(0);
      expect(csv.stdout).toBe(
        'finess,organization_name,finess_justice,activity_segment_code,activity_segment_name,building_number,city,postcode,bimedoc_client,rpps_number,last_name,first_name,gender,email,phone_number,profession_code,profession_name\n' +
          "2A0004567,CENTRE HOSPITALIER D'AJACCIO,,1,Établissement de santé,27,AJACCIO,20000,true,10001234567,N'Diaye,Élodie,F,elodie.ndiaye@sante.mssante.example,04 72 00 00 01,21,Pharmacien\n" +
          "690001234,PHARMACIE DU PARC,690009999,2,Pharmacie d'officine,12,LYON,69003,false,10001234567,N'Diaye,Élodie,F,elodie.ndiaye@sante.mssante.example,04 72 00 00 01,21,Pharmacien\n" +
          "690001234,PHARMACIE DU PARC,690009999,2,Pharmacie d'officine,12,LYON,69003,false,10007654321,D'Artagnan,Hélène,F,,,10,Médecin\n",
      );
      const json = await carepipe(small, 'list', '--format', 'json', '--finess', '690001234');
      const organizations = JSON.parse(json.stdout) as { finess: string; name: string; workers: { rpps_number: string }[] }[];
      expect(organizations.map((o) => [o.finess, o.name, o.workers.map((w) => w.rpps_number)])).toEqual([
        ['690001234', 'PHARMACIE DU PARC', ['10001234567', '10007654321']],
      ]);
      const table = await carepipe(small, 'list');
      expect(table.stdout).toBe(
        'finess     organization                  city     rpps_number  worker             profession\n' +
          '---------  ----------------------------  -------  -----------  -----------------  ----------\n' +
          "2A0004567  CENTRE HOSPITALIER D'AJACCIO  AJACCIO  10001234567  Élodie N'Diaye     Pharmacien\n" +
          "690001234  PHARMACIE DU PARC             LYON     10001234567  Élodie N'Diaye     Pharmacien\n" +
          "                                                  10007654321  Hélène D'Artagnan  Médecin\n" +
          '2 organizations\n',
      );
    });

    it('leaves nothing of a page behind when the database fails in the middle of it', async () => {
      // A real failure inside the transaction: the database refuses the third hit's link.
      await ctx.db.knex.raw(`create function refuse_helene() returns trigger language plpgsql as $$
        begin if new.rpps_number = '10007654321' then raise exception 'disk full (simulated)'; end if; return new; end $$`);
      await ctx.db.knex.raw('create trigger refuse_helene before insert on organization_workers for each row execute function refuse_helene()');
      await ctx.release();
      const fq = "(or rpps_number:'10001234567' rpps_number:'10007654321')";
      const result = await carepipe(small, 'import', '--fq', fq, '--all', '--size', '10');
      expect(result.code).toBe(70);
      expect(result.stderr).toContain('disk full (simulated)');
      const t = await tables();
      expect([t.organizations, t.workers, t.links]).toEqual([[], [], []]);
    });

    it('checks and counts with --dry-run but writes nothing', async () => {
      await ctx.release();
      const result = await carepipe(small, 'import', '--rpps', '10001234567', '--finess', '690001234', '--dry-run');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('Dry run: would import 1 of 1 entry');
      expect(result.stdout).toContain('organizations: 1 created');
      const t = await tables();
      expect([t.organizations, t.workers, t.links]).toEqual([[], [], []]);
    });

    it('declares an export treatment for every column of the directory tables and view, in order', async () => {
      for (const source of directorySources) {
        const result = await ctx.db.knex.raw<{ rows: { column_name: string }[] }>(
          'select column_name from information_schema.columns where table_schema = ? and table_name = ? order by ordinal_position',
          [ctx.db.schemas.directory, source.relation ?? source.name],
        );
        expect(Object.keys(source.columns)).toEqual(result.rows.map((r) => r.column_name));
      }
    });

    it('retries 503s, a malformed body and a slow answer, then imports', async () => {
      await ctx.release();
      Object.assign(small.faults, { fail503: 2, malformed: 1, slow: 1, slowMs: 3_000 });
      const result = await carepipe(small, 'import', '--rpps', '10001234567', '--finess', '690001234', '--timeout', '1000', '--json');
      expect(result.code).toBe(0);
      const retries = result.stderr.split('\n').filter((l) => l.includes('"event":"retry"'));
      expect(retries.map((l) => JSON.parse(l).message.replace(/; retrying.*/, ''))).toEqual(['HTTP 503', 'HTTP 503', 'malformed JSON body', 'timeout after 1000 ms']);
      expect(JSON.parse(result.stdout).retries).toBe(4);
      expect((await tables()).links).toHaveLength(1);
    });

    it('exits 4 when the directory keeps failing, writing nothing', async () => {
      await ctx.release();
      small.faults.fail503 = 3;
      const result = await carepipe(small, 'import', '--rpps', '10001234567', '--finess', '690001234', '--retries', '2');
      small.faults.fail503 = 0;
      expect(result.code).toBe(4);
      expect(result.stderr).toContain('failed after 3 attempts: HTTP 503');
      expect((await tables()).organizations).toEqual([]);
    });
  });
}

describe('directory-lookup search (no database)', () => {
  it('prints a numbered table from the built binary and says how to get the next page', async () => {
    const lyon = sample.hits.filter((h) => h.fields.city === 'LYON');
    const result = await runCli(['directory-lookup', 'search', '--city', 'LYON', '--size', '3', '--start', '3'], { env: { DIRECTORY_BASE_URL: sample.url } });
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^#\s+rpps_number\s+first_name\s+last_name\s+profession_name\s+registered_name\s+finess\s+city\s+postcode$/);
    expect(lines.slice(2, 5).map((l) => l.split(/\s+/)[0])).toEqual(['4', '5', '6']);
    expect(lines[5]).toBe(`4–6 of ${lyon.length} · next page: --start 6`);
  });

  it('sends filter values with quotes and spaces quoted, and finds exactly the matching hits', async () => {
    const expected = sample.hits.filter((h) => h.fields.city === "L'ÎLE-ROUSSE" && h.fields.profession_name === 'Masseur-kinésithérapeute');
    const result = await runMain(['directory-lookup', 'search', '--city', "L'Île-Rousse", '--profession', 'Masseur-kinésithérapeute', '--size', '100', '--json'], {
      env: { DIRECTORY_BASE_URL: sample.url },
    });
    expect(result.code).toBe(0);
    expect(sample.requests.at(-1)!.get('fq')).toBe("(and city:'L\\'Île-Rousse' profession_name:'Masseur-kinésithérapeute')");
    const summary = JSON.parse(result.stdout) as { found: number; hits: { id: string }[] };
    expect(expected.length).toBeGreaterThan(0);
    expect(summary.found).toBe(expected.length);
    expect(summary.hits.map((h) => h.id).sort()).toEqual(expected.map((h) => h.id).sort());
  });

  it('retries a 429 after its Retry-After and a dropped connection', async () => {
    Object.assign(sample.faults, { fail429: 1, retryAfterSeconds: 1, drop: 1 });
    const result = await runMain(['directory-lookup', 'search', 'artagnan', '--json'], { env: { DIRECTORY_BASE_URL: sample.url } });
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/HTTP 429; retrying in 1000 ms/);
    expect(result.stderr).toMatch(/network error/);
    expect(JSON.parse(result.stdout).found).toBe(sample.hits.filter((h) => h.fields.last_name === "D'Artagnan").length);
  });

  it('turns a query the directory refuses into a usage error with its message (exit 2)', async () => {
    const result = await runMain(['directory-lookup', 'search', 'x', '--fq', "(and city:'LYON'"], { env: { DIRECTORY_BASE_URL: sample.url } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('the directory refused the query: Syntax error in query: missing )');
  });

  it('needs a base URL', async () => {
    const result = await runMain(['directory-lookup', 'search', 'x'], { env: {} });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('pass --base-url URL or set DIRECTORY_BASE_URL');
  });
});
