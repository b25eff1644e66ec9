import { describe, expect, it } from 'vitest';
import { canonicalJson, changedViews, viewHash, type ViewRecord } from './flat-views.js';

const record = (viewName: string, hash: string, shipped = true): ViewRecord => ({ table: 't', viewName, hash, definition: {}, shipped });

describe('flat_views fingerprints', () => {
  it('hash the canonical JSON: key order and spacing do not count, any value does', () => {
    expect(canonicalJson({ b: [1, { d: null, c: 'x' }], a: true })).toBe('{"a":true,"b":[1,{"c":"x","d":null}]}');
    const view = { resourceType: 'ViewDefinition', name: 'p', resource: 'Patient', select: [{ column: [{ name: 'id', path: 'id' }] }] };
    const reordered = JSON.parse('{"select":[{"column":[{"path":"id","name":"id"}]}],"resource":"Patient","name":"p","resourceType":"ViewDefinition"}');
    expect(viewHash(reordered)).toBe(viewHash(view));
    expect(viewHash(view)).toMatch(/^[0-9a-f]{64}$/);
    expect(viewHash({ ...view, name: 'q' })).not.toBe(viewHash(view));
  });

  it('name the views changed, added, and (when asked) removed', () => {
    const recorded = [record('a', '1'), record('b', '2'), record('gone', '3')];
    expect(changedViews(recorded, [record('a', '1'), record('b', '2')])).toEqual([]);
    expect(changedViews(recorded, [record('a', '1'), record('b', '9'), record('new', '4')])).toEqual(['b', 'new']);
    expect(changedViews(recorded, [record('a', '1'), record('b', '2')], { removed: (r) => r.shipped })).toEqual(['gone']);
  });
});
