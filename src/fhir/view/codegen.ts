/**
 * Compilation of a view's select tree to JavaScript source: the rows of one resource are built by a
 * single function, generated once per view with `new Function`, that reads column values with plain
 * property access and builds each record as an object literal of a fixed shape (which V8 makes much
 * faster than records filled key by key, or rows copied through arrays).
 *
 * A column path in the common subset (members, first(), ofType() on a choice element,
 * getResourceKey(), getReferenceKey(), literals, $this) becomes inline code with the meaning of
 * CompiledFhirPath.evaluateItem: one value, none, or MANY_ITEMS when a list may make the result a
 * collection. That case, and every path outside the subset, calls the compiled closures through
 * RowRuntime.columnValue, so values and errors are those of the closure evaluator; so do iterators
 * (forEach, forEachOrNull, repeat), which give collections.
 *
 * No text of the view reaches the code unquoted: property and column names are written with
 * JSON.stringify; plans, literals and functions are passed in as bound constants (`k0`, `k1`, …).
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';
import type { Node } from './fhirpath-parser.js';
import {
  bareTypeName,
  choiceKey,
  choiceValue,
  MANY_ITEMS,
  NO_ITEM,
  pathMember,
  referenceKeyReader,
  type Collection,
  type EvaluationContext,
  type PathMember,
} from './fhirpath.js';
import type { ColumnPlan, SelectPlan } from './definition.js';

/** One row: the values of a select's columns, in column order. */
export type Row = unknown[];

/** What generated code calls for the work it leaves to the closure evaluator (evaluate.ts). */
export interface RowRuntime {
  /** The stored value of a column on its input, through the compiled closures; throws RECORD_INVALID. */
  columnValue(plan: ColumnPlan, input: Collection, context: EvaluationContext): unknown;
  /** The stored value of a column whose path gave `value` (NO_ITEM for none); throws RECORD_INVALID. */
  storedValue(plan: ColumnPlan, value: unknown): unknown;
  /** The items a forEach, forEachOrNull or repeat iterates over; throws RECORD_INVALID. */
  focusesOf(select: SelectPlan, input: Collection, context: EvaluationContext): Collection;
  /** The rows of a forEachOrNull that has no item. */
  nullRows(select: SelectPlan, context: EvaluationContext): Row[];
}

/** The rows of one resource as records, keyed by column name in column order. */
export type RowsFunction = (resource: unknown, context: EvaluationContext) => Record<string, unknown>[];

/** The first item of a list that is not null, as firstOfPath takes it; undefined when there is none. */
function firstPresent(list: unknown[]): unknown {
  for (let i = 0; i < list.length; i++) {
    const v = list[i];
    if (v !== null && v !== undefined) return v;
  }
  return undefined;
}

/** Generates the rows function of a view whose top-level selects are `root`. */
export function generateRows(root: SelectPlan, runtime: RowRuntime): RowsFunction {
  const generator = new Generator();
  generator.line('const out = [];');
  generator.body(root, 'resource', (values) => {
    const fields = root.allColumns.map((c, i) => `${JSON.stringify(c.name)}: ${values[i]}`);
    generator.line(`out.push({ ${fields.join(', ')} });`);
  });
  generator.line('return out;');
  return generator.build(runtime);
}

/** The values of a select's row that come one factor of the product: its own columns, or rows of another select. */
type Factor = { values: string[] } | { rows: string; width: number };

/** Whether a select gives one body per item of an iterator rather than one body on its input. */
const iterates = (select: SelectPlan): boolean => Boolean(select.forEach ?? select.forEachOrNull ?? select.repeat);

/** Thrown inside expression code generation when a node is outside the generated subset. */
class Unsupported extends Error {}

class Generator {
  private readonly lines: string[] = [];
  private depth = 1;
  private readonly constants: unknown[] = [];
  private names = 0;

  line(text: string): void {
    this.lines.push('  '.repeat(this.depth) + text);
  }

