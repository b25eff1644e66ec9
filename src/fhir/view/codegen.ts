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
 * RowRuntime.columnValue, so values and errors are those of the closure evaluator. Likewise a
 * forEach or forEachOrNull path of members and ofType() is walked by generated loops, and any other
 * iterator (repeat included) is evaluated by the closures.
 *
 * No text of the view reaches the code unquoted: property and column names are written with
 * JSON.stringify; plans, literals and functions are passed in as bound constants (`k0`, `k1`, …).
 */
import { isLosslessNumber, LosslessNumber } from 'lossless-json';
import type { Node } from './fhirpath/parser.js';
import { bareTypeName, choiceKey, choiceValue, INHERITED_NAMES, pathMember, pathSteps, referenceKeyReader, type PathMember } from './fhirpath/paths.js';
import { MANY_ITEMS, NO_ITEM, type Collection, type EvaluationContext } from './fhirpath/values.js';
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

/**
 * A factor of the product that makes a select's rows: columns (one row), the rows of an iterating
 * select, or the rows of a unionAll.
 */
type Part = { columns: ColumnPlan[] } | { iterating: SelectPlan } | { union: SelectPlan[] };

/**
 * The factors of a select's body, in evaluation order. A nested select without an iterator gives
 * exactly its own body, so its factors join those of its parent.
 */
function partsOf(select: SelectPlan, out: Part[] = []): Part[] {
  if (select.columns.length) out.push({ columns: select.columns });
  for (const nested of select.select) {
    if (iterates(nested)) out.push({ iterating: nested });
    else partsOf(nested, out);
  }
  if (select.unionAll.length) out.push({ union: select.unionAll });
  return out;
}

/** A factor that may give any number of rows. */
type RowsPart = Exclude<Part, { columns: ColumnPlan[] }>;

const widthOf = (part: RowsPart): number =>
  'iterating' in part ? part.iterating.allColumns.length : part.union[0]!.allColumns.length;

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
   * The body of a select on one item: the product of its factors, evaluated in the closure
   * evaluator's order; `emit` receives the value expressions of one row. As in evaluateBody, a
   * factor without rows ends the body at once.
   */
  body(select: SelectPlan, item: string, emit: (values: string[]) => void): void {
    const exit = this.fresh('body');
    this.open(`${exit}: {`);
    const parts = partsOf(select);
    const values: string[] = [];
    const loops: { rows: string; row: string }[] = [];
    let emitted = false;
    parts.forEach((part, i) => {
      if ('columns' in part) {
        for (const column of part.columns) values.push(this.column(column, item));
        return;
      }
      const width = widthOf(part);
      if (i === parts.length - 1 && loops.length === 0) {
        // The last factor after a single row: its rows are the body's rows, emitted as they come
        // rather than gathered in a list first.
        const before = [...values];
        this.rowsOf(part, item, (own) => emit([...before, ...own]));
        emitted = true;
        return;
      }
      const rows = this.fresh('rows');
      const row = this.fresh('row');
      this.line(`const ${rows} = [];`);
      this.rowsOf(part, item, (own) => this.line(`${rows}.push([${own.join(', ')}]);`));
      this.line(`if (${rows}.length === 0) break ${exit};`);
      loops.push({ rows, row });
      for (let c = 0; c < width; c++) values.push(`${row}[${c}]`);
    });
    if (!emitted) {
      for (const { rows, row } of loops) this.open(`for (const ${row} of ${rows}) {`);
      emit(values);
      for (let i = 0; i < loops.length; i++) this.close();
    }
    this.close();
  }

  /** Emits the rows of an iterating select or a unionAll on one item. */
  private rowsOf(part: RowsPart, item: string, emit: (values: string[]) => void): void {
    if ('iterating' in part) return this.iterate(part.iterating, item, emit);
    for (const branch of part.union) {
      if (iterates(branch)) this.iterate(branch, item, emit);
      else this.body(branch, item, emit);
    }
  }

  /** The rows of an iterating select: its body on each item, %rowIndex set to the item's index. */
  private iterate(select: SelectPlan, item: string, emit: (values: string[]) => void): void {
    const plan = this.constant(select);
    const focuses = this.focuses(select, plan, item);
    if (select.forEachOrNull) {
      const row = this.fresh('row');
      this.open(`if (${focuses}.length === 0) for (const ${row} of nullRows(${plan}, ctx)) {`);
      emit(select.allColumns.map((_, c) => `${row}[${c}]`));
      this.close();
    }
    // An error abandons the resource and its context, so the index is restored without a finally.
    const parentIndex = this.fresh('parentIndex');
    const i = this.fresh('i');
    const focus = this.fresh('focus');
    this.line(`const ${parentIndex} = ctx.rowIndex;`);
    this.open(`for (let ${i} = 0; ${i} < ${focuses}.length; ${i}++) {`);
    this.line(`ctx.rowIndex = ${i};`);
    this.line(`const ${focus} = ${focuses}[${i}];`);
    this.body(select, focus, emit);
    this.close();
    this.line(`ctx.rowIndex = ${parentIndex};`);
  }

  /**
   * Code gathering the items an iterating select goes over; returns the local that holds them. A
   * forEach or forEachOrNull path of members and ofType() walks the resource inline; a repeat, any
   * other path, and a case the inline walk leaves out ask the closures.
   */
  private focuses(select: SelectPlan, plan: string, item: string): string {
    const focuses = this.fresh('focuses');
    const closures = `focusesOf(${plan}, [${item}], ctx)`;
    const iterator = select.forEach ?? select.forEachOrNull;
    if (iterator) {
      const code = new CollectionCode(this, focuses, closures);
      try {
        code.gather(iterator.tree, item);
        this.line(`let ${focuses} = [];`);
        this.open(`${focuses}: {`);
        for (const line of code.lines) this.line(line);
        this.close();
        return focuses;
      } catch (err) {
        if (!(err instanceof Unsupported)) throw err;
      }
    }
    this.line(`const ${focuses} = ${closures};`);
    return focuses;
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

  /** For PathCode: fresh names and constants of the same function. */
  name(prefix: string): string {
    return this.fresh(prefix);
  }

  bind(value: unknown): string {
    return this.constant(value);
  }
}

