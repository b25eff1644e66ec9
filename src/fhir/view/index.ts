/**
 * carepipe's SQL on FHIR v2 ViewDefinition engine: validate a ViewDefinition, compile its FHIRPath
 * once to JavaScript closures, then turn each resource into rows typed per the view's columns.
 *
 *   const view = compileView(json, { source: 'views/patient.json' });
 *   for (const row of view.evaluate(patient)) ...
 */
import { readFileSync } from 'node:fs';
import { CarepipeError } from '../../errors.js';
import { exceedsJsonDepth, tooDeepMessage } from '../../io/json-limits.js';
import { planView, type ViewColumn } from './definition.js';
import { rowEvaluator } from './evaluate.js';

export type { SqlType } from './types.js';
export type { ViewColumn } from './definition.js';

/** A ViewDefinition ready to evaluate. */
export interface CompiledView {
  /** ViewDefinition.name (a SQL-safe identifier), or the resource type in snake case when absent. */
  name: string;
  /** The resource type the view reads, e.g. 'Patient'. */
  resource: string;
  /** The columns, in column order. */
  columns: ViewColumn[];
  /**
   * Rows for one resource, keys in column order, values as FHIR JSON has them: a decimal as a
   * LosslessNumber with its digits, a date or dateTime as its original string (partial ones too);
   * null for an empty value; collection columns as JS arrays. No rows for a resource of another
   * type or one the where filters leave out. Throws
   * CarepipeError RECORD_INVALID (context.field = the column) when a value does not fit its column.
   */
  evaluate(resource: unknown): Record<string, unknown>[];
}

/** Validates and compiles a ViewDefinition; throws CarepipeError VIEW_INVALID naming the bad element. */
export function compileView(definition: unknown, options: { source?: string } = {}): CompiledView {
  const plan = planView(definition, options.source);
  return { name: plan.name, resource: plan.resource, columns: plan.columns, evaluate: rowEvaluator(plan) };
}

/** Reads a ViewDefinition JSON file and compiles it. */
export function loadViewFile(file: string): CompiledView {
  return readViewFile(file).view;
}

/** Reads a ViewDefinition JSON file: the definition as parsed, and compiled. */
export function readViewFile(file: string): { definition: unknown; view: CompiledView } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CarepipeError('INPUT_NOT_FOUND', `cannot read view ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file });
  }
  let definition: unknown;
  try {
    definition = JSON.parse(text);
  } catch (err) {
    throw new CarepipeError('VIEW_INVALID', `not JSON: ${(err as Error).message}`, { file });
  }
  // Compiling walks the definition recursively.
  if (exceedsJsonDepth(definition)) throw new CarepipeError('VIEW_INVALID', `${tooDeepMessage()}: not a ViewDefinition`, { file });
  return { definition, view: compileView(definition, { source: file }) };
}
