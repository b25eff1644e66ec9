/**
 * Typed columns from a view's hints: which SQL type a column gets, what values pass it, and how a
 * partial date is stored. Pure: compiled views and their rows, no database.
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { CarepipeError } from '../../errors.js';
import { loadShippedViews } from '../views.js';
import { compileView } from './index.js';
import { firstInstantOf } from './types.js';

const observationView = (...column: Record<string, unknown>[]) =>
  compileView({ resourceType: 'ViewDefinition', resource: 'Observation', select: [{ column }] });

describe('column types from the view', () => {
  it('gives declared decimal, date and dateTime columns numeric, date and timestamptz', () => {
    const view = observationView(
      { name: 'v', path: 'value.ofType(Quantity).value', type: 'decimal' },
      { name: 'd', path: 'effective.ofType(dateTime)', type: 'date' },
      { name: 't', path: 'effective.ofType(dateTime)', type: 'dateTime' },
      { name: 'i', path: 'issued', type: 'instant' },
      { name: 'n', path: 'component.count()', type: 'unsignedInt' },
    );
    expect(view.columns.map((c) => [c.name, c.sqlType])).toEqual([
      ['v', 'numeric'],
      ['d', 'date'],
      ['t', 'timestamptz'],
      ['i', 'timestamptz'],
      ['n', 'integer'],
    ]);
  });

  it('keeps text columns for a view without hints, and honours ansi/type NUMERIC and DATE', () => {
    expect(observationView({ name: 'v', path: 'value.ofType(Quantity).value' }).columns[0]!.sqlType).toBe('text');
    expect(observationView({ name: 'v', path: 'value.ofType(Quantity).value', tag: [{ name: 'ansi/type', value: 'NUMERIC(10,2)' }] }).columns[0]!.sqlType).toBe('numeric');
    expect(observationView({ name: 'd', path: 'effective.ofType(dateTime)', tag: [{ name: 'ansi/type', value: 'DATE' }] }).columns[0]!.sqlType).toBe('date');
  });

  it('types the shipped views: decimals numeric, dates date, dateTimes timestamptz; appointment.end is end_time', () => {
    const types = new Map(loadShippedViews().flatMap((v) => v.view.columns.map((c) => [`${v.table.table}.${c.name}`, c.sqlType] as const)));
    expect(types.get('observation.value_quantity')).toBe('numeric');
    expect(types.get('patient.birth_date')).toBe('date');
    expect(types.get('encounter.period_start')).toBe('timestamptz');
    expect(types.get('medicationrequest.authored_on')).toBe('timestamptz');
    expect(types.get('condition.onset_date_time')).toBe('timestamptz');
    expect(types.get('procedure.performed_start')).toBe('timestamptz');
    expect(types.get('appointment.end_time')).toBe('timestamptz');
    expect(types.has('appointment.end')).toBe(false);
  });
});

describe('values of typed columns', () => {
  const view = observationView(
    { name: 'v', path: 'value.ofType(Quantity).value', type: 'decimal' },
    { name: 'at', path: 'effective.ofType(dateTime)', type: 'dateTime' },
  );
  const observation = (effective: string, value: unknown = new LosslessNumber('71.50')) => ({
    resourceType: 'Observation',
    id: 'o1',
    effectiveDateTime: effective,
    valueQuantity: { value },
  });

  it('gives a decimal with the digits it was written with, and a dateTime as its original string', () => {
    const [row] = view.evaluate(observation('2020-05'));
    expect(isLosslessNumber(row!.v)).toBe(true);
    expect(String(row!.v)).toBe('71.50');
    expect(row!.at).toBe('2020-05');
  });

  it.each([
    ['2020-13', 'month 13'],
    ['2021-02-29', 'no 29 February in 2021'],
    ['2020-05-01T10:00:00', 'a time without a zone'],
    ['May 2020', 'not a FHIR dateTime'],
  ])('refuses %s (%s), naming the column', (value) => {
    let error: unknown;
    try {
      view.evaluate(observation(value));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(CarepipeError);
    expect((error as CarepipeError).code).toBe('RECORD_INVALID');
    expect((error as CarepipeError).context.field).toBe('at');
    expect((error as CarepipeError).message).toContain('is not a FHIR dateTime');
    // its shape, not its text: a date may be a birth date
    expect((error as CarepipeError).message).not.toContain(value);
  });

  it('refuses a decimal written as a string', () => {
    expect(() => view.evaluate(observation('2020-05-01T10:00:00Z', '71.5'))).toThrow(/column v: expected a numeric value, got a string/);
  });
});

describe('firstInstantOf', () => {
  it.each([
    ['2020', 'date', '2020-01-01', true],
    ['2020-05', 'date', '2020-05-01', true],
    ['2020-05-17', 'date', '2020-05-17', false],
    ['2020', 'timestamptz', '2020-01-01T00:00:00Z', true],
    ['2020-05', 'timestamptz', '2020-05-01T00:00:00Z', true],
    ['2020-05-17', 'timestamptz', '2020-05-17T00:00:00Z', true],
    ['2020-05-17T10:30:00+02:00', 'timestamptz', '2020-05-17T10:30:00+02:00', false],
  ] as const)('stores %s in a %s column as %s (partial: %s)', (value, sqlType, stored, partial) => {
    expect(firstInstantOf(value, sqlType)).toEqual({ value: stored, partial });
  });
});