/** Statements reading paths from the resource, in a block labelled `label` that they may leave early. */
class PathCode {
  readonly lines: string[] = [];

  constructor(
    protected readonly generator: Generator,
    protected readonly label: string,
  ) {}

  /** Depth of the loops the next line is in, for indentation. */
  private depth = 0;

  protected push(line: string): void {
    if (line === '}') this.depth--;
    this.lines.push('  '.repeat(this.depth) + line);
    if (line.endsWith('{')) this.depth++;
  }

  /** A local holding `init`. */
  protected local(init: string): string {
    const name = this.generator.name('x');
    this.push(`let ${name} = ${init};`);
    return name;
  }

  /**
   * Reads member `m` of the local `from` into a new local as childOf() does (undefined when there is
   * none: no object, a LosslessNumber for names it has itself, null), the choice search included.
   */
  protected child(from: string, m: PathMember): string {
    if (m.inherited) return this.local('undefined');
    const lossless = m.checkLossless ? ` && !isLosslessNumber(${from})` : '';
    const key = JSON.stringify(m.name);
    const v = this.local(`${from} !== null && typeof ${from} === 'object'${lossless} ? ${from}[${key}] : undefined`);
    if (m.choice) this.push(`if (${v} === undefined && ${from} !== null && typeof ${from} === 'object'${lossless}) ${v} = choiceValue(${from}, ${key});`);
    return v;
  }

  /** A test that `parent` has a `name` element that is not null (which ofType(T) would filter by type). */
  protected hasElement(parent: string, name: string): string {
    if (INHERITED_NAMES.has(name)) return 'false';
    const key = JSON.stringify(name);
    return `${parent} !== null && typeof ${parent} === 'object' && ${parent}[${key}] !== undefined && ${parent}[${key}] !== null`;
  }
}

/**
 * The statements of one column path, evaluated on one item, in a block labelled with the column's
 * value variable: they leave the block with the variable set to NO (no value) or MANY (ask the
 * closures), else the block ends by storing the expression `of` returns.
 */
class ItemCode extends PathCode {
  private none(): string {
    return `{ ${this.label} = NO; break ${this.label}; }`;
  }

