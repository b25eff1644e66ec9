import { describe, expect, it } from 'vitest';
import {
  coercePostcode,
  effectiveStatus,
  normaliseName,
  parseAppointmentId,
  parseDate,
  parseDuration,
  parseNhsNumber,
  parseOffsetTimestamp,
  parseStatus,
  statusChangeAllowed,
} from './rules.js';
import { appointmentMessage } from '../i18n/appointments.js';

describe('NHS number', () => {
  it.each([
    ['9434765919', '9434765919'],
    ['943 476 5919', '9434765919'],
    ['943-476-5919', '9434765919'],
    [' 943 476-5919 ', '9434765919'],
    // from the sample export: starts with 0, check digit 7
    ['0021403597', '0021403597'],
    // sum mod 11 = 0: check digit 11 stands for 0
    ['0000000000', '0000000000'],
  ])('accepts %j as %s', (input, expected) => {
    expect(parseNhsNumber(input)).toEqual({ ok: true, value: expected });
  });

  it.each([
    ['9434765918', 'NHS_NUMBER_CHECK_DIGIT'],
    // 9 weighted digits sum to 210, 210 mod 11 = 1: the check digit would be 10, so no number is valid
    ['1234567890', 'NHS_NUMBER_CHECK_DIGIT'],
    ['943476591', 'NHS_NUMBER_INVALID'],
    ['94347659190', 'NHS_NUMBER_INVALID'],
    ['943476591X', 'NHS_NUMBER_INVALID'],
    ['943.476.5919', 'NHS_NUMBER_INVALID'],
    ['', 'NHS_NUMBER_INVALID'],
    [9434765919, 'NHS_NUMBER_INVALID'],
    [null, 'NHS_NUMBER_INVALID'],
  ])('refuses %j with %s', (input, code) => {
    expect(parseNhsNumber(input)).toMatchObject({ ok: false, code });
  });
});

describe('UK postcode', () => {
  it.each([
    ['n62fa', 'N6 2FA'],
    ['N6 2FA', 'N6 2FA'],
    ['  n6   2fa ', 'N6 2FA'],
    ['sw1a1aa', 'SW1A 1AA'],
    ['Wa558he', 'WA55 8HE'],
    ['m42st', 'M4 2ST'],
    ['ec1a 1bb', 'EC1A 1BB'],
    ['W1A0AX', 'W1A 0AX'],
    ['HP7H 2AS', 'HP7H 2AS'],
  ])('coerces %j to %s', (input, expected) => {
    expect(coercePostcode(input)).toEqual({ ok: true, value: expected });
  });

  it.each([['N6'], ['N62F'], ['62FA N'], ['NN6 2FAA'], ['N6 FA2'], ['ABC1 2DE'], ['N6-2FA'], [''], [12345], [undefined]])(
    'refuses %j',
    (input) => {
      expect(coercePostcode(input)).toMatchObject({ ok: false, code: 'POSTCODE_INVALID' });
    },
  );
});

describe('timestamps carry an offset', () => {
  it.each([
    ['2025-06-04T16:30:00+01:00', '2025-06-04T15:30:00.000Z'],
    ['2025-06-04T16:30:00+00:00', '2025-06-04T16:30:00.000Z'],
    ['2025-06-04T16:30:00Z', '2025-06-04T16:30:00.000Z'],
    ['2025-06-04T16:30-0230', '2025-06-04T19:00:00.000Z'],
    ['2025-06-04 16:30:00.250+05:30', '2025-06-04T11:00:00.250Z'],
  ])('accepts %s', (input, iso) => {
    const result = parseOffsetTimestamp(input);
    expect(result.ok && result.value.toISOString()).toBe(iso);
  });

  it.each([['2025-06-04T16:30:00'], ['2025-06-04T16:30'], ['2025-06-04 16:30:00.5']])('refuses the naive time %s', (input) => {
    expect(parseOffsetTimestamp(input)).toMatchObject({ ok: false, code: 'TIMESTAMP_NAIVE' });
  });

  it.each([['2025-06-04'], ['2025-02-30T10:00:00Z'], ['2025-06-04T25:00:00Z'], ['yesterday'], [1717500000000]])('refuses %j', (input) => {
    expect(parseOffsetTimestamp(input)).toMatchObject({ ok: false, code: 'TIMESTAMP_INVALID' });
  });
});

describe('durations', () => {
  it.each([
    ['15m', 15],
    ['30m', 30],
    ['1h', 60],
    ['1h30m', 90],
    ['2h', 120],
    ['1h 5m', 65],
    ['45min', 45],
    ['90', 90],
    [20, 20],
  ])('reads %j as %i minutes', (input, minutes) => {
    expect(parseDuration(input)).toEqual({ ok: true, value: minutes });
  });

  it.each([['0m'], ['-15m'], ['1.5h'], ['h'], ['15s'], [''], ['25h'], [0], [null]])('refuses %j', (input) => {
    expect(parseDuration(input)).toMatchObject({ ok: false, code: 'DURATION_INVALID' });
  });
});

