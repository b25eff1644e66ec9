import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { applyProfile, pseudonymiser, toPostcodeOutward, toYear } from './profile.js';

const KEY = 'a-research-key-of-some-length';

describe('research treatments', () => {
  it('pseudonyms are HMAC-SHA256 under the key: stable, and different under another key', () => {
    const p = pseudonymiser(KEY);
    expect(p('pat-1')).toBe(createHmac('sha256', KEY).update('pat-1').digest('hex'));
    expect(p('pat-1')).toBe(p('pat-1'));
    expect(p('pat-1')).not.toBe(p('pat-2'));
    expect(pseudonymiser('another-key-entirely-123')('pat-1')).not.toBe(p('pat-1'));
  });

  it('generalises dates and timestamps to the year, and anything else to empty', () => {
    expect(['1984-07-21', '1984-07-21T10:00:00+00:00', '1984', '1984-07', 'unknown', '84-07-21'].map(toYear)).toEqual([
      '1984',
      '1984',
      '1984',
      '1984',
      '',
      '',
    ]);
  });

  it('generalises UK postcodes to the outward code, and anything else to empty', () => {
    expect(['N6 2FA', 'n62fa', 'SW1A 1AA', 'sw1a1aa', ' ec1a  1bb ', 'M1 1AE', 'N6', '75012', 'not a postcode'].map(toPostcodeOutward)).toEqual([
      'N6',
      'N6',
      'SW1A',
      'SW1A',
      'EC1A',
      'M1',
      'N6',
      '',
      '',
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
    expect(plan[1]!.transform!('2001-02-03')).toBe('2001');
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
});
