/**
 * Evaluation of a compiled ViewDefinition on one resource: where filters, then the select tree
 * (forEach, forEachOrNull, repeat, nested select as a cross product, unionAll as a concatenation),
 * producing rows with their values converted to the column types. The select tree runs as the
 * function codegen.ts generates for the view; the closure evaluator here does what it leaves out.
 */
import { CarepipeError } from '../../errors.js';
import { FhirPathEvaluationError, MANY_ITEMS, NO_ITEM, type Collection, type EvaluationContext } from './fhirpath/values.js';
import type { ColumnPlan, SelectPlan, ViewPlan } from './definition.js';
import { isLosslessNumber } from 'lossless-json';
import { generateRows, type Row, type RowRuntime } from './codegen.js';
import { ColumnTypeError, toColumnValue, toPlainJson } from './types.js';

/** FHIR primitive types written as JSON strings. */
const JSON_STRING_TYPES = new Set(['string', 'code', 'id', 'uri', 'url', 'canonical', 'oid', 'uuid', 'markdown', 'date', 'dateTime', 'time', 'instant', 'base64Binary']);

/** What the generated rows functions leave to the closures. */
const RUNTIME: RowRuntime = { columnValue, storedValue, focusesOf, nullRows };

/** Returns a function giving the rows of the view for one resource (none when the resource is of another type). */
export function rowEvaluator(plan: ViewPlan): (resource: unknown) => Record<string, unknown>[] {
  const rowsOf = generateRows(plan.root, RUNTIME);
  return (resource) => {
    if (resource === null || typeof resource !== 'object' || (resource as { resourceType?: unknown }).resourceType !== plan.resource) {
      return [];
    }
    const context: EvaluationContext = { resource, rowIndex: 0 };
    const input = [resource];
    for (const where of plan.where) {
      if (!passes(where.expression.evaluate, where.expression.expression, where.location, input, context)) return [];
    }
    return rowsOf(resource, context);
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
  if (!select.forEach && !select.forEachOrNull && !select.repeat) return evaluateBody(select, input, context);
  const foci = focusesOf(select, input, context);
  if (foci.length === 0) return select.forEachOrNull ? nullRows(select, context) : [];
  const parentIndex = context.rowIndex;
  try {
    const rows: Row[] = [];
    for (let i = 0; i < foci.length; i++) {
      context.rowIndex = i;
      for (const row of evaluateBody(select, [foci[i]], context)) rows.push(row);
    }
    return rows;
  } finally {
    context.rowIndex = parentIndex;
  }
}

/** The items a forEach, forEachOrNull or repeat select iterates over. */
function focusesOf(select: SelectPlan, input: Collection, context: EvaluationContext): Collection {
  const iterator = select.forEach ?? select.forEachOrNull;
  try {
    return iterator ? iterator.evaluate(input, context) : repeatFoci(select.repeat!.map((r) => r.evaluate), input, context);
  } catch (err) {
    throw recordError(err, `${select.location}.${select.forEach ? 'forEach' : select.forEachOrNull ? 'forEachOrNull' : 'repeat'}`);
  }
}

/** The rows of a forEachOrNull over an empty collection: its body on no item (%rowIndex 0), else one row of nulls. */
function nullRows(select: SelectPlan, context: EvaluationContext): Row[] {
  const parentIndex = context.rowIndex;
  context.rowIndex = 0;
  try {
    const rows = evaluateBody(select, [], context);
    return rows.length ? rows : [new Array(select.allColumns.length).fill(null)];
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

/** The value a column stores, its path evaluated by the compiled closures. */
function columnValue(plan: ColumnPlan, input: Collection, context: EvaluationContext): unknown {
  const { column } = plan;
  let value: unknown = MANY_ITEMS;
  try {
    const expression = plan.expression;
    if (expression.evaluateItem && input.length === 1) value = expression.evaluateItem(input[0]);
    if (value === MANY_ITEMS) {
      const result = expression.evaluate(input, context);
      if (column.collection) return result.map(toPlainJson);
      if (result.length === 0) return null;
      if (result.length > 1) {
        throw new ColumnTypeError(`gave ${result.length} values; set "collection": true or pick one (first(), where(...))`);
      }
      value = result[0];
    }
  } catch (err) {
    throw recordError(err, column.name);
  }
  return storedValue(plan, value);
}

/** The value a column stores for the one item its path gave (NO_ITEM: none). */
function storedValue(plan: ColumnPlan, value: unknown): unknown {
  const { column } = plan;
  if (value === NO_ITEM) return column.collection ? [] : null;
  if (column.collection) return [toPlainJson(value)];
  try {
    // A declared type whose JSON form is a string (date, code, …) does not take a JSON number or boolean.
    if (column.fhirType && JSON_STRING_TYPES.has(column.fhirType) && (typeof value === 'number' || typeof value === 'boolean' || isLosslessNumber(value))) {
      throw new ColumnTypeError(`expected a ${column.fhirType} (a JSON string), got a ${typeof value === 'boolean' ? 'boolean' : 'number'}`);
    }
    return toColumnValue(value, column.sqlType, plan.untyped);
  } catch (err) {
    throw recordError(err, column.name);
  }
}
