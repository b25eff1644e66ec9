/**
 * Parsing and validation of a SQL on FHIR v2 ViewDefinition into a plan of compiled FHIRPath
 * expressions. Every problem is reported as VIEW_INVALID with the path of the bad element, for
 * example `select[1].column[0].path: unknown function 'foo'`.
 */
import { CarepipeError } from '../../errors.js';
import { compileFhirPath, type CompiledFhirPath } from './fhirpath/compiler.js';
import { FhirPathCompileError, type Collection } from './fhirpath/values.js';
import { sqlTypeOf, sqlTypeOfAnsi, SUPPORTED_ANSI_TYPES, type SqlType } from './types.js';

/** A column of the view's table, in column order. */
export interface ViewColumn {
  name: string;
  /** The FHIRPath expression of the column. */
  path: string;
  /** The declared `type`, else the type the expression alone gives (`exists()` → boolean), if any. */
  fhirType?: string;
  sqlType: SqlType;
  collection: boolean;
  description?: string;
}

export interface ColumnPlan {
  column: ViewColumn;
  expression: CompiledFhirPath;
  /** No declared type or ansi/type tag: primitives are stored in their string form. */
  untyped: boolean;
}

/** One `select` element, compiled. */
export interface SelectPlan {
  /** Where it is in the ViewDefinition, for messages: `select[0].select[1]`. */
  location: string;
  forEach?: CompiledFhirPath;
  forEachOrNull?: CompiledFhirPath;
  repeat?: CompiledFhirPath[];
  columns: ColumnPlan[];
  select: SelectPlan[];
  unionAll: SelectPlan[];
  /** Every column this select produces, in order: its own, its selects', then its unionAll's. */
  allColumns: ViewColumn[];
}

export interface WherePlan {
  location: string;
  expression: CompiledFhirPath;
}

/** A validated ViewDefinition. */
export interface ViewPlan {
  name: string;
  resource: string;
  columns: ViewColumn[];
  where: WherePlan[];
  /** The view's top-level `select` list, as the select of an implicit root. */
  root: SelectPlan;
}

/** The `value[x]` types a constant may have, with the JSON type each needs. */
const CONSTANT_TYPES: Record<string, 'string' | 'boolean' | 'integer' | 'number'> = {
  valueBase64Binary: 'string',
  valueBoolean: 'boolean',
  valueCanonical: 'string',
  valueCode: 'string',
  valueDate: 'string',
  valueDateTime: 'string',
  valueDecimal: 'number',
  valueId: 'string',
  valueInstant: 'string',
  valueInteger: 'integer',
  valueInteger64: 'string',
  valueOid: 'string',
  valueString: 'string',
  valuePositiveInt: 'integer',
  valueTime: 'string',
  valueUnsignedInt: 'integer',
  valueUri: 'string',
  valueUrl: 'string',
  valueUuid: 'string',
};

const SQL_NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const RESOURCE_NAME = /^[A-Z][A-Za-z]+$/;
const VIEW_KEYS = new Set([
  'resourceType', 'id', 'meta', 'implicitRules', 'language', 'text', 'contained', 'extension', 'modifierExtension',
  'url', 'identifier', 'version', 'name', 'title', 'meta', 'status', 'experimental', 'publisher', 'contact',
  'description', 'useContext', 'copyright', 'resource', 'fhirVersion', 'constant', 'select', 'where',
]);
const SELECT_KEYS = new Set(['id', 'extension', 'modifierExtension', 'column', 'select', 'forEach', 'forEachOrNull', 'repeat', 'unionAll']);
const COLUMN_KEYS = new Set(['id', 'extension', 'modifierExtension', 'name', 'path', 'description', 'collection', 'type', 'tag']);

type Json = Record<string, unknown>;

class ViewValidator {
  private readonly constants = new Map<string, Collection>();

  constructor(private readonly source: string | undefined) {}

  fail(location: string, message: string): never {
    throw new CarepipeError('VIEW_INVALID', location ? `${location}: ${message}` : message, this.source ? { file: this.source } : {});
  }

