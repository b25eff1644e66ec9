import { describe, expect, it } from 'vitest';
import { parseStructured } from '../../fixtures/directory-server.js';
import { buildFilterQuery, buildSearchParams, quoteValue, searchUrl } from './query.js';

describe('quoteValue', () => {
  it('wraps a value in single quotes and escapes quotes and backslashes', () => {
    expect(quoteValue("L'Île-Rousse")).toBe("'L\\'Île-Rousse'");
    expect(quoteValue('a\\b')).toBe("'a\\\\b'");
    expect(quoteValue('SAINT ÉTIENNE')).toBe("'SAINT ÉTIENNE'");
  });

  it('survives a structured-syntax parser unchanged, whatever the value holds', () => {
    for (const value of ["D'Artagnan", 'Centre (Nord) \\ Sud', "'", "x') (or city:'PARIS", 'Hélène  Marie']) {
      const parsed = parseStructured(`city:${quoteValue(value)}`);
      expect(parsed).toEqual({ kind: 'match', field: 'city', value, mode: 'phrase' });
    }
  });
});

describe('buildFilterQuery', () => {
  it('returns nothing without filters', () => {
    expect(buildFilterQuery({})).toBeUndefined();
  });

  it('gives a single clause alone, several inside (and …), each value quoted', () => {
    expect(buildFilterQuery({ city: 'LYON' })).toBe("city:'LYON'");
    expect(buildFilterQuery({ city: "L'Île-Rousse", profession: 'Masseur kinésithérapeute', postcode: '20220' })).toBe(
      "(and city:'L\\'Île-Rousse' profession_name:'Masseur kinésithérapeute' postcode:'20220')",
    );
  });

  it('reads an all-digit profession as a profession code', () => {
    expect(buildFilterQuery({ profession: '21' })).toBe("profession_code:'21'");
  });

  it('ANDs a raw --fq with the structured filters, untouched', () => {
    expect(buildFilterQuery({ city: 'LYON', fq: "(or profession_code:'21' profession_code:'10')" })).toBe(
      "(and city:'LYON' (or profession_code:'21' profession_code:'10'))",
    );
  });

  it('puts the exact keys of import --rpps --finess first', () => {
    expect(buildFilterQuery({ rpps: '10001234567', finess: '2A0001234' })).toBe("(and rpps_number:'10001234567' finess:'2A0001234')");
  });

  it('turns decomposed accents typed in a terminal into NFC', () => {
    expect(buildFilterQuery({ city: 'ORLE\u0301ANS' })).toBe("city:'ORL\u00c9ANS'");
  });

  it('refuses an empty filter value naming the field', () => {
    expect(() => buildFilterQuery({ city: '  ' })).toThrow(/filter on city is empty/);
  });
});

describe('buildSearchParams', () => {
  it('sends the term with the default parser, size 10', () => {
    expect(buildSearchParams({ term: 'dupré' })).toEqual([
      ['q', 'dupré'],
      ['size', '10'],
    ]);
  });

  it('matches everything with the structured parser when there is no term', () => {
    expect(buildSearchParams({ city: 'LYON' })).toEqual([
      ['q', 'matchall'],
      ['q.parser', 'structured'],
      ['fq', "city:'LYON'"],
      ['size', '10'],
    ]);
  });

  it('passes q.options, return, size, start and sort in a stable order', () => {
    expect(
      buildSearchParams({ term: 'x', parser: 'simple', qOptions: '{"fields": ["last_name^2"]}', return: ['last_name', 'city'], size: 5, start: 20, sort: 'last_name asc, city desc' }),
    ).toEqual([
      ['q', 'x'],
      ['q.parser', 'simple'],
      ['q.options', '{"fields":["last_name^2"]}'],
      ['return', 'last_name,city'],
      ['size', '5'],
      ['start', '20'],
      ['sort', 'last_name asc, city desc'],
    ]);
  });

  it('pages with a cursor', () => {
    expect(buildSearchParams({ term: 'x', cursor: 'initial' })).toContainEqual(['cursor', 'initial']);
  });

  it('refuses --start with --cursor, a size beyond 10000, and start + size beyond it', () => {
    expect(() => buildSearchParams({ term: 'x', start: 1, cursor: 'initial' })).toThrow('use --start or --cursor, not both');
    expect(() => buildSearchParams({ term: 'x', size: 10_001 })).toThrow('--size must be between 0 and 10000');
    expect(() => buildSearchParams({ term: 'x', start: 9_995, size: 10 })).toThrow(/--cursor initial/);
  });

  it('refuses unknown return fields before the directory fails the whole request', () => {
    expect(() => buildSearchParams({ term: 'x', return: ['last_name', 'ssn'] })).toThrow(/--return: unknown field ssn/);
  });

  it('refuses a sort on an unknown field or without a direction', () => {
    expect(() => buildSearchParams({ term: 'x', sort: 'age asc' })).toThrow(/unknown field 'age'/);
    expect(() => buildSearchParams({ term: 'x', sort: 'last_name' })).toThrow(/must be 'FIELD asc'/);
  });

  it('refuses q.options that are not a JSON object', () => {
    expect(() => buildSearchParams({ term: 'x', qOptions: '[1]' })).toThrow(/--q-options must be a JSON object/);
    expect(() => buildSearchParams({ term: 'x', qOptions: '{fields' })).toThrow(/--q-options must be a JSON object/);
  });
});

describe('searchUrl', () => {
  it('percent-encodes spaces and quotes (never +) and keeps the base path and query', () => {
    const url = searchUrl('https://abc.execute-api.eu-west-3.amazonaws.com/prod?stage=1', buildSearchParams({ term: 'le goff', city: "L'Île" }));
    expect(url).toBe(
      "https://abc.execute-api.eu-west-3.amazonaws.com/prod/?stage=1&q=le%20goff&fq=city%3A'L%5C'%C3%8Ele'&size=10",
    );
    expect(new URL(url).searchParams.get('fq')).toBe("city:'L\\'Île'");
  });

  it('refuses a base URL that is not http(s)', () => {
    expect(() => searchUrl('ftp://x', [])).toThrow(/must be http/);
    expect(() => searchUrl('not a url', [])).toThrow(/is not a URL/);
  });
});
