import { describe, expect, it } from 'vitest';
import { compactJson, formatPgText, isoTimestamptz } from './format.js';
import { parseCondition } from './query.js';

describe('value formats', () => {
  it('writes Postgres timestamptz text as ISO 8601 with the offset', () => {
    expect(isoTimestamptz('2026-11-23 10:00:00+00')).toBe('2026-11-23T10:00:00+00:00');
    expect(isoTimestamptz('2026-11-23 10:00:00.123456+05:30')).toBe('2026-11-23T10:00:00.123456+05:30');
    expect(isoTimestamptz('1883-11-18 11:58:45-04:56:02')).toBe('1883-11-18T11:58:45-04:56:02');
    expect(isoTimestamptz('infinity')).toBe('infinity');
  });

  it('writes booleans as true/false, naive timestamps with a T, JSON compact with its digits', () => {
    expect(formatPgText('t', 'boolean')).toBe('true');
    expect(formatPgText('f', 'boolean')).toBe('false');
    expect(formatPgText('2026-11-23 10:00:00', 'timestamp')).toBe('2026-11-23T10:00:00');
    expect(compactJson('{"a": [1, 2.50], "b": 12345678901234567890}')).toBe('{"a":[1,2.50],"b":12345678901234567890}');
    expect(formatPgText('-3.50', 'number')).toBe('-3.50');
  });
});

describe('--where conditions', () => {
  it('parses a column, an operator and the value as typed', () => {
    expect(parseCondition('status=missed')).toEqual({ column: 'status', operator: '=', value: 'missed' });
    expect(parseCondition('starts_at>=2026-01-01')).toEqual({ column: 'starts_at', operator: '>=', value: '2026-01-01' });
    expect(parseCondition("name=x' or '1'='1")).toEqual({ column: 'name', operator: '=', value: "x' or '1'='1" });
    expect(parseCondition('a<>b')).toEqual({ column: 'a', operator: '!=', value: 'b' });
    expect(parseCondition('note=')).toEqual({ column: 'note', operator: '=', value: '' });
    expect(() => parseCondition('no operator')).toThrow(/expected COLUMN=VALUE/);
  });
});
