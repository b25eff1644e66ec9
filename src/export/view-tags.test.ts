import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { viewsDir } from '../fhir/views-dir.js';
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
    writeFileSync(
      path.join(dir, 'patient_more.json'),
      JSON.stringify({
        name: 'patient_flat',
        resource: 'Patient',
        select: [{ column: [{ name: 'id', path: 'id', tag: tag('keep') }, { name: 'note', path: 'text.div' }, { name: 'gender', path: 'gender', tag: tag('drop') }] }],
      }),
    );
    const sources = viewSources(dir);
    expect(sources).toHaveLength(1);
    // Two views fill one table: the stricter treatment wins; ingest's bookkeeping columns are declared.
    expect(sources[0]).toMatchObject({
      name: 'patient_flat',
      relation: 'patient_flat',
      columns: { id: 'pseudonym', gender: 'drop', _resource_type: 'keep', _resource_id: 'pseudonym' },
    });
    expect(sources[0]!.columns).not.toHaveProperty('note');
  });

  it('every column of the shipped views/ carries a research tag', () => {
    const files = readdirSync(viewsDir()).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const full = path.join(viewsDir(), file);
      const untagged = [...researchTreatments(JSON.parse(readFileSync(full, 'utf8')), full)].filter(([, t]) => !t).map(([c]) => c);
      expect([file, untagged]).toEqual([file, []]);
    }
    expect(coreSources.map((s) => s.name)).toEqual(['fhir_resources', 'runs', 'rejects']);
  });

  it('declares the bookkeeping columns every flat table has, the row index included', () => {
    const tables = viewSources(viewsDir());
    expect(tables.length).toBeGreaterThan(10);
    for (const table of tables) {
      expect([table.name, table.columns._resource_type, table.columns._resource_id, table.columns._row_index]).toEqual([table.name, 'keep', 'pseudonym', 'keep']);
    }
  });
});
