/**
 * The FHIRPath function library: each function's arity, and how a call compiles to a closure given
 * its compiled input (`base`) and a compiler for its arguments. compiler.ts looks calls up here.
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';
import type { Node } from './parser.js';
import { bareTypeName, childOf, choiceKey, INHERITED_NAMES, isOfType, member, pathMember, referenceKeyReader, typeName } from './paths.js';
import {
  boundary,
  bool,
  deepEqual,
  describeValue,
  EMPTY,
  FhirPathEvaluationError,
  identity,
  MANY_ITEMS,
  NO_ITEM,
  numberValue,
  primitive,
  single,
  toBoolean,
  union,
  type Collection,
  type EvaluationContext,
  type Evaluator,
} from './values.js';

/** An expression compiled to a closure, with what the compiler knows of its result. */
export interface Compiled {
  fn: Evaluator;
  type?: string;
  /** See CompiledFhirPath.evaluateItem. */
  item?: (item: unknown) => unknown;
}

/** What a function needs of the compiler: its arguments compiled in the same scope. */
export interface ArgumentCompiler {
  compile(node: Node): Compiled;
}

/** The compile step of a call: its compiled input (`base`), its arguments and the whole call node. */
type FunctionCompiler = (c: ArgumentCompiler, base: Compiled, args: Node[], call: Extract<Node, { kind: 'call' }>) => Compiled;
/** A function of the library: its arity and its compile step. */
export interface FunctionSpec {
  min: number;
  max: number;
  compile: FunctionCompiler;
}

/** An argument evaluated on one item of the focus as $this, $index = index. */
type Lambda = (item: unknown, index: number, ctx: EvaluationContext) => Collection;

/** Compiles an argument that is evaluated once per item with that item as $this (where, select, ...). */
function lambda(c: ArgumentCompiler, arg: Node): Lambda {
  const fn = c.compile(arg).fn;
  return (item, index, ctx) => {
    const saved = ctx.index;
    ctx.index = index;
    try {
      return fn([item], ctx);
    } finally {
      ctx.index = saved;
    }
  };
}

/** A function's result type: a fixed one, or one worked out from its base's (`(b) => b.type` keeps it). */
type ResultType = string | ((base: Compiled) => string | undefined);

/** `{ type }` for a function on `base`, or nothing when the type is unknown. */
function typeOn(type: ResultType | undefined, base: Compiled): { type?: string } {
  const t = typeof type === 'function' ? type(base) : type;
  return t ? { type: t } : {};
}

/** A function whose result depends only on its input collection. */
function collectionFn(fn: (input: Collection) => Collection, type?: ResultType): FunctionSpec {
  return {
    min: 0,
    max: 0,
    compile: (_c, base) => {
      const b = base.fn;
      return { fn: (input, ctx) => fn(b(input, ctx)), ...typeOn(type, base) };
    },
  };
}

/** A function of one argument evaluated on the same input as the function's base, after it. */
function argumentFn(fn: (focus: Collection, argument: Collection) => Collection): FunctionSpec {
  return {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const argument = c.compile(args[0]!).fn;
      return { fn: (input, ctx) => fn(b(input, ctx), argument(input, ctx)) };
    },
  };
}

/** A function of one argument evaluated on each item of the focus as $this (where, select, all, repeat). */
function lambdaFn(fn: (focus: Collection, each: Lambda, ctx: EvaluationContext) => Collection, type?: ResultType): FunctionSpec {
  return {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const each = lambda(c, args[0]!);
      return { fn: (input, ctx) => fn(b(input, ctx), each, ctx), ...typeOn(type, base) };
    },
  };
}

/** A function on a single string input, with arguments evaluated against the outer input. */
function stringFn(min: number, max: number, fn: (s: string, args: unknown[]) => unknown, type?: string): FunctionSpec {
  return {
    min,
    max,
    compile: (c, base, args) => {
      const b = base.fn;
      const argFns = args.map((a) => c.compile(a).fn);
      return {
        fn: (input, ctx) => {
          const s = single(b(input, ctx), 'string function');
          if (s === undefined) return EMPTY;
          if (typeof s !== 'string') throw new FhirPathEvaluationError(`expected a string, got ${describeValue(s)}`);
          const values: unknown[] = [];
          for (const a of argFns) {
            const v = single(a(input, ctx), 'argument');
            if (v === undefined) return EMPTY;
            values.push(primitive(v));
          }
          const result = fn(s, values);
          return result === undefined ? EMPTY : [result];
        },
        ...(type ? { type } : {}),
      };
    },
  };
}

