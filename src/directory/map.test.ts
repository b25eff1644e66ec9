import { describe, expect, it } from 'vitest';
import { MANDATORY_FIELDS } from './fields.js';
import { fieldText, toEntry, type DirectoryHit } from './map.js';

const complete = (): DirectoryHit => ({
  id: '10001234567-690001234',
  fields: {
    rpps_number: '10001234567',
    first_name: 'Élodie',
    last_name: "N'Diaye",
    gender: 'F',
    email: 'elodie.ndiaye@sante.mssante.example',
    phone_number: '04 72 00 00 01',
    profession_code: '21',
    profession_name: 'Pharmacien',
    finess: '690001234',
    finess_justice: '690009999',
    registered_name: 'PHARMACIE DU PARC',
    activity_segment_code: '2',
    activity_segment_name: "Pharmacie d'officine",
    building_number: '12',
    postcode: '69003',
    city: 'LYON',
    bimedoc_client: '0',
  },
});

function issuesOf(hit: DirectoryHit) {
  const result = toEntry(hit);
  if (result.ok) throw new Error('expected issues');
  return result.issues;
}

describe('fieldText', () => {
  it('makes strings, numbers and one-element arrays the same text', () => {
    expect(fieldText('21', 'profession_code')).toBe('21');
    expect(fieldText(21, 'profession_code')).toBe('21');
    expect(fieldText(['21'], 'profession_code')).toBe('21');
    expect(fieldText([21], 'profession_code')).toBe('21');
  });

  it('gives back the leading zeros a number lost on FINESS numbers and postcodes', () => {
    expect(fieldText(10001234, 'finess')).toBe('010001234');
    expect(fieldText(1000, 'postcode')).toBe('01000');
  });

  it('turns blanks and empty arrays into null, trims and collapses spaces', () => {
    expect(fieldText('  ', 'city')).toBeNull();
    expect(fieldText([], 'city')).toBeNull();
    expect(fieldText(null, 'city')).toBeNull();
    expect(fieldText('  SAINT   ÉTIENNE ', 'city')).toBe('SAINT ÉTIENNE');
  });

  it('composes decomposed accents (NFC)', () => {
    const nfd = 'He\u0301le\u0300ne';
    expect(fieldText(nfd, 'first_name')).toBe('Hélène'.normalize('NFC'));
    expect(fieldText(nfd, 'first_name')).not.toBe(nfd);
  });

  it('keeps several e-mail addresses together, refuses several values elsewhere', () => {
    expect(fieldText(['a@x.example', 'b@x.example', 'a@x.example'], 'email')).toBe('a@x.example, b@x.example');
    expect(fieldText(['Dupont', 'Durand'], 'last_name')).toMatchObject({ reasonCode: 'MULTIPLE_VALUES', field: 'last_name' });
  });
});

describe('toEntry', () => {
  it('splits a hit into an organization, a worker and their link', () => {
    const result = toEntry(complete());
    expect(result).toEqual({
      ok: true,
      entry: {
        id: '10001234567-690001234',
        organization: {
          finess: '690001234',
          name: 'PHARMACIE DU PARC',
          finess_justice: '690009999',
          activity_segment_code: '2',
          activity_segment_name: "Pharmacie d'officine",
          building_number: '12',
          city: 'LYON',
          postcode: '69003',
          bimedoc_client: false,
        },
        worker: {
          rpps_number: '10001234567',
          last_name: "N'Diaye",
          first_name: 'Élodie',
          gender: 'F',
          email: 'elodie.ndiaye@sante.mssante.example',
          phone_number: '04 72 00 00 01',
          profession_code: '21',
          profession_name: 'Pharmacien',
        },
        link: { finess: '690001234', rpps_number: '10001234567', profession_code: '21', profession_name: 'Pharmacien', directory_id: '10001234567-690001234' },
      },
    });
  });

  it('reads the format=sdk shape (every value an array of strings) the same way', () => {
    const hit = complete();
    const sdk: DirectoryHit = { id: hit.id, fields: Object.fromEntries(Object.entries(hit.fields).map(([k, v]) => [k, [String(v)]])) };
    expect(toEntry(sdk)).toEqual(toEntry(hit));
  });

  it.each(MANDATORY_FIELDS)('refuses a hit without %s, naming it', (field) => {
    const hit = complete();
    delete hit.fields[field];
    const issues = issuesOf(hit);
    expect(issues).toEqual([expect.objectContaining({ field, reasonCode: 'MISSING_FIELD', message: expect.stringContaining(`${field} is missing`) })]);
  });

  it('refuses an rpps_number that is not 11 digits, with the reason', () => {
    for (const rpps of ['1000123456', '100012345678', '1000123456X']) {
      const hit = complete();
      hit.fields.rpps_number = rpps;
      expect(issuesOf(hit)).toEqual([{ field: 'rpps_number', reasonCode: 'INVALID_RPPS', message: `rpps_number '${rpps}' is not 11 digits` }]);
    }
  });

  it('refuses a finess that is not 9 characters of FINESS, accepts Corsica (2A, 2B)', () => {
    for (const finess of ['69000123', '6900012345', '6X0001234']) {
      const hit = complete();
      hit.fields.finess = finess;
      expect(issuesOf(hit)).toEqual([expect.objectContaining({ field: 'finess', reasonCode: 'INVALID_FINESS', message: expect.stringContaining('is not 9 characters') })]);
    }
    const corsica = complete();
    corsica.fields.finess = '2a0001234';
    const result = toEntry(corsica);
    expect(result.ok && result.entry.organization.finess).toBe('2A0001234');
  });

  it('reads bimedoc_client from 0/1, numbers and true/false, refuses anything else', () => {
    const hit = complete();
    hit.fields.bimedoc_client = 1;
    const result = toEntry(hit);
    expect(result.ok && result.entry.organization.bimedoc_client).toBe(true);
    hit.fields.bimedoc_client = 'peut-être';
    expect(issuesOf(hit)).toEqual([expect.objectContaining({ field: 'bimedoc_client', reasonCode: 'INVALID_VALUE' })]);
  });

  it('reports every problem of a hit at once', () => {
    const hit = complete();
    delete hit.fields.first_name;
    hit.fields.finess = '123';
    expect(issuesOf(hit).map((i) => i.field)).toEqual(['first_name', 'finess']);
  });
});
