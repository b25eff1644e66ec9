/**
 * FHIRPath compiler: each expression is parsed and turned ONCE into a tree of JavaScript closures
 * that do plain property access on the resource; evaluating a resource runs no interpreter and walks
 * no syntax tree. Values, navigation and the function library are in values.ts, paths.ts and
 * functions.ts; this module compiles literals, variables, member paths, calls and operators.
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';
import { FUNCTIONS, type Compiled } from './functions.js';
import { FhirPathSyntaxError, parseFhirPath, type Node } from './parser.js';
import { itemOfPath, pathMember, pathSteps, runPath, type PathMember, type PathSegment } from './paths.js';
import {
  arithmetic,
  bool,
  compare,
  describeValue,
  EMPTY,
  equality,
  equivalence,
  FALSE,
  FhirPathCompileError,
  FhirPathEvaluationError,
  identity,
  MANY_ITEMS,
  membership,
  NO_ITEM,
  numberValue,
  single,
  toBoolean,
  TRUE,
  union,
  type Collection,
  type Evaluator,
} from './values.js';

/** A compiled FHIRPath expression. */
export interface CompiledFhirPath {
  expression: string;
  /** The syntax tree, for the code generator of codegen.ts. */
  tree: Node;
  evaluate: Evaluator;
  /** The FHIR or System type of every item, when the expression alone tells it (`exists()` → boolean). */
  type?: string;
  /**
   * The same on a single input item, when the expression is a plain path: the one item it gives,
   * NO_ITEM for none, or MANY_ITEMS when there may be more than one (then call evaluate).
   * Saves the collections of the common case, a path that gives one value.
   */
  evaluateItem?: (item: unknown) => unknown;
}

export interface CompileOptions {
  /** %name → value, from ViewDefinition.constant. */
  constants?: ReadonlyMap<string, Collection>;
}

/** Compiles a FHIRPath expression; throws FhirPathCompileError with a one-line reason. */
export function compileFhirPath(expression: string, options: CompileOptions = {}): CompiledFhirPath {
  let tree: Node;
  try {
    tree = parseFhirPath(expression);
  } catch (err) {
    if (err instanceof FhirPathSyntaxError) throw new FhirPathCompileError(`${err.message} at offset ${err.position}`);
    throw err;
  }
  const compiled = new Compiler(options.constants ?? new Map()).compile(tree);
  return {
    expression,
    tree,
    evaluate: compiled.fn,
    ...(compiled.type ? { type: compiled.type } : {}),
    ...(compiled.item ? { evaluateItem: compiled.item } : {}),
  };
}

/** `table[name]` when the table itself defines it, never what it inherits. */
function ownEntry<T>(table: Record<string, T>, name: string): T | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

/** FHIRPath environment variables every expression may use, besides the view's constants. */
const CODE_SYSTEMS: Record<string, string> = {
  ucum: 'http://unitsofmeasure.org',
  sct: 'http://snomed.info/sct',
  loinc: 'http://loinc.org',
};

class Compiler {
  constructor(private readonly constants: ReadonlyMap<string, Collection>) {}

