import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { coreSources } from './sources.js';
import { researchTreatments, viewSources } from './view-tags.js';

const tag = (value: string) => [{ name: 'research', value }];

describe('research tags of ViewDefinition columns', () => {
  it('reads tags through nested select and unionAll; an untagged column is undefined', () => {
    const view = {
      resource: 'Patient',
      select: [
        { column: [{ name: 'id', path: 'id', tag: tag('pseudonym') }] },
        {
          forEach: 'telecom',
          select: [{ column: [{ name: 'system', path: 'system', tag: [{ name: 'ansi/type', value: 'TEXT' }] }] }],
          unionAll: [{ column: [{ name: 'value', path: 'value', tag: tag('drop') }] }, { column: [{ name: 'value', path: 'x', tag: tag('drop') }] }],
        },
      ],
    };
    expect([...researchTreatments(view, 'v.json')]).toEqual([
      ['id', 'pseudonym'],
      ['system', undefined],
      ['value', 'drop'],
    ]);
  });

  it('refuses an unknown treatment and branches that disagree', () => {
    expect(() => researchTreatments({ select: [{ column: [{ name: 'a', path: 'a', tag: tag('hide') }] }] }, 'v.json')).toThrow(/research tag/);
    expect(() =>
      researchTreatments({ select: [{ unionAll: [{ column: [{ name: 'a', path: 'a', tag: tag('keep') }] }, { column: [{ name: 'a', path: 'b', tag: tag('drop') }] }] }] }, 'v.json'),
    ).toThrow(/different research tags/);
  });

  it('declares a table per views/*.json file, named by the view, from its tags', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'carepipe-views-'));
    writeFileSync(
      path.join(dir, 'patient.json'),
      JSON.stringify({
        resourceType: 'ViewDefinition',
        name: 'patient_flat',
        resource: 'Patient',
        select: [{ column: [{ name: 'id', path: 'id', tag: tag('pseudonym') }, { name: 'note', path: 'text.div' }, { name: 'gender', path: 'gender', tag: tag('keep') }] }],
      }),
    );
    const [source] = viewSources(dir);
    expect(source).toMatchObject({ name: 'patient_flat', relation: 'patient_flat', columns: { id: 'pseudonym', gender: 'keep' } });
    expect(source!.columns).not.toHaveProperty('note');
  });

  it('core declarations name every column of their tables once', () => {
    expect(new Set(coreSources.map((s) => s.name)).size).toBe(coreSources.length);
  });
});