function mathFn(fn: (n: number) => number): FunctionSpec {
  return collectionFn((input) => {
    const v = numberValue(single(input, 'math function'));
    return v === undefined ? EMPTY : [fn(v)];
  });
}

function boundaryFn(high: boolean): FunctionSpec {
  return {
    min: 0,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const precision = args[0] ? c.compile(args[0]).fn : undefined;
      return {
        fn: (input, ctx) => {
          const out: unknown[] = [];
          const p = precision ? numberValue(precision(input, ctx)[0]) : undefined;
          for (const v of b(input, ctx)) {
            const r = boundary(v, base.type, high, p);
            if (r !== undefined) out.push(r);
          }
          return out;
        },
        ...(base.type ? { type: base.type } : {}),
      };
    },
  };
}

/** Every function an expression may call, by name (look up with Object.hasOwn: see INHERITED_NAMES). */
export const FUNCTIONS: Record<string, FunctionSpec> = {
  empty: collectionFn((input) => bool(input.length === 0), 'boolean'),
  exists: {
    min: 0,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      if (!args[0]) return { fn: (input, ctx) => bool(b(input, ctx).length > 0), type: 'boolean' };
      const criteria = lambda(c, args[0]);
      return {
        fn: (input, ctx) => bool(b(input, ctx).some((item, i) => toBoolean(criteria(item, i, ctx), 'exists()') === true)),
        type: 'boolean',
      };
    },
  },
  not: collectionFn((input) => {
    const v = toBoolean(input, 'not()');
    return v === undefined ? EMPTY : bool(!v);
  }, 'boolean'),
  first: collectionFn((input) => (input.length ? [input[0]] : EMPTY), (b) => b.type),
  last: collectionFn((input) => (input.length ? [input[input.length - 1]] : EMPTY), (b) => b.type),
  tail: collectionFn((input) => input.slice(1), (b) => b.type),
  single: collectionFn((input) => {
    if (input.length > 1) throw new FhirPathEvaluationError(`single() got ${input.length} items`);
    return input;
  }, (b) => b.type),
  count: collectionFn((input) => [input.length], 'integer'),
  distinct: collectionFn((input) => union(input, EMPTY), (b) => b.type),
  isDistinct: collectionFn((input) => bool(union(input, EMPTY).length === input.length), 'boolean'),
  hasValue: collectionFn((input) => bool(input.length === 1 && (typeof input[0] !== 'object' || isLosslessNumber(input[0]))), 'boolean'),
  allTrue: collectionFn((input) => bool(input.every((v) => v === true)), 'boolean'),
  anyTrue: collectionFn((input) => bool(input.some((v) => v === true)), 'boolean'),
  allFalse: collectionFn((input) => bool(input.every((v) => v === false)), 'boolean'),
  anyFalse: collectionFn((input) => bool(input.some((v) => v === false)), 'boolean'),
  skip: argumentFn((focus, n) => focus.slice(Math.max(0, numberValue(n[0]) ?? 0))),
  take: argumentFn((focus, n) => focus.slice(0, Math.max(0, numberValue(n[0]) ?? 0))),
  where: lambdaFn((focus, criteria, ctx) => focus.filter((item, i) => toBoolean(criteria(item, i, ctx), 'where()') === true), (b) => b.type),
  select: lambdaFn((focus, projection, ctx) => focus.flatMap((item, i) => projection(item, i, ctx))),
  repeat: lambdaFn((focus, projection, ctx) => {
    const out: unknown[] = [];
    let queue = focus.flatMap((item, i) => projection(item, i, ctx));
    while (queue.length) {
      const next: unknown[] = [];
      for (const item of queue) {
        if (out.some((o) => deepEqual(o, item))) continue;
        out.push(item);
        next.push(...projection(item, 0, ctx));
      }
      queue = next;
    }
    return out;
  }),
  all: lambdaFn((focus, criteria, ctx) => bool(focus.every((item, i) => toBoolean(criteria(item, i, ctx), 'all()') === true)), 'boolean'),
  iif: {
    min: 2,
    max: 3,
    compile: (c, base, args) => {
      const b = base.fn;
      const [cond, yes, no] = args.map((a) => c.compile(a).fn);
      return {
        fn: (input, ctx) => {
          const focus = b(input, ctx);
          if (toBoolean(cond!(focus, ctx), 'iif()') === true) return yes!(focus, ctx);
          return no ? no(focus, ctx) : EMPTY;
        },
      };
    },
  },
  ofType: {
    min: 1,
    max: 1,
    compile: (c, base, args, call) => {
      const bare = bareTypeName(args[0]!);
      // `value.ofType(Quantity)` → `valueQuantity`: compile the choice element access directly.
      const receiver = call.base;
      if (receiver?.kind === 'member') {
        const parent = receiver.base ? c.compile(receiver.base).fn : identity;
        const name = receiver.name;
        const inherited = INHERITED_NAMES.has(name);
        const choice = choiceKey(name, bare);
        const choiceMember = pathMember(choice);
        // On one item: its choice element, unless a list or a `name` element too make a collection.
        const item = receiver.base
          ? undefined
          : (x: unknown): unknown => {
              const chosen = childOf(x, choiceMember);
              if (Array.isArray(chosen)) return MANY_ITEMS;
              if (x !== null && typeof x === 'object') {
                const direct = inherited ? undefined : (x as Record<string, unknown>)[name];
                if (direct !== undefined && direct !== null) return MANY_ITEMS;
              }
              return chosen === undefined ? NO_ITEM : chosen;
            };
        return {
          ...(item ? { item } : {}),
          fn: (input, ctx) => {
            const items = parent(input, ctx);
            if (items.length === 1) {
              // The same as below for one item, without the copies.
              const item = items[0];
              let out: unknown[] | undefined;
              const chosen = childOf(item, choiceMember);
              if (Array.isArray(chosen)) {
                out = [];
                for (const e of chosen) if (e !== null && e !== undefined) out.push(e);
              } else if (chosen !== undefined) out = [chosen];
              if (item !== null && typeof item === 'object') {
                const direct = inherited ? undefined : (item as Record<string, unknown>)[name];
                if (direct !== undefined && direct !== null) {
                  for (const v of Array.isArray(direct) ? direct : [direct]) if (isOfType(v, bare)) (out ??= []).push(v);
                }
              }
              return out && out.length ? out : EMPTY;
            }
            const out = member(items, choice);
            for (const item of items) {
              if (item === null || typeof item !== 'object') continue;
              const direct = inherited ? undefined : (item as Record<string, unknown>)[name];
              if (direct === undefined || direct === null) continue;
              for (const v of Array.isArray(direct) ? direct : [direct]) if (isOfType(v, bare)) out.push(v);
            }
            return out;
          },
          type: bare,
        };
      }
      const b = base.fn;
      return { fn: (input, ctx) => b(input, ctx).filter((v) => isOfType(v, bare)), type: bare };
    },
  },
  is: {
    min: 1,
    max: 1,
    compile: (_c, base, args) => {
      const type = typeName(args[0]!);
      const b = base.fn;
      return {
        fn: (input, ctx) => {
          const v = single(b(input, ctx), 'is()');
          return v === undefined ? EMPTY : bool(isOfType(v, type));
        },
        type: 'boolean',
      };
    },
  },
  as: {
    min: 1,
    max: 1,
    compile: (_c, base, args) => {
      const type = typeName(args[0]!);
      const b = base.fn;
      return { fn: (input, ctx) => b(input, ctx).filter((v) => isOfType(v, type)), type: type.replace(/^(System|FHIR)\./, '') };
    },
  },
  join: {
    min: 0,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const separator = args[0] ? c.compile(args[0]).fn : undefined;
      return {
        fn: (input, ctx) => {
          const sep = separator ? single(separator(input, ctx), 'join()') : '';
          return [b(input, ctx).map((v) => String(primitive(v))).join(typeof sep === 'string' ? sep : '')];
        },
        type: 'string',
      };
    },
  },
  extension: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const url = c.compile(args[0]!).fn;
      return {
        fn: (input, ctx) => {
          const u = single(url(input, ctx), 'extension()');
          return member(b(input, ctx), 'extension').filter((e) => (e as { url?: unknown }).url === u);
        },
        type: 'Extension',
      };
    },
  },
  getResourceKey: collectionFn((input) => {
    if (input.length === 1) {
      const r = input[0];
      const id = r !== null && typeof r === 'object' ? (r as { id?: unknown }).id : undefined;
      return typeof id === 'string' ? [id] : EMPTY;
    }
    const out: unknown[] = [];
    for (const r of input) {
      const id = r !== null && typeof r === 'object' ? (r as { id?: unknown }).id : undefined;
      if (typeof id === 'string') out.push(id);
    }
    return out;
  }, 'string'),
  getReferenceKey: {
    min: 0,
    max: 1,
    compile: (_c, base, args) => {
      const keyOf = referenceKeyReader(args);
      const b = base.fn;
      const bItem = base.item;
      return {
        ...(bItem
          ? {
              item: (item: unknown) => {
                const ref = bItem(item);
                if (ref === NO_ITEM || ref === MANY_ITEMS) return ref;
                const key = keyOf(ref);
                return key === undefined ? NO_ITEM : key;
              },
            }
          : {}),
        fn: (input, ctx) => {
          const refs = b(input, ctx);
          if (refs.length === 1) {
            const key = keyOf(refs[0]);
            return key === undefined ? EMPTY : [key];
          }
          const out: unknown[] = [];
          for (const ref of refs) {
            const key = keyOf(ref);
            if (key !== undefined) out.push(key);
          }
          return out;
        },
        type: 'string',
      };
    },
  },
  lowBoundary: boundaryFn(false),
  highBoundary: boundaryFn(true),
  combine: argumentFn((focus, other) => [...focus, ...other]),
  union: argumentFn(union),
  trace: {
    min: 1,
    max: 2,
    compile: (_c, base) => base,
  },
  toString: collectionFn((input) => {
    const v = primitive(single(input, 'toString()'));
    return v === undefined || typeof v === 'object' ? EMPTY : [isLosslessNumber(input[0]) ? (input[0] as LosslessNumber).value : String(v)];
  }, 'string'),
  toInteger: collectionFn((input) => {
    const v = primitive(single(input, 'toInteger()'));
    if (typeof v === 'number' && Number.isInteger(v)) return [v];
    if (typeof v === 'string' && /^[+-]?\d+$/.test(v)) return [Number(v)];
    if (typeof v === 'boolean') return [v ? 1 : 0];
    return EMPTY;
  }, 'integer'),
  toDecimal: collectionFn((input) => {
    const v = primitive(single(input, 'toDecimal()'));
    if (typeof v === 'number') return [v];
    if (typeof v === 'string' && /^[+-]?\d+(\.\d+)?$/.test(v)) return [new LosslessNumber(v.replace(/^\+/, ''))];
    if (typeof v === 'boolean') return [v ? 1 : 0];
    return EMPTY;
  }, 'decimal'),
  length: stringFn(0, 0, (s) => s.length, 'integer'),
  upper: stringFn(0, 0, (s) => s.toUpperCase(), 'string'),
  lower: stringFn(0, 0, (s) => s.toLowerCase(), 'string'),
  trim: stringFn(0, 0, (s) => s.trim(), 'string'),
  startsWith: stringFn(1, 1, (s, [p]) => s.startsWith(String(p)), 'boolean'),
  endsWith: stringFn(1, 1, (s, [p]) => s.endsWith(String(p)), 'boolean'),
  contains: stringFn(1, 1, (s, [p]) => s.includes(String(p)), 'boolean'),
  indexOf: stringFn(1, 1, (s, [p]) => s.indexOf(String(p)), 'integer'),
  matches: stringFn(1, 1, (s, [p]) => new RegExp(String(p), 'su').test(s), 'boolean'),
  replace: stringFn(2, 2, (s, [p, r]) => s.split(String(p)).join(String(r)), 'string'),
  replaceMatches: stringFn(2, 2, (s, [p, r]) => s.replace(new RegExp(String(p), 'gsu'), String(r)), 'string'),
  substring: stringFn(1, 2, (s, [start, length]) => {
    const from = Number(start);
    if (from < 0 || from >= s.length) return undefined;
    return length === undefined ? s.slice(from) : s.slice(from, from + Number(length));
  }, 'string'),
  split: {
    min: 1,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const sep = c.compile(args[0]!).fn;
      return {
        fn: (input, ctx) => {
          const s = single(b(input, ctx), 'split()');
          const p = single(sep(input, ctx), 'split()');
          return typeof s === 'string' && typeof p === 'string' ? s.split(p) : EMPTY;
        },
        type: 'string',
      };
    },
  },
  abs: mathFn(Math.abs),
  ceiling: mathFn(Math.ceil),
  floor: mathFn(Math.floor),
  truncate: mathFn(Math.trunc),
  sqrt: mathFn(Math.sqrt),
  round: {
    min: 0,
    max: 1,
    compile: (c, base, args) => {
      const b = base.fn;
      const digits = args[0] ? c.compile(args[0]).fn : undefined;
      return {
        fn: (input, ctx) => {
          const v = numberValue(single(b(input, ctx), 'round()'));
          if (v === undefined) return EMPTY;
          const d = digits ? (numberValue(digits(input, ctx)[0]) ?? 0) : 0;
          return [new LosslessNumber(v.toFixed(d))];
        },
        type: 'decimal',
      };
    },
  },
};