  compile(node: Node): Compiled {
    switch (node.kind) {
      case 'literal': {
        const value = node.type === 'decimal' ? new LosslessNumber(node.value as string) : node.value;
        const result = [value];
        return { fn: () => result, item: () => value, type: node.type };
      }
      case 'empty':
        return { fn: () => EMPTY };
      case 'this':
        return { fn: identity };
      case 'index':
        return { fn: (_input, ctx) => (ctx.index === undefined ? EMPTY : [ctx.index]), type: 'integer' };
      case 'total':
        throw new FhirPathCompileError('$total is not supported');
      case 'variable':
        return this.variable(node.name);
      case 'member':
        return this.member(node);
      case 'indexer': {
        const base = this.compile(node.base);
        const index = this.compile(node.index).fn;
        const b = base.fn;
        return {
          fn: (input, ctx) => {
            const i = numberValue(single(index(input, ctx), 'indexer'));
            if (i === undefined) return EMPTY;
            const items = b(input, ctx);
            return i >= 0 && i < items.length ? [items[i]] : EMPTY;
          },
          ...(base.type ? { type: base.type } : {}),
        };
      }
      case 'call':
        return this.call(node);
      case 'unary': {
        const operand = this.compile(node.operand);
        if (node.op === '+') return operand;
        const o = operand.fn;
        return {
          fn: (input, ctx) => {
            const v = single(o(input, ctx), "unary '-'");
            if (v === undefined) return EMPTY;
            if (isLosslessNumber(v)) {
              const text = (v as LosslessNumber).value;
              return [new LosslessNumber(text.startsWith('-') ? text.slice(1) : `-${text}`)];
            }
            if (typeof v !== 'number') throw new FhirPathEvaluationError(`unary '-' needs a number, got ${describeValue(v)}`);
            return [-v];
          },
          ...(operand.type ? { type: operand.type } : {}),
        };
      }
      case 'typeop': {
        // `x is T` is `x.is(T)`; a qualified name like FHIR.Quantity is kept whole.
        const type: Node = { kind: 'member', name: node.type };
        return this.call({ kind: 'call', base: node.operand, name: node.op, args: [type], position: 0 });
      }
      case 'binary':
        return this.binary(node.op, this.compile(node.left), this.compile(node.right));
    }
  }

  private variable(name: string): Compiled {
    if (name === 'rowIndex') return { fn: (_input, ctx) => [ctx.rowIndex], type: 'integer' };
    if (name === 'resource' || name === 'rootResource') return { fn: (_input, ctx) => [ctx.resource] };
    if (name === 'context') return { fn: (_input, ctx) => [ctx.resource] };
    const constant = this.constants.get(name);
    if (constant) return { fn: () => constant };
    const system = ownEntry(CODE_SYSTEMS, name);
    if (system) return { fn: () => [system], type: 'string' };
    throw new FhirPathCompileError(`unknown constant '%${name}'`);
  }

  private member(node: Extract<Node, { kind: 'member' }>): Compiled {
    return this.path(node);
  }

  /**
   * A chain of members and first() calls (`category.first().coding.first().code`) compiled to one
   * walk over the resource, on top of whatever precedes the chain.
   */
  private path(node: Node): Compiled {
    const { steps, inner } = pathSteps(node);
    const base = inner ? this.compile(inner) : undefined;
    const segmentsOf = (from: number): PathSegment[] => {
      const segments: PathSegment[] = [];
      let names: PathMember[] = [];
      for (let i = from; i < steps.length; i++) {
        const step = steps[i];
        if (step === null) {
          segments.push({ names, first: true });
          names = [];
        } else names.push(pathMember(step));
      }
      if (names.length) segments.push({ names, first: false });
      return segments;
    };
    const segments = segmentsOf(0);
    // first() keeps its input's type; a member's type is not known without a model.
    const type = steps.every((s) => s === null) ? base?.type : undefined;
    const typed = type ? { type } : {};
    if (base) {
      const b = base.fn;
      // A path on what gives one item is the path from that item.
      const baseItem = base.item;
      const item = baseItem
        ? (x: unknown): unknown => {
            const from = baseItem(x);
            return from === NO_ITEM || from === MANY_ITEMS ? from : itemOfPath(segments, from);
          }
        : undefined;
      return { fn: (input, ctx) => runPath(segments, b(input, ctx)), ...(item ? { item } : {}), ...typed };
    }
    const head = steps[0];
    if (typeof head === 'string' && /^[A-Z]/.test(head)) {
      // `Patient.name`: a leading type name selects the resource itself when it is of that type.
      const afterHead = segmentsOf(1);
      return {
        fn: (input) => {
          const first = input[0] as { resourceType?: unknown } | undefined;
          if (input.length === 1 && first !== null && typeof first === 'object' && first.resourceType === head) return runPath(afterHead, input);
          return runPath(segments, input);
        },
      };
    }
    return { fn: (input) => runPath(segments, input), item: (item) => itemOfPath(segments, item), ...typed };
  }

