/**
 * The generated row code against the compiled closures: for paths in the generated subset and just
 * outside it, on resources with lists, nulls, lossless decimals and choice elements, a column gives
 * what evaluating its path with the closures gives (or the same error).
 */
import { describe, expect, it } from 'vitest';
import { LosslessNumber } from 'lossless-json';
import { compileView } from './index.js';
import { compileFhirPath } from './fhirpath/compiler.js';
import { toColumnValue, toPlainJson, type SqlType } from './types.js';

const observations: Record<string, unknown>[] = [
  {
    resourceType: 'Observation',
    id: 'o1',
    code: { coding: [null, { system: 's', code: 'a' }, { code: 'b' }] },
    category: [{ coding: [{ code: 'x' }] }, { coding: [{ code: 'y' }] }],
    subject: { reference: 'Patient/p1' },
    encounter: [{ reference: 'Encounter/e1' }],
    performer: [{ reference: 'Practitioner/1' }, { reference: 'Organization/2' }],
    valueQuantity: { value: new LosslessNumber('1.0'), code: 'mg' },
    effectiveDateTime: '2020-01-01',
    component: [{ code: { coding: [{ code: 'c1' }] }, valueString: 'v1' }],
  },
  {
    resourceType: 'Observation',
    id: 7,
    code: { coding: [] },
    category: [null, { coding: { code: 'z' } }],
    subject: { reference: 'urn:uuid:123', type: 'Patient' },
    encounter: [],
    valueString: 's',
    value: ['odd', 3],
    effective: { start: '2020' },
    effectiveDateTime: null,
  },
  {
    resourceType: 'Observation',
    id: null,
    code: [{ coding: [{ code: 'a1' }] }, { coding: [{ code: 'a2' }] }],
    category: { coding: [null, null] },
    subject: [{ reference: 'Patient/p2' }, { reference: 'Patient/p3' }],
    valueQuantity: [{ value: 1 }, { value: 2 }],
    valueCodeableConcept: { coding: [{ code: 'q', display: true }] },
    component: [{ code: { coding: [{ code: 'c2' }, { code: 'c3' }] }, valueInteger: 5 }, { valueBoolean: false }],
  },
];

const paths = [
  'getResourceKey()',
  "'literal'",
  '$this.id',
  'first().id',
  'id',
  'code.coding.first().code',
  'code.coding.code',
  'code.coding.first().display',
  'code.first().coding.first().code',
  'category.first().coding.first().code',
  'category.coding.first().code',
  'category.coding.code',
  'subject.getReferenceKey(Patient)',
  'subject.getReferenceKey()',
  'subject.getReferenceKey(Group)',
  'encounter.getReferenceKey(Encounter).first()',
  'performer.getReferenceKey(Practitioner).first()',
  'performer.getReferenceKey()',
  'value.ofType(Quantity).value',
  'value.ofType(Quantity).value.value',
  'value.ofType(Quantity).code',
  'value.ofType(string)',
  'value.ofType(CodeableConcept).coding.first().display',
  'value',
  'effective.ofType(dateTime)',
  'effective.ofType(Period).start',
  'component.value.ofType(string)',
  'component.code.coding.first().code',
  'Observation.code.coding.first().code',
];

/** A view of one column on path, stored as sqlType (jsonb by its ANSI tag; text untyped). */
function view(path: string, options: { collection?: boolean; sqlType: SqlType }): unknown {
  const tag = options.sqlType === 'jsonb' ? [{ name: 'ansi/type', value: 'JSON' }] : [];
  return { resourceType: 'ViewDefinition', resource: 'Observation', select: [{ column: [{ name: 'c', path, tag, ...(options.collection ? { collection: true } : {}) }] }] };
}

/** The column value by the closures: the path evaluated, then one value converted, as columnValue would. */
function expected(path: string, resource: unknown, collection: boolean, sqlType: SqlType): unknown {
  const result = compileFhirPath(path).evaluate([resource], { resource, rowIndex: 0 });
  if (collection) return result.map(toPlainJson);
  if (result.length === 0) return null;
  if (result.length > 1) return new Error(`column c: gave ${result.length} values; set "collection": true or pick one (first(), where(...))`);
  try {
    return toColumnValue(result[0], sqlType, true);
  } catch (err) {
    return new Error(`column c: ${(err as Error).message}`);
  }
}

function actual(path: string, resource: unknown, collection: boolean, sqlType: SqlType): unknown {
  try {
    return compileView(view(path, { collection, sqlType })).evaluate(resource)[0]!.c;
  } catch (err) {
    return new Error((err as Error).message);
  }
}

describe('generated rows give what the closures give', () => {
  for (const path of paths) {
    it(path, () => {
      for (const resource of observations) {
        for (const [collection, sqlType] of [[true, 'jsonb'], [false, 'jsonb'], [false, 'text']] as const) {
          expect(actual(path, resource, collection, sqlType), `${String(resource.id)} ${sqlType}${collection ? ' collection' : ''}`).toEqual(
            expected(path, resource, collection, sqlType),
          );
        }
      }
    });
  }
});