  private open(text: string): void {
    this.line(text);
    this.depth++;
  }

  private close(text = '}'): void {
    this.depth--;
    this.line(text);
  }

  /** A fresh local name. */
  private fresh(prefix: string): string {
    return `${prefix}${this.names++}`;
  }

  /** The name under which generated code sees `value`. */
  private constant(value: unknown): string {
    let i = this.constants.indexOf(value);
    if (i < 0) i = this.constants.push(value) - 1;
    return `k${i}`;
  }

  build(runtime: RowRuntime): RowsFunction {
    const source = [
      'const { NO, MANY, isLosslessNumber, choiceValue, firstPresent, columnValue, storedValue, focusesOf, nullRows } = runtime;',
      ...this.constants.map((_, i) => `const k${i} = k[${i}];`),
      'return function rows(resource, ctx) {',
      ...this.lines,
      '};',
    ].join('\n');
    const helpers = { ...runtime, NO: NO_ITEM, MANY: MANY_ITEMS, isLosslessNumber, choiceValue, firstPresent };
    return new Function('runtime', 'k', source)(helpers, this.constants) as RowsFunction;
  }

  /**
   * The body of a select on one item: its own columns, nested selects and unionAll make a product of
   * factors, evaluated in the closure evaluator's order; `emit` receives the value expressions of one
   * row at the innermost loop. As in evaluateBody, a factor without rows ends the body at once.
   */
  body(select: SelectPlan, item: string, emit: (values: string[]) => void): void {
    const exit = this.fresh('body');
    this.open(`${exit}: {`);
    const factors: Factor[] = [];
    this.factors(select, item, exit, factors);
    const values: string[] = [];
    let loops = 0;
    for (const factor of factors) {
      if ('values' in factor) {
        values.push(...factor.values);
        continue;
      }
      const row = this.fresh('row');
      this.open(`for (const ${row} of ${factor.rows}) {`);
      loops++;
      for (let i = 0; i < factor.width; i++) values.push(`${row}[${i}]`);
    }
    emit(values);
    for (let i = 0; i < loops; i++) this.close();
    this.close();
  }

  /**
   * The factors of a select's body. A nested select without an iterator gives exactly its own body,
   * so its factors join those of its parent instead of making rows of their own.
   */
  private factors(select: SelectPlan, item: string, exit: string, out: Factor[]): void {
    out.push({ values: select.columns.map((c) => this.column(c, item)) });
    for (const nested of select.select) {
      if (!iterates(nested)) {
        this.factors(nested, item, exit, out);
        continue;
      }
      const rows = this.fresh('rows');
      this.line(`const ${rows} = [];`);
      this.iterate(nested, item, rows);
      this.line(`if (${rows}.length === 0) break ${exit};`);
      out.push({ rows, width: nested.allColumns.length });
    }
    if (select.unionAll.length) {
      const rows = this.fresh('union');
      this.line(`const ${rows} = [];`);
      for (const branch of select.unionAll) {
        if (iterates(branch)) this.iterate(branch, item, rows);
        else this.body(branch, item, (values) => this.line(`${rows}.push([${values.join(', ')}]);`));
      }
      this.line(`if (${rows}.length === 0) break ${exit};`);
      out.push({ rows, width: select.unionAll[0]!.allColumns.length });
    }
  }

  /** Rows of an iterating select pushed to the list `into`: its body on each item, %rowIndex set to the item's index. */
  private iterate(select: SelectPlan, item: string, into: string): void {
    const plan = this.constant(select);
    const focuses = this.fresh('focuses');
    this.line(`const ${focuses} = focusesOf(${plan}, [${item}], ctx);`);
    if (select.forEachOrNull) {
      this.line(`if (${focuses}.length === 0) for (const row of nullRows(${plan}, ctx)) ${into}.push(row);`);
    }
    // An error abandons the resource and its context, so the index is restored without a finally.
    const parentIndex = this.fresh('parentIndex');
    const i = this.fresh('i');
    const focus = this.fresh('focus');
    this.line(`const ${parentIndex} = ctx.rowIndex;`);
    this.open(`for (let ${i} = 0; ${i} < ${focuses}.length; ${i}++) {`);
    this.line(`ctx.rowIndex = ${i};`);
    this.line(`const ${focus} = ${focuses}[${i}];`);
    this.body(select, focus, (values) => this.line(`${into}.push([${values.join(', ')}]);`));
    this.close();
    this.line(`ctx.rowIndex = ${parentIndex};`);
  }