describe('status', () => {
  it.each([['attended'], ['active'], ['cancelled'], ['missed']])('accepts %s', (s) => {
    expect(parseStatus(s)).toEqual({ ok: true, value: s });
  });
  it.each([['Cancelled'], ['canceled'], ['booked'], [''], [undefined]])('refuses %j', (s) => {
    expect(parseStatus(s)).toMatchObject({ ok: false, code: 'STATUS_INVALID' });
  });

  it('never lets a cancelled appointment go back to another status', () => {
    expect(statusChangeAllowed('cancelled', 'active')).toBe(false);
    expect(statusChangeAllowed('cancelled', 'attended')).toBe(false);
    expect(statusChangeAllowed('cancelled', 'cancelled')).toBe(true);
    expect(statusChangeAllowed('active', 'cancelled')).toBe(true);
    expect(statusChangeAllowed('missed', 'attended')).toBe(true);
  });
});

describe('missed derivation at a fixed clock', () => {
  const start = new Date('2026-03-02T09:00:00Z');
  it('keeps an active appointment active until its end (start + duration)', () => {
    expect(effectiveStatus('active', start, 30, new Date('2026-03-02T09:29:59Z'))).toBe('active');
    expect(effectiveStatus('active', start, 30, new Date('2026-03-02T09:30:00Z'))).toBe('active');
  });
  it('marks an active appointment missed once its end has passed', () => {
    expect(effectiveStatus('active', start, 30, new Date('2026-03-02T09:30:01Z'))).toBe('missed');
    expect(effectiveStatus('active', start, 90, new Date('2026-03-02T10:31:00Z'))).toBe('missed');
  });
  it('leaves attended and cancelled appointments as they are', () => {
    const later = new Date('2027-01-01T00:00:00Z');
    expect(effectiveStatus('attended', start, 30, later)).toBe('attended');
    expect(effectiveStatus('cancelled', start, 30, later)).toBe('cancelled');
  });
});

describe('names are stored exactly as given', () => {
  it.each([['Dr Glenn Clark'], ['कुलकर्णी, तृष्णा'], ['刘桂荣'], ['McDONALD, Mary-Jane'], ['  spaced  '], ['x'.repeat(500)]])('keeps %s', (name) => {
    expect(normaliseName(name)).toEqual({ ok: true, value: name });
  });

  it('composes decomposed accents to NFC', () => {
    const decomposed = 'Zoe\u0301 Le\u0301a';
    const result = normaliseName(decomposed);
    expect(result).toEqual({ ok: true, value: 'Zoé Léa' });
    expect(result.ok && result.value.length).toBe(7);
  });

  it.each([[''], ['   '], [null], [42]])('refuses %j', (name) => {
    expect(normaliseName(name)).toMatchObject({ ok: false, code: 'NAME_INVALID' });
  });
});

describe('other fields', () => {
  it('reads a date of birth and refuses impossible or future ones', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(parseDate('1996-02-29', now)).toEqual({ ok: true, value: '1996-02-29' });
    expect(parseDate('1997-02-29', now)).toMatchObject({ ok: false, code: 'DATE_INVALID' });
    expect(parseDate('2030-01-01', now)).toMatchObject({ ok: false, code: 'DATE_INVALID' });
    expect(parseDate('01/02/1996', now)).toMatchObject({ ok: false, code: 'DATE_INVALID' });
  });

  it('reads an appointment id as a lower-case uuid', () => {
    expect(parseAppointmentId('343D31D4-5993-47EF-A468-7884A467AE80')).toEqual({ ok: true, value: '343d31d4-5993-47ef-a468-7884a467ae80' });
    expect(parseAppointmentId('343d31d4')).toMatchObject({ ok: false, code: 'APPOINTMENT_ID_INVALID' });
  });
});

describe('message catalogue', () => {
  it('words the same reason in English and French', () => {
    expect(appointmentMessage('en', 'APPOINTMENT_CANCELLED_IS_FINAL', { status: 'active' })).toBe(
      'the appointment was cancelled and cannot be set back to active; the cancelled row stays',
    );
    expect(appointmentMessage('fr', 'APPOINTMENT_CANCELLED_IS_FINAL', { status: 'active' })).toBe(
      'le rendez-vous a été annulé et ne peut pas repasser à active ; la ligne annulée est conservée',
    );
    expect(appointmentMessage('fr', 'NHS_NUMBER_CHECK_DIGIT')).toBe('le numéro NHS échoue au contrôle de la clé modulo 11');
  });
});
