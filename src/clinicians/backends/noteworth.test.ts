import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checksum, noteworth, noteworthKey } from './noteworth.js';

describe('noteworth mapToClinician', () => {
  it('maps the provider fields and derives the key from given name, family name and clinic', () => {
    const mapped = noteworth.mapToClinician({ name_given: 'Jasper', name_family: 'Mueller', title: 'Dr.', clinic: 'Noteworth General' });
    const key = createHash('sha256').update('jasper\u001fmueller\u001fnoteworth general').digest('hex').slice(0, 24);
    expect(mapped).toEqual({
      ok: true,
      key,
      value: {
        key,
        givenName: 'Jasper',
        familyName: 'Mueller',
        title: 'Dr.',
        clinic: 'Noteworth General',
        npi: null,
        rpps: null,
        specialty: null,
        phone: null,
        email: null,
        active: true,
      },
    });
  });

  it('keeps the key when the title changes, or case and spacing differ', () => {
    const a = noteworth.mapToClinician({ name_given: 'Guy', name_family: 'Bright', title: 'PA', clinic: 'Noteworth General' });
    const b = noteworth.mapToClinician({ name_given: ' guy ', name_family: 'BRIGHT', title: 'Dr.', clinic: 'Noteworth  General' });
    expect(a.ok && b.ok && a.key === b.key && a.value.key === b.value.key).toBe(true);
    expect(noteworthKey('Guy', 'Bright', 'Other Clinic')).not.toBe(noteworthKey('Guy', 'Bright', 'Noteworth General'));
  });

  it('rejects a record without a family name, naming the field', () => {
    expect(noteworth.mapToClinician({ name_given: 'Ann', clinic: 'x' })).toEqual({
      ok: false,
      reason: 'NAME_MISSING',
      field: 'name_family',
      message: 'name_family is missing or empty: no clinician without a name',
    });
    expect(noteworth.mapToClinician('text' as never)).toMatchObject({ ok: false, reason: 'RECORD_INVALID' });
  });

  it('computes the checksum of the contract example', () => {
    expect(checksum('12345', '/providers')).toBe(createHash('sha256').update('12345/providers').digest('hex'));
    expect(checksum('12345', '/providers')).toMatch(/^bf6fa075.*e9f8$/);
    expect(noteworth.authHeader({ value: '12345', expiresAt: null }, { method: 'GET', url: 'http://x/providers' })).toEqual({
      'X-Request-Checksum': checksum('12345', '/providers'),
    });
  });
});