  /** Code computing a column's stored value on `item`; returns the local that holds it. */
  private column(plan: ColumnPlan, item: string): string {
    const k = this.constant(plan);
    const stored = this.fresh('c');
    const value = this.fresh('v');
    const { collection, sqlType } = plan.column;
    const code = new ItemCode(this, value);
    let result: string;
    try {
      result = code.of(plan.expression.tree, item);
    } catch (err) {
      if (!(err instanceof Unsupported)) throw err;
      this.line(`const ${stored} = columnValue(${k}, [${item}], ctx);`);
      return stored;
    }
    this.line(`let ${value};`);
    this.open(`${value}: {`);
    for (const line of code.lines) this.line(line);
    this.line(`${value} = ${result};`);
    this.close();
    // A string is stored as it is in a text column: the common case, without a call.
    const fast = sqlType === 'text' && !collection ? `typeof ${value} === 'string' ? ${value} : ` : '';
    this.line(
      `const ${stored} = ${value} === NO ? ${collection ? '[]' : 'null'} : ${value} === MANY ? columnValue(${k}, [${item}], ctx) : ${fast}storedValue(${k}, ${value});`,
    );
    return stored;
  }

  /** For ItemCode: fresh names and constants of the same function. */
  name(prefix: string): string {
    return this.fresh(prefix);
  }

  bind(value: unknown): string {
    return this.constant(value);
  }
}

/**
 * The statements of one column path, evaluated on one item, in a block labelled with the column's
 * value variable: they leave the block with the variable set to NO (no value) or MANY (ask the
 * closures), else the block ends by storing the expression `of` returns.
 */
class ItemCode {
  readonly lines: string[] = [];

  constructor(
    private readonly generator: Generator,
    /** The value variable, also the label of the block. */
    private readonly value: string,
  ) {}

  private none(): string {
    return `{ ${this.value} = NO; break ${this.value}; }`;
  }

  private many(): string {
    return `{ ${this.value} = MANY; break ${this.value}; }`;
  }

  /** A local holding `init`. */
  private local(init: string): string {
    const name = this.generator.name('x');
    this.lines.push(`let ${name} = ${init};`);
    return name;
  }

  /** The expression of the one item `node` gives on `input` (a local), after the statements it adds. */
  of(node: Node, input: string): string {
    switch (node.kind) {
      case 'this':
        return input;
      case 'literal':
        if (node.type === 'string') return JSON.stringify(node.value);
        return this.generator.bind(node.type === 'decimal' ? new LosslessNumber(node.value as string) : node.value);
      case 'member':
        return this.path(node, input);
      case 'call':
        if (node.name === 'first' && node.args.length === 0) return this.path(node, input);
        if (node.name === 'getResourceKey' && !node.base) return this.resourceKey(input);
        if (node.name === 'getReferenceKey') return this.referenceKey(node, input);
        if (node.name === 'ofType' && node.base?.kind === 'member') return this.ofType(node.base, node.args[0]!, input);
        throw new Unsupported();
      default:
        throw new Unsupported();
    }
  }

  /**
   * Reads member `m` of the local `from` into a new local as childOf() does (undefined when there is
   * none: no object, a LosslessNumber for names it has itself, null), the choice search included.
   */
  private child(from: string, m: PathMember): string {
    const lossless = m.checkLossless ? ` && !isLosslessNumber(${from})` : '';
    const key = JSON.stringify(m.name);
    const v = this.local(`${from} !== null && typeof ${from} === 'object'${lossless} ? ${from}[${key}] : undefined`);
    if (m.choice) this.lines.push(`if (${v} === undefined && ${from} !== null && typeof ${from} === 'object'${lossless}) ${v} = choiceValue(${from}, ${key});`);
    return v;
  }

