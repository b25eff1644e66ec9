import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { applyProfile, dateShiftDays, MAX_SHIFT_DAYS, pseudonymiser, shiftFhirDate, toPostcodeOutward, toYear } from './profile.js';

const KEY = 'a-research-key-of-some-length';

describe('research treatments', () => {
  it('pseudonyms are HMAC-SHA256 under the key: stable, and different under another key', () => {
    const p = pseudonymiser(KEY);
    expect(p('pat-1')).toBe(createHmac('sha256', KEY).update('pat-1').digest('hex'));
    expect(p('pat-1')).toBe(p('pat-1'));
    expect(p('pat-1')).not.toBe(p('pat-2'));
    expect(pseudonymiser('another-key-entirely-123')('pat-1')).not.toBe(p('pat-1'));
  });

  it('generalises dates and timestamps to the year, and anything else to NULL', () => {
    expect(['1984-07-21', '1984-07-21T10:00:00+00:00', '1984', '1984-07', 'unknown', '84-07-21'].map(toYear)).toEqual([
      '1984',
      '1984',
      '1984',
      '1984',
      null,
      null,
    ]);
  });

  it('generalises UK postcodes to the outward code, and anything else to NULL', () => {
    expect(['N6 2FA', 'n62fa', 'SW1A 1AA', 'sw1a1aa', ' ec1a  1bb ', 'M1 1AE', 'N6', '75012', 'not a postcode'].map(toPostcodeOutward)).toEqual([
      'N6',
      'N6',
      'SW1A',
      'SW1A',
      'EC1A',
      'M1',
      'N6',
      null,
      null,
    ]);
  });
});

describe('applyProfile', () => {
  const columns = [
    { name: 'id', treatment: 'pseudonym' as const },
    { name: 'name', treatment: 'drop' as const },
    { name: 'birth_date', treatment: 'year' as const },
    { name: 'status', treatment: 'keep' as const },
  ];

  it('clinical passes every column, declared or not', () => {
    expect(applyProfile([...columns, { name: 'note' }], { profile: 'clinical', source: 't' }).map((c) => c.name)).toEqual([
      'id',
      'name',
      'birth_date',
      'status',
      'note',
    ]);
  });

  it('research leaves dropped columns out and transforms the others', () => {
    const plan = applyProfile(columns, { profile: 'research', pseudonymKey: KEY, source: 't' });
    expect(plan.map((c) => [c.name, c.index])).toEqual([
      ['id', 0],
      ['birth_date', 2],
      ['status', 3],
    ]);
    expect(plan[1]!.transform!('2001-02-03', 'pat-1')).toBe('2001');
    expect(plan[2]!.transform).toBeUndefined();
  });

  it('research refuses an undeclared column, naming it', () => {
    expect(() => applyProfile([...columns, { name: 'note' }], { profile: 'research', pseudonymKey: KEY, source: 'patients' })).toThrow(
      /patients: column note has no declared research treatment/,
    );
  });

  it('research refuses to run without a key, or with a short one', () => {
    expect(() => applyProfile(columns, { profile: 'research', source: 't' })).toThrow(/CAREPIPE_PSEUDONYM_KEY/);
    expect(() => applyProfile([{ name: 'status', treatment: 'keep' }], { profile: 'research', source: 't' })).toThrow(/CAREPIPE_PSEUDONYM_KEY/);
    expect(() => applyProfile(columns, { profile: 'research', pseudonymKey: 'short', source: 't' })).toThrow(/at least 16 characters/);
  });

  it('research refuses a key of repeated characters or whitespace, without printing it', () => {
    for (const key of ['a'.repeat(32), ' '.repeat(20), '\t \n'.repeat(8), 'ab'.repeat(12), 'x x x x x x x x x x']) {
      let message = '';
      try {
        applyProfile(columns, { profile: 'research', pseudonymKey: key, source: 't' });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/CAREPIPE_PSEUDONYM_KEY is repeated characters or whitespace/);
      expect(message).not.toContain(key.trim() || key);
    }
    expect(applyProfile(columns, { profile: 'research', pseudonymKey: KEY, source: 't' })).toHaveLength(3);
  });

  it('birth dates are cut to the year, or shifted by the patient offset with --birth-date shift', () => {
    const birth = [{ name: 'birth_date', treatment: 'birth_date' as const }];
    const year = applyProfile(birth, { profile: 'research', pseudonymKey: KEY, source: 't' });
    expect(year[0]!.transform!('1984-07-21', 'pat-1')).toBe('1984');
    const shifted = applyProfile(birth, { profile: 'research', pseudonymKey: KEY, source: 't', birthDate: 'shift' });
    expect(shifted[0]!.transform!('1984-07-21', 'pat-1')).toBe(shiftFhirDate('1984-07-21', dateShiftDays(KEY, 'pat-1')));
    expect(shifted[0]!.transform!('1984-07-21', 'pat-1')).not.toBe('1984-07-21');
  });
});

describe('date shifting', () => {
  const days = (a: string, b: string) => (Date.parse(b) - Date.parse(a)) / 86_400_000;

  it('one offset per patient and key, never 0 and within 182 days; another key gives another', () => {
    const offsets = Array.from({ length: 400 }, (_, i) => dateShiftDays(KEY, `pat-${i}`));
    expect(offsets.every((d) => d !== 0 && Math.abs(d) <= MAX_SHIFT_DAYS)).toBe(true);
    expect(new Set(offsets).size).toBeGreaterThan(200);
    expect(dateShiftDays(KEY, 'pat-1')).toBe(dateShiftDays(KEY, 'pat-1'));
    const otherKey = Array.from({ length: 50 }, (_, i) => dateShiftDays('another-key-entirely-123', `pat-${i}`));
    expect(otherKey.filter((d, i) => d === offsets[i]).length).toBeLessThan(5);
  });

  it('moves dates, datetimes and instants by whole days, keeping time of day, offset and the interval', () => {
    const start = '2020-03-27T23:30:00+00:00';
    const end = '2020-04-02T08:15:00.5+01:00';
    for (const offset of [-182, -40, 1, 17, 182]) {
      const [a, b] = [shiftFhirDate(start, offset)!, shiftFhirDate(end, offset)!];
      expect(days(start, a)).toBe(offset);
      expect(days(a, b)).toBe(days(start, end));
      expect(b.slice(10)).toBe('T08:15:00.5+01:00');
    }
    expect(shiftFhirDate('2020-02-28', 1)).toBe('2020-02-29');
    expect(shiftFhirDate('2021-01-10', -20)).toBe('2020-12-21');
    // Postgres date and timestamptz text (typed columns) shift the same way.
    expect(shiftFhirDate('2020-02-28 10:00:00+00', 2)).toBe('2020-03-01 10:00:00+00');
  });

  it('keeps the precision of partial dates, and refuses to pass anything it cannot shift', () => {
    expect(shiftFhirDate('2020-05', 20)).toBe('2020-05');
    expect(shiftFhirDate('2020-05', -20)).toBe('2020-04');
    expect(shiftFhirDate('2020', 40)).toBe('2020');
    expect(shiftFhirDate('2020', -1)).toBe('2019');
    expect(['yesterday', '20-05-2020', '', 'infinity'].map((v) => shiftFhirDate(v, 10))).toEqual([null, null, null, null]);
  });
});