  private call(node: Extract<Node, { kind: 'call' }>): Compiled {
    const spec = ownEntry(FUNCTIONS, node.name);
    if (!spec) throw new FhirPathCompileError(`unknown function '${node.name}'`);
    if (node.args.length < spec.min || node.args.length > spec.max) {
      const expected = spec.min === spec.max ? `${spec.min}` : `${spec.min} to ${spec.max}`;
      throw new FhirPathCompileError(`${node.name}() takes ${expected} argument${spec.max === 1 ? '' : 's'}, got ${node.args.length}`);
    }
    if (node.name === 'first' && node.args.length === 0) return this.path(node);
    if (node.name === 'getResourceKey' && node.args.length === 0 && !node.base) {
      const compiled = spec.compile(this, { fn: identity }, node.args, node);
      return {
        ...compiled,
        item: (item) => {
          const id = item !== null && typeof item === 'object' ? (item as { id?: unknown }).id : undefined;
          return typeof id === 'string' ? id : NO_ITEM;
        },
      };
    }
    const base = node.base ? this.compile(node.base) : { fn: identity };
    return spec.compile(this, base, node.args, node);
  }

  private binary(op: string, left: Compiled, right: Compiled): Compiled {
    const l = left.fn;
    const r = right.fn;
    switch (op) {
      case '=':
        return { fn: (input, ctx) => equality(l(input, ctx), r(input, ctx)), type: 'boolean' };
      case '!=':
        return {
          fn: (input, ctx) => {
            const eq = equality(l(input, ctx), r(input, ctx));
            return eq.length ? bool(eq[0] !== true) : EMPTY;
          },
          type: 'boolean',
        };
      case '~':
        return { fn: (input, ctx) => bool(equivalence(l(input, ctx), r(input, ctx))), type: 'boolean' };
      case '!~':
        return { fn: (input, ctx) => bool(!equivalence(l(input, ctx), r(input, ctx))), type: 'boolean' };
      case '<':
      case '>':
      case '<=':
      case '>=':
        return { fn: (input, ctx) => compare(op, l(input, ctx), r(input, ctx)), type: 'boolean' };
      case '+':
      case '-':
      case '*':
      case '/':
      case 'div':
      case 'mod':
      case '&': {
        const integer = left.type === 'integer' && right.type === 'integer' && op !== '/';
        const type = op === '&' ? 'string' : integer ? 'integer' : left.type === 'string' ? 'string' : 'decimal';
        return { fn: (input, ctx) => arithmetic(op, l(input, ctx), r(input, ctx)), type };
      }
      case '|':
        return { fn: (input, ctx) => union(l(input, ctx), r(input, ctx)) };
      case 'in':
        return { fn: (input, ctx) => membership(l(input, ctx), r(input, ctx)), type: 'boolean' };
      case 'contains':
        return { fn: (input, ctx) => membership(r(input, ctx), l(input, ctx)), type: 'boolean' };
      case 'and':
        return {
          fn: (input, ctx) => {
            const a = toBoolean(l(input, ctx), "'and'");
            if (a === false) return FALSE;
            const b = toBoolean(r(input, ctx), "'and'");
            if (b === false) return FALSE;
            return a === true && b === true ? TRUE : EMPTY;
          },
          type: 'boolean',
        };
      case 'or':
        return {
          fn: (input, ctx) => {
            const a = toBoolean(l(input, ctx), "'or'");
            if (a === true) return TRUE;
            const b = toBoolean(r(input, ctx), "'or'");
            if (b === true) return TRUE;
            return a === false && b === false ? FALSE : EMPTY;
          },
          type: 'boolean',
        };
      case 'xor':
        return {
          fn: (input, ctx) => {
            const a = toBoolean(l(input, ctx), "'xor'");
            const b = toBoolean(r(input, ctx), "'xor'");
            return a === undefined || b === undefined ? EMPTY : bool(a !== b);
          },
          type: 'boolean',
        };
      case 'implies':
        return {
          fn: (input, ctx) => {
            const a = toBoolean(l(input, ctx), "'implies'");
            if (a === false) return TRUE;
            const b = toBoolean(r(input, ctx), "'implies'");
            if (a === true) return bool(b);
            return b === true ? TRUE : EMPTY;
          },
          type: 'boolean',
        };
      default:
        throw new FhirPathCompileError(`unsupported operator '${op}'`);
    }
  }
}