describe('generated select tree', () => {
  it('builds the product of nested selects, forEach, forEachOrNull and unionAll, with %rowIndex', () => {
    const compiled = compileView({
      resourceType: 'ViewDefinition',
      resource: 'Observation',
      select: [
        { column: [{ name: 'id', path: 'getResourceKey()' }] },
        {
          forEachOrNull: 'component',
          column: [{ name: 'component_index', path: '%rowIndex' }],
          select: [{ forEachOrNull: 'code.coding', column: [{ name: 'component_code', path: 'code' }] }],
        },
        {
          unionAll: [
            { forEach: 'category.coding', column: [{ name: 'element', path: "'category'" }, { name: 'code', path: 'code' }] },
            { column: [{ name: 'element', path: "'code'" }, { name: 'code', path: 'code.coding.first().code' }] },
          ],
        },
      ],
    });
    expect(compiled.evaluate(observations[0])).toEqual([
      { id: 'o1', component_index: 0, component_code: 'c1', element: 'category', code: 'x' },
      { id: 'o1', component_index: 0, component_code: 'c1', element: 'category', code: 'y' },
      { id: 'o1', component_index: 0, component_code: 'c1', element: 'code', code: 'a' },
    ]);
    expect(compiled.evaluate(observations[1])).toEqual([
      { id: null, component_index: 0, component_code: null, element: 'category', code: 'z' },
      { id: null, component_index: 0, component_code: null, element: 'code', code: null },
    ]);
    expect(compiled.evaluate(observations[2]).map((r) => [r.component_index, r.component_code])).toEqual([
      [0, 'c2'],
      [0, 'c3'],
      [1, null],
    ]);
  });

  it('gives no rows when a forEach gives none, without evaluating the selects after it', () => {
    const compiled = compileView({
      resourceType: 'ViewDefinition',
      resource: 'Observation',
      select: [
        { forEach: 'note', column: [{ name: 'note', path: 'text' }] },
        { column: [{ name: 'codes', path: 'code.coding.code' }] },
      ],
    });
    expect(compiled.evaluate(observations[0])).toEqual([]);
  });
});

describe('generated iterators give the items the closures give', () => {
  const iterators = [
    'code.coding',
    'category.coding',
    'component',
    'component.code.coding',
    'value.ofType(CodeableConcept).coding',
    'value.ofType(string)',
    'component.value.ofType(string)',
    'Observation.category',
    'code.first().coding',
  ];
  for (const path of iterators) {
    it(path, () => {
      for (const resource of observations) {
        const items = compileFhirPath(path).evaluate([resource], { resource, rowIndex: 0 }).map(toPlainJson);
        for (const iterator of ['forEach', 'forEachOrNull']) {
          const compiled = compileView({
            resourceType: 'ViewDefinition',
            resource: 'Observation',
            select: [{ [iterator]: path, column: [{ name: 'item', path: '$this', tag: [{ name: 'ansi/type', value: 'JSON' }] }] }],
          });
          const expected = items.length === 0 && iterator === 'forEachOrNull' ? [null] : items;
          expect(compiled.evaluate(resource).map((r) => r.item), `${String(resource.id)} ${iterator}`).toEqual(expected);
        }
      }
    });
  }
});

describe('names every JavaScript object inherits', () => {
  // toString() is a FHIRPath function of its own, so only the member is tested for it.
  const inherited = ['constructor', '__proto__', 'hasOwnProperty', 'valueOf', 'toString'];

  for (const name of inherited) {
    it(`member ${name} is absent in the closures and the generated rows${name === 'toString' ? '' : `, and ${name}() is an unknown function`}`, () => {
      for (const path of [name, `code.${name}`, `code.coding.first().${name}`, `${name}.ofType(string)`, `code.where(true).${name}`]) {
        for (const resource of observations) {
          expect(compileFhirPath(path).evaluate([resource], { resource, rowIndex: 0 }), path).toEqual([]);
          for (const [collection, sqlType] of [[true, 'jsonb'], [false, 'text']] as const) {
            expect(actual(path, resource, collection, sqlType), `${path} ${sqlType}`).toEqual(collection ? [] : null);
          }
        }
        const each = compileView({ resourceType: 'ViewDefinition', resource: 'Observation', select: [{ forEach: path, column: [{ name: 'id', path: 'id' }] }] });
        expect(each.evaluate(observations[0]), `forEach ${path}`).toEqual([]);
      }
      if (name === 'toString') return;
      expect(() => compileFhirPath(`${name}()`)).toThrow(`unknown function '${name}'`);
      expect(() => compileFhirPath(`code.${name}()`)).toThrow(`unknown function '${name}'`);
      expect(() => compileFhirPath(`%${name}`)).toThrow(`unknown constant '%${name}'`);
    });
  }
});