  /**
   * A chain of members and first() calls, as Compiler.path splits it and itemOfPath / firstOfPath walk
   * it: a list of one item is that item; after first(), the first item present; other lists → MANY.
   */
  private path(node: Node, input: string): string {
    const steps: (string | null)[] = []; // member names, null for first(); outermost first
    let inner: Node | undefined = node;
    while (inner) {
      if (inner.kind === 'member') {
        steps.push(inner.name);
        inner = inner.base;
      } else if (inner.kind === 'call' && inner.name === 'first' && inner.args.length === 0) {
        steps.push(null);
        inner = inner.base;
      } else break;
    }
    steps.reverse();
    // `Patient.name` (a leading type name) has no evaluateItem: the closures decide.
    if (!inner && typeof steps[0] === 'string' && /^[A-Z]/.test(steps[0])) throw new Unsupported();
    let current = inner ? this.of(inner, input) : input;
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i];
      if (step === null) continue; // first() of one item is that item
      const firstFollows = steps.indexOf(null, i + 1) >= 0;
      const v = this.child(current, pathMember(step));
      this.lines.push(`if (${v} === undefined || ${v} === null) ${this.none()}`);
      if (!firstFollows) {
        this.lines.push(`if (Array.isArray(${v})) { if (${v}.length !== 1 || ${v}[0] === undefined || ${v}[0] === null) ${this.many()} ${v} = ${v}[0]; }`);
      } else if (steps[i + 1] === null) {
        this.lines.push(`if (Array.isArray(${v})) { ${v} = firstPresent(${v}); if (${v} === undefined) ${this.none()} }`);
      } else {
        // firstOfPath would try each item in turn: one item is that item, more are left to the closures.
        this.lines.push(`if (Array.isArray(${v})) { if (${v}.length > 1) ${this.many()} ${v} = ${v}[0]; if (${v} === undefined || ${v} === null) ${this.none()} }`);
      }
      current = v;
    }
    return current;
  }

  /** getResourceKey() at the start of a path: the item's id. */
  private resourceKey(input: string): string {
    const id = this.local(`${input} !== null && typeof ${input} === 'object' ? ${input}.id : undefined`);
    this.lines.push(`if (typeof ${id} !== 'string') ${this.none()}`);
    return id;
  }

  /** getReferenceKey(type?) of the one Reference its base gives (the input itself without a base). */
  private referenceKey(node: Extract<Node, { kind: 'call' }>, input: string): string {
    const ref = node.base ? this.of(node.base, input) : input;
    const keyOf = this.generator.bind(referenceKeyReader(node.args));
    const key = this.local(`${keyOf}(${ref})`);
    this.lines.push(`if (${key} === undefined) ${this.none()}`);
    return key;
  }

  /**
   * `name.ofType(T)` on one item: its `nameT` element; MANY when that is a list or when `name` itself
   * is present (its items of type T would join the result), as the ofType closure answers.
   */
  private ofType(receiver: Extract<Node, { kind: 'member' }>, typeArg: Node, input: string): string {
    const parent = receiver.base ? this.of(receiver.base, input) : input;
    const chosen = this.child(parent, pathMember(choiceKey(receiver.name, bareTypeName(typeArg))));
    this.lines.push(`if (Array.isArray(${chosen})) ${this.many()}`);
    this.lines.push(
      `if (${parent} !== null && typeof ${parent} === 'object' && ${parent}[${JSON.stringify(receiver.name)}] !== undefined && ${parent}[${JSON.stringify(receiver.name)}] !== null) ${this.many()}`,
    );
    this.lines.push(`if (${chosen} === undefined || ${chosen} === null) ${this.none()}`);
    return chosen;
  }
}
