/**
 * Evaluation of a compiled ViewDefinition on one resource: where filters, then the select tree
 * (forEach, forEachOrNull, repeat, nested select as a cross product, unionAll as a concatenation),
 * producing rows with their values converted to the column types.
 */
import { CarepipeError } from '../../errors.js';
import { FhirPathEvaluationError, MANY_ITEMS, NO_ITEM, type Collection, type EvaluationContext } from './fhirpath.js';
import type { ColumnPlan, SelectPlan, ViewPlan } from './definition.js';
import { isLosslessNumber } from 'lossless-json';
import { ColumnTypeError, toColumnValue, toPlainJson } from './types.js';

type Row = unknown[];

/** FHIR primitive types written as JSON strings. */
const JSON_STRING_TYPES = new Set(['string', 'code', 'id', 'uri', 'url', 'canonical', 'oid', 'uuid', 'markdown', 'date', 'dateTime', 'time', 'instant', 'base64Binary']);

/** Returns a function giving the rows of the view for one resource (none when the resource is of another type). */
export function rowEvaluator(plan: ViewPlan): (resource: unknown) => Record<string, unknown>[] {
  // Column names are SQL identifiers, checked unique when the view was compiled: a record is an
  // object literal of a fixed shape, which V8 builds much faster than one filled key by key.
  const fields = plan.columns.map((c, i) => `${JSON.stringify(c.name)}: row[${i}]`).join(', ');
  const toRecord = new Function('row', `return { ${fields} };`) as (row: Row) => Record<string, unknown>;
  return (resource) => {
    if (resource === null || typeof resource !== 'object' || (resource as { resourceType?: unknown }).resourceType !== plan.resource) {
      return [];
    }
    const context: EvaluationContext = { resource, rowIndex: 0 };
    const input = [resource];
    for (const where of plan.where) {
      if (!passes(where.expression.evaluate, where.expression.expression, where.location, input, context)) return [];
    }
    const rows = evaluateSelect(plan.root, input, context);
    const records: Record<string, unknown>[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) records[i] = toRecord(rows[i]!);
    return records;
  };
}

function passes(
  evaluate: (input: Collection, ctx: EvaluationContext) => Collection,
  expression: string,
  location: string,
  input: Collection,
  context: EvaluationContext,
): boolean {
  let result: Collection;
  try {
    result = evaluate(input, context);
  } catch (err) {
    throw recordError(err, location);
  }
  if (result.length === 0) return false;
  if (result.length === 1 && typeof result[0] === 'boolean') return result[0];
  // The view is wrong, not the resource: a where path must give a boolean.
  throw new CarepipeError('VIEW_INVALID', `${location}: must give a boolean, '${expression}' gave ${describe(result)}`, { field: location });
}