  object(value: unknown, location: string): Json {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) this.fail(location, 'expected an object');
    return value as Json;
  }

  list(value: unknown, location: string): unknown[] {
    if (value === undefined) return [];
    if (!Array.isArray(value)) this.fail(location, 'expected a list');
    return value;
  }

  string(value: unknown, location: string): string {
    if (typeof value !== 'string' || value.trim() === '') this.fail(location, 'expected a non-empty string');
    return value;
  }

  knownKeys(obj: Json, allowed: Set<string>, location: string): void {
    for (const key of Object.keys(obj)) {
      if (!allowed.has(key)) this.fail(location ? `${location}.${key}` : key, 'unknown element');
    }
  }

  expression(value: unknown, location: string): CompiledFhirPath {
    const text = this.string(value, location);
    try {
      return compileFhirPath(text, { constants: this.constants });
    } catch (err) {
      if (err instanceof FhirPathCompileError) this.fail(location, err.message);
      throw err;
    }
  }

  view(definition: unknown): ViewPlan {
    const view = this.object(definition, '');
    this.knownKeys(view, VIEW_KEYS, '');
    if (view.resourceType !== undefined && view.resourceType !== 'ViewDefinition') {
      this.fail('resourceType', "expected 'ViewDefinition'");
    }
    if (view.resource === undefined) this.fail('resource', 'missing: name the FHIR resource type the view reads');
    const resource = this.string(view.resource, 'resource');
    if (!RESOURCE_NAME.test(resource)) this.fail('resource', `'${resource}' is not a FHIR resource type name`);

    let name = resource.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
    if (view.name !== undefined) {
      name = this.string(view.name, 'name');
      if (!SQL_NAME.test(name) || name.length > 63) this.fail('name', `'${name}' is not a database-friendly name (letters, digits, _; at most 63)`);
    }

    this.list(view.constant, 'constant').forEach((c, i) => this.constant(c, `constant[${i}]`));

    if (view.select === undefined) this.fail('select', 'missing: a view needs at least one select');
    const selects = this.list(view.select, 'select');
    if (selects.length === 0) this.fail('select', 'a view needs at least one select');
    const root = this.selectList(selects, 'select');

    const where = this.list(view.where, 'where').map((w, i): WherePlan => {
      const location = `where[${i}]`;
      const obj = this.object(w, location);
      this.knownKeys(obj, new Set(['id', 'extension', 'path', 'description']), location);
      const expression = this.expression(obj.path, `${location}.path`);
      if (expression.type !== undefined && expression.type !== 'boolean') {
        this.fail(`${location}.path`, `must give a boolean, '${expression.expression}' gives ${expression.type}`);
      }
      return { location: `${location}.path`, expression };
    });

    const seen = new Set<string>();
    for (const column of root.allColumns) {
      if (seen.has(column.name)) this.fail('select', `column name '${column.name}' is used twice`);
      seen.add(column.name);
    }
    if (root.allColumns.length === 0) this.fail('select', 'the view has no columns');
    return { name, resource, columns: root.allColumns, where, root };
  }

  constant(value: unknown, location: string): void {
    const obj = this.object(value, location);
    const name = this.string(obj.name, `${location}.name`);
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name)) this.fail(`${location}.name`, `'${name}' is not a valid constant name`);
    if (this.constants.has(name)) this.fail(`${location}.name`, `constant '${name}' is defined twice`);
    const valueKeys = Object.keys(obj).filter((k) => k.startsWith('value'));
    if (valueKeys.length !== 1) this.fail(location, `needs exactly one value[x] element, found ${valueKeys.length}`);
    const key = valueKeys[0]!;
    const expected = Object.hasOwn(CONSTANT_TYPES, key) ? CONSTANT_TYPES[key] : undefined;
    if (!expected) this.fail(`${location}.${key}`, 'not a constant type of SQL on FHIR');
    const v = obj[key];
    const ok =
      expected === 'integer' ? Number.isInteger(v) : expected === 'number' ? typeof v === 'number' : typeof v === expected;
    if (!ok) this.fail(`${location}.${key}`, `expected ${expected === 'integer' ? 'an integer' : `a ${expected}`}`);
    this.constants.set(name, [v]);
  }

  selectList(items: unknown[], location: string): SelectPlan {
    const select = items.map((s, i) => this.select(s, `${location}[${i}]`));
    return { location: '', columns: [], select, unionAll: [], allColumns: select.flatMap((s) => s.allColumns) };
  }

  select(value: unknown, location: string): SelectPlan {
    const obj = this.object(value, location);
    this.knownKeys(obj, SELECT_KEYS, location);
    const iterators = ['forEach', 'forEachOrNull', 'repeat'].filter((k) => obj[k] !== undefined);
    if (iterators.length > 1) this.fail(location, `use only one of ${iterators.join(', ')}`);

    const plan: SelectPlan = { location, columns: [], select: [], unionAll: [], allColumns: [] };
    if (obj.forEach !== undefined) plan.forEach = this.expression(obj.forEach, `${location}.forEach`);
    if (obj.forEachOrNull !== undefined) plan.forEachOrNull = this.expression(obj.forEachOrNull, `${location}.forEachOrNull`);
    if (obj.repeat !== undefined) {
      const paths = this.list(obj.repeat, `${location}.repeat`);
      if (paths.length === 0) this.fail(`${location}.repeat`, 'needs at least one path');
      plan.repeat = paths.map((p, i) => this.expression(p, `${location}.repeat[${i}]`));
    }

    plan.columns = this.list(obj.column, `${location}.column`).map((c, i) => this.column(c, `${location}.column[${i}]`));
    plan.select = this.list(obj.select, `${location}.select`).map((s, i) => this.select(s, `${location}.select[${i}]`));
    plan.unionAll = this.list(obj.unionAll, `${location}.unionAll`).map((s, i) => this.select(s, `${location}.unionAll[${i}]`));

    const unionColumns = plan.unionAll[0]?.allColumns ?? [];
    const names = unionColumns.map((c) => c.name).join(', ');
    plan.unionAll.forEach((branch, i) => {
      const branchNames = branch.allColumns.map((c) => c.name).join(', ');
      if (branchNames !== names) {
        this.fail(`${location}.unionAll[${i}]`, `columns (${branchNames}) differ from those of unionAll[0] (${names}); every branch needs the same columns in the same order`);
      }
    });
    plan.allColumns = [...plan.columns.map((c) => c.column), ...plan.select.flatMap((s) => s.allColumns), ...unionColumns];
    if (plan.allColumns.length === 0) this.fail(location, 'has no column, select or unionAll');
    return plan;
  }

  column(value: unknown, location: string): ColumnPlan {
    const obj = this.object(value, location);
    this.knownKeys(obj, COLUMN_KEYS, location);
    const name = this.string(obj.name, `${location}.name`);
    if (!SQL_NAME.test(name) || name.length > 63) {
      this.fail(`${location}.name`, `'${name}' is not a database-friendly name (letters, digits, _; at most 63)`);
    }
    const expression = this.expression(obj.path, `${location}.path`);
    if (obj.collection !== undefined && typeof obj.collection !== 'boolean') this.fail(`${location}.collection`, 'expected true or false');
    const collection = obj.collection === true;
    let declared: string | undefined;
    if (obj.type !== undefined) {
      declared = this.string(obj.type, `${location}.type`);
      if (!/^[A-Za-z][A-Za-z0-9]*$/.test(declared)) this.fail(`${location}.type`, `'${declared}' is not a FHIR type name`);
    }
    if (obj.description !== undefined && typeof obj.description !== 'string') this.fail(`${location}.description`, 'expected a string');

    let ansi: SqlType | undefined;
    this.list(obj.tag, `${location}.tag`).forEach((t, i) => {
      const tag = this.object(t, `${location}.tag[${i}]`);
      const tagName = this.string(tag.name, `${location}.tag[${i}].name`);
      const tagValue = this.string(tag.value, `${location}.tag[${i}].value`);
      if (tagName !== 'ansi/type') return;
      ansi = sqlTypeOfAnsi(tagValue);
      if (!ansi) this.fail(`${location}.tag[${i}].value`, `'${tagValue}' is not an ANSI type carepipe stores (${SUPPORTED_ANSI_TYPES.join(', ')})`);
    });

    const fhirType = declared ?? expression.type;
    const sqlType: SqlType = collection ? 'jsonb' : (ansi ?? sqlTypeOf(fhirType, declared !== undefined));
    const column: ViewColumn = {
      name,
      path: expression.expression,
      ...(fhirType ? { fhirType } : {}),
      sqlType,
      collection,
      ...(typeof obj.description === 'string' ? { description: obj.description } : {}),
    };
    return { column, expression, untyped: declared === undefined && ansi === undefined && expression.type === undefined };
  }
}

/** Validates a ViewDefinition and compiles its expressions; throws CarepipeError VIEW_INVALID. */
export function planView(definition: unknown, source?: string): ViewPlan {
  return new ViewValidator(source).view(definition);
}