  private many(): string {
    return `{ ${this.label} = MANY; break ${this.label}; }`;
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
   * A chain of members and first() calls, as Compiler.path splits it and itemOfPath / firstOfPath walk
   * it: a list of one item is that item; after first(), the first item present; other lists → MANY.
   */
  private path(node: Node, input: string): string {
    const { steps, inner } = pathSteps(node);
    // `Patient.name` (a leading type name) has no evaluateItem: the closures decide.
    if (!inner && typeof steps[0] === 'string' && /^[A-Z]/.test(steps[0])) throw new Unsupported();
    let current = inner ? this.of(inner, input) : input;
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i];
      if (step === null) continue; // first() of one item is that item
      const firstFollows = steps.indexOf(null, i + 1) >= 0;
      const v = this.child(current, pathMember(step));
      this.push(`if (${v} === undefined || ${v} === null) ${this.none()}`);
      if (!firstFollows) {
        this.push(`if (Array.isArray(${v})) { if (${v}.length !== 1 || ${v}[0] === undefined || ${v}[0] === null) ${this.many()} ${v} = ${v}[0]; }`);
      } else if (steps[i + 1] === null) {
        this.push(`if (Array.isArray(${v})) { ${v} = firstPresent(${v}); if (${v} === undefined) ${this.none()} }`);
      } else {
        // firstOfPath would try each item in turn: one item is that item, more are left to the closures.
        this.push(`if (Array.isArray(${v})) { if (${v}.length > 1) ${this.many()} ${v} = ${v}[0]; if (${v} === undefined || ${v} === null) ${this.none()} }`);
      }
      current = v;
    }
    return current;
  }

  /** getResourceKey() at the start of a path: the item's id. */
  private resourceKey(input: string): string {
    const id = this.local(`${input} !== null && typeof ${input} === 'object' ? ${input}.id : undefined`);
    this.push(`if (typeof ${id} !== 'string') ${this.none()}`);
    return id;
  }

  /** getReferenceKey(type?) of the one Reference its base gives (the input itself without a base). */
  private referenceKey(node: Extract<Node, { kind: 'call' }>, input: string): string {
    const ref = node.base ? this.of(node.base, input) : input;
    const keyOf = this.generator.bind(referenceKeyReader(node.args));
    const key = this.local(`${keyOf}(${ref})`);
    this.push(`if (${key} === undefined) ${this.none()}`);
    return key;
  }

  /**
   * `name.ofType(T)` on one item: its `nameT` element; MANY when that is a list or when `name` itself
   * is present (its items of type T would join the result), as the ofType closure answers.
   */
  private ofType(receiver: Extract<Node, { kind: 'member' }>, typeArg: Node, input: string): string {
    const parent = receiver.base ? this.of(receiver.base, input) : input;
    const chosen = this.child(parent, pathMember(choiceKey(receiver.name, bareTypeName(typeArg))));
    this.push(`if (Array.isArray(${chosen})) ${this.many()}`);
    this.push(`if (${this.hasElement(parent, receiver.name)}) ${this.many()}`);
    this.push(`if (${chosen} === undefined || ${chosen} === null) ${this.none()}`);
    return chosen;
  }
}

/**
 * The statements gathering the items of an iterator path into the list named by `label`, in the
 * order of the closures' member(): a path of members and ofType() on choice elements, walked with a
 * loop per member. Where ofType(T) would also take items of `name` itself, the list is the closures'.
 */
class CollectionCode extends PathCode {
  constructor(
    generator: Generator,
    label: string,
    /** The expression evaluating the path with the closures. */
    private readonly closures: string,
  ) {
    super(generator, label);
  }

  gather(node: Node, input: string): void {
    this.each(node, input, (item) => this.push(`${this.label}.push(${item});`));
  }

  /** Emits loops visiting each item `node` gives on `input`, `visit` writing the code for one. */
  private each(node: Node, input: string, visit: (item: string) => void): void {
    if (node.kind === 'member') {
      // `Patient.name` (a leading type name) is the closures' to decide.
      if (!node.base && /^[A-Z]/.test(node.name)) throw new Unsupported();
      const members = (from: string): void => this.members(from, pathMember(node.name), visit);
      if (node.base) this.each(node.base, input, members);
      else members(input);
      return;
    }
    if (node.kind === 'call' && node.name === 'ofType' && node.base?.kind === 'member') {
      const receiver = node.base;
      const choice = pathMember(choiceKey(receiver.name, bareTypeName(node.args[0]!)));
      const chosen = (parent: string): void => {
        this.push(`if (${this.hasElement(parent, receiver.name)}) { ${this.label} = ${this.closures}; break ${this.label}; }`);
        this.members(parent, choice, visit);
      };
      if (receiver.base) this.each(receiver.base, input, chosen);
      else chosen(input);
      return;
    }
    throw new Unsupported();
  }

  /** A loop over member `m` of `from`: a list's items that are not null, or the one value. */
  private members(from: string, m: PathMember, visit: (item: string) => void): void {
    const v = this.child(from, m);
    const list = this.generator.name('list');
    const n = this.generator.name('n');
    const j = this.generator.name('j');
    const item = this.generator.name('x');
    this.push(`const ${list} = Array.isArray(${v});`);
    this.push(`const ${n} = ${list} ? ${v}.length : ${v} === undefined ? 0 : 1;`);
    this.push(`for (let ${j} = 0; ${j} < ${n}; ${j}++) {`);
    this.push(`const ${item} = ${list} ? ${v}[${j}] : ${v};`);
    this.push(`if (${item} === null || ${item} === undefined) continue;`);
    visit(item);
    this.push('}');
  }
}