function describe(result: Collection): string {
  if (result.length > 1) return `${result.length} items`;
  const v = result[0];
  return v !== null && typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** An evaluation problem of one resource → RECORD_INVALID naming the column (or view element). */
function recordError(err: unknown, field: string): unknown {
  if (err instanceof FhirPathEvaluationError || err instanceof ColumnTypeError) {
    return new CarepipeError('RECORD_INVALID', `column ${field}: ${err.message}`, { field }, { cause: err });
  }
  return err;
}

/**
 * Rows of one select for one node. `input` is the node as a collection: one item, or none for the
 * null row of a forEachOrNull over an empty collection.
 */
function evaluateSelect(select: SelectPlan, input: Collection, context: EvaluationContext): Row[] {
  const iterator = select.forEach ?? select.forEachOrNull;
  if (!iterator && !select.repeat) return evaluateBody(select, input, context);

  let foci: Collection;
  try {
    foci = iterator ? iterator.evaluate(input, context) : repeatFoci(select.repeat!.map((r) => r.evaluate), input, context);
  } catch (err) {
    throw recordError(err, `${select.location}.${select.forEach ? 'forEach' : select.forEachOrNull ? 'forEachOrNull' : 'repeat'}`);
  }
  const parentIndex = context.rowIndex;
  try {
    if (foci.length === 0) {
      if (!select.forEachOrNull) return [];
      context.rowIndex = 0;
      const rows = evaluateBody(select, [], context);
      return rows.length ? rows : [new Array(select.allColumns.length).fill(null)];
    }
    const rows: Row[] = [];
    // A select of columns only (the common forEach) gives one row per item: no list of rows each.
    const columnsOnly = select.select.length === 0 && select.unionAll.length === 0;
    for (let i = 0; i < foci.length; i++) {
      context.rowIndex = i;
      if (columnsOnly) rows.push(ownRow(select, [foci[i]], context));
      else for (const row of evaluateBody(select, [foci[i]], context)) rows.push(row);
    }
    return rows;
  } finally {
    context.rowIndex = parentIndex;
  }
}

/** Depth-first, pre-order: each item, then what the repeat paths give from it. */
function repeatFoci(paths: ((input: Collection, ctx: EvaluationContext) => Collection)[], input: Collection, context: EvaluationContext): Collection {
  const out: unknown[] = [];
  const visit = (node: Collection): void => {
    for (const path of paths) {
      for (const child of path(node, context)) {
        out.push(child);
        visit([child]);
      }
    }
  };
  visit(input);
  return out;
}

function ownRow(select: SelectPlan, input: Collection, context: EvaluationContext): Row {
  const columns = select.columns;
  const own: Row = new Array(columns.length);
  for (let i = 0; i < columns.length; i++) own[i] = columnValue(columns[i]!, input, context);
  return own;
}

function evaluateBody(select: SelectPlan, input: Collection, context: EvaluationContext): Row[] {
  let rows: Row[] = [ownRow(select, input, context)];
  for (const nested of select.select) {
    rows = product(rows, evaluateSelect(nested, input, context));
    if (rows.length === 0) return rows;
  }
  if (select.unionAll.length) {
    const union: Row[] = [];
    for (const branch of select.unionAll) for (const row of evaluateSelect(branch, input, context)) union.push(row);
    rows = product(rows, union);
  }
  return rows;
}

function product(left: Row[], right: Row[]): Row[] {
  // A select without columns of its own (the root, most often) adds nothing to the rows under it.
  if (left.length === 1 && left[0]!.length === 0) return right;
  if (left.length === 1 && right.length === 1) return [left[0]!.concat(right[0])];
  const out: Row[] = [];
  for (const l of left) for (const r of right) out.push(l.concat(r));
  return out;
}

function columnValue(plan: ColumnPlan, input: Collection, context: EvaluationContext): unknown {
  const { column } = plan;
  try {
    const expression = plan.expression;
    let value: unknown = MANY_ITEMS;
    if (expression.evaluateItem && input.length === 1) value = expression.evaluateItem(input[0]);
    if (value === NO_ITEM) return column.collection ? [] : null;
    if (value === MANY_ITEMS) {
      const result = expression.evaluate(input, context);
      if (column.collection) return result.map(toPlainJson);
      if (result.length === 0) return null;
      if (result.length > 1) {
        throw new ColumnTypeError(`gave ${result.length} values; set "collection": true or pick one (first(), where(...))`);
      }
      value = result[0];
    } else if (column.collection) return [toPlainJson(value)];
    // A declared type whose JSON form is a string (date, code, …) does not take a JSON number or boolean.
    if (column.fhirType && JSON_STRING_TYPES.has(column.fhirType) && (typeof value === 'number' || typeof value === 'boolean' || isLosslessNumber(value))) {
      throw new ColumnTypeError(`expected a ${column.fhirType} (a JSON string), got a ${typeof value === 'boolean' ? 'boolean' : 'number'}`);
    }
    return toColumnValue(value, column.sqlType, plan.untyped);
  } catch (err) {
    throw recordError(err, column.name);
  }
}
