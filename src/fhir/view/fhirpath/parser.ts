/**
 * FHIRPath lexer and parser: expression text → syntax tree. Covers the grammar of FHIRPath N1 that
 * ViewDefinitions use (terms, invocations, indexers, every operator with its precedence, literals
 * including dates and times); the function library in functions.ts decides which functions exist.
 */

/** A FHIRPath syntax error or unsupported construct, with the 0-based offset in the expression. */
export class FhirPathSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
    this.name = 'FhirPathSyntaxError';
  }
}

export type LiteralType = 'boolean' | 'string' | 'integer' | 'decimal' | 'date' | 'dateTime' | 'time';

export type Node =
  | { kind: 'literal'; type: LiteralType; value: string | boolean | number; text: string }
  | { kind: 'empty' }
  /** `name` on the input (base undefined) or on the result of base. */
  | { kind: 'member'; base?: Node; name: string }
  /** `fn(args)` on the input (base undefined) or on the result of base. */
  | { kind: 'call'; base?: Node; name: string; args: Node[]; position: number }
  | { kind: 'indexer'; base: Node; index: Node }
  | { kind: 'this' }
  | { kind: 'index' }
  | { kind: 'total' }
  | { kind: 'variable'; name: string; position: number }
  | { kind: 'unary'; op: '+' | '-'; operand: Node }
  | { kind: 'binary'; op: string; left: Node; right: Node }
  | { kind: 'typeop'; op: 'is' | 'as'; operand: Node; type: string };

type TokenKind = 'identifier' | 'delimited' | 'string' | 'number' | 'datetime' | 'variable' | 'special' | 'op' | 'eof';
interface Token {
  kind: TokenKind;
  text: string;
  position: number;
}

const OPERATORS = ['<=', '>=', '!=', '!~', '{', '}', '.', '[', ']', '(', ')', ',', '+', '-', '*', '/', '&', '|', '=', '~', '<', '>'];
const ESCAPES: Record<string, string> = { "'": "'", '"': '"', '`': '`', '\\': '\\', '/': '/', f: '\f', n: '\n', r: '\r', t: '\t' };

function unescape(body: string, position: number): string {
  return body.replace(/\\(u[0-9a-fA-F]{4}|.)/g, (_, e: string) => {
    if (e.length === 5) return String.fromCharCode(parseInt(e.slice(1), 16));
    const c = ESCAPES[e];
    if (c === undefined) throw new FhirPathSyntaxError(`invalid escape '\\${e}'`, position);
    return c;
  });
}

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const quoted = (quote: string, start: number): string => {
    let j = start + 1;
    while (j < source.length && source[j] !== quote) j += source[j] === '\\' ? 2 : 1;
    if (j >= source.length) throw new FhirPathSyntaxError(`unterminated ${quote === "'" ? 'string' : 'identifier'}`, start);
    i = j + 1;
    return unescape(source.slice(start + 1, j), start);
  };
  while (i < source.length) {
    const c = source[i]!;
    const start = i;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '/' && source[i + 1] === '/') {
      while (i < source.length && source[i] !== '\n') i++;
    } else if (c === '/' && source[i + 1] === '*') {
      const end = source.indexOf('*/', i + 2);
      if (end < 0) throw new FhirPathSyntaxError('unterminated comment', i);
      i = end + 2;
    } else if (c === "'") {
      tokens.push({ kind: 'string', text: quoted("'", start), position: start });
    } else if (c === '`') {
      tokens.push({ kind: 'delimited', text: quoted('`', start), position: start });
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9]+(\.[0-9]+)?/.exec(source.slice(i))!;
      i += m[0].length;
      tokens.push({ kind: 'number', text: m[0], position: start });
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(source.slice(i))!;
      i += m[0].length;
      tokens.push({ kind: 'identifier', text: m[0], position: start });
    } else if (c === '%') {
      i++;
      const next = source[i];
      let name: string;
      if (next === '`' || next === "'") name = quoted(next, i);
      else {
        const m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(source.slice(i));
        if (!m) throw new FhirPathSyntaxError("expected a name after '%'", start);
        name = m[0];
        i += name.length;
      }
      tokens.push({ kind: 'variable', text: name, position: start });
    } else if (c === '$') {
      const m = /^\$(this|index|total)\b/.exec(source.slice(i));
      if (!m) throw new FhirPathSyntaxError("expected $this, $index or $total", start);
      i += m[0].length;
      tokens.push({ kind: 'special', text: m[1]!, position: start });
    } else if (c === '@') {
      const m = /^@(T[0-9:.]+|[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?(T([0-9:.]+)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)/.exec(source.slice(i));
      if (!m) throw new FhirPathSyntaxError('invalid date or time literal', start);
      i += m[0].length;
      tokens.push({ kind: 'datetime', text: m[1]!, position: start });
    } else {
      const op = OPERATORS.find((o) => source.startsWith(o, i));
      if (!op) throw new FhirPathSyntaxError(`unexpected character '${c}'`, start);
      i += op.length;
      tokens.push({ kind: 'op', text: op, position: start });
    }
  }
  tokens.push({ kind: 'eof', text: '', position: source.length });
  return tokens;
}

/** Binary operators from the loosest binding to the tightest (FHIRPath §"Operator precedence"). */
const PRECEDENCE: string[][] = [
  ['implies'],
  ['or', 'xor'],
  ['and'],
  ['in', 'contains'],
  ['=', '~', '!=', '!~'],
  ['<', '>', '<=', '>='],
  ['|'],
  ['is', 'as'],
  ['+', '-', '&'],
  ['*', '/', 'div', 'mod'],
];
const WORD_OPERATORS = new Set(['implies', 'or', 'xor', 'and', 'in', 'contains', 'is', 'as', 'div', 'mod']);

const MAX_NESTING = 128;

/** Parses a FHIRPath expression; throws FhirPathSyntaxError. */
export function parseFhirPath(source: string): Node {
  const tokens = tokenize(source);
  // The parser recurses once per bracket: a limit far beyond any real path keeps it off the stack's end.
  let depth = 0;
  for (const t of tokens) {
    if (t.kind !== 'op') continue;
    if (t.text === '(' || t.text === '[' || t.text === '{') depth++;
    else if (t.text === ')' || t.text === ']' || t.text === '}') depth--;
    if (depth > MAX_NESTING) throw new FhirPathSyntaxError(`brackets nested more than ${MAX_NESTING} deep`, t.position);
  }
  let pos = 0;
  const peek = (): Token => tokens[pos]!;
  const next = (): Token => tokens[pos++]!;
  const isOp = (t: Token, text: string): boolean =>
    (t.kind === 'op' || (t.kind === 'identifier' && WORD_OPERATORS.has(text))) && t.text === text;
  const expect = (text: string): Token => {
    const t = next();
    if (t.kind !== 'op' || t.text !== text) throw new FhirPathSyntaxError(`expected '${text}' but found ${describe(t)}`, t.position);
    return t;
  };

  const typeSpecifier = (): string => {
    const parts = [identifierText(next())];
    while (isOp(peek(), '.')) {
      next();
      parts.push(identifierText(next()));
    }
    return parts.join('.');
  };

  const binary = (level: number): Node => {
    if (level === PRECEDENCE.length) return unary();
    let left = binary(level + 1);
    for (;;) {
      const t = peek();
      const op = PRECEDENCE[level]!.find((o) => isOp(t, o));
      if (!op) return left;
      next();
      if (op === 'is' || op === 'as') left = { kind: 'typeop', op, operand: left, type: typeSpecifier() };
      else left = { kind: 'binary', op, left, right: binary(level + 1) };
    }
  };

  const unary = (): Node => {
    const t = peek();
    if (isOp(t, '-') || isOp(t, '+')) {
      next();
      return { kind: 'unary', op: t.text as '+' | '-', operand: unary() };
    }
    return postfix();
  };

  const args = (): Node[] => {
    const list: Node[] = [];
    if (isOp(peek(), ')')) {
      next();
      return list;
    }
    for (;;) {
      list.push(binary(0));
      const t = next();
      if (t.kind === 'op' && t.text === ')') return list;
      if (!(t.kind === 'op' && t.text === ',')) throw new FhirPathSyntaxError(`expected ',' or ')' but found ${describe(t)}`, t.position);
    }
  };

  /** A name followed by `(` is a function call, otherwise a member. */
  const invocation = (base: Node | undefined): Node => {
    const t = next();
    if (t.kind === 'special' && base === undefined) return { kind: t.text as 'this' | 'index' | 'total' };
    const name = identifierText(t);
    if (t.kind === 'identifier' && isOp(peek(), '(')) {
      next();
      return { kind: 'call', base, name, args: args(), position: t.position };
    }
    return { kind: 'member', base, name };
  };

  const term = (): Node => {
    const t = peek();
    switch (t.kind) {
      case 'string':
        next();
        return { kind: 'literal', type: 'string', value: t.text, text: t.text };
      case 'number': {
        next();
        if (peek().kind === 'string' || (peek().kind === 'identifier' && /^(year|month|week|day|hour|minute|second|millisecond)s?$/.test(peek().text)))
          throw new FhirPathSyntaxError('quantity literals are not supported', t.position);
        const decimal = t.text.includes('.');
        return { kind: 'literal', type: decimal ? 'decimal' : 'integer', value: decimal ? t.text : Number(t.text), text: t.text };
      }
      case 'datetime': {
        next();
        const type: LiteralType = t.text.startsWith('T') ? 'time' : t.text.includes('T') ? 'dateTime' : 'date';
        const text = t.text.startsWith('T') ? t.text.slice(1) : t.text.replace(/T$/, '');
        return { kind: 'literal', type, value: text, text: t.text };
      }
      case 'variable':
        next();
        return { kind: 'variable', name: t.text, position: t.position };
      case 'op':
        if (t.text === '(') {
          next();
          const inner = binary(0);
          expect(')');
          return inner;
        }
        if (t.text === '{') {
          next();
          expect('}');
          return { kind: 'empty' };
        }
        break;
      case 'identifier':
        if (t.text === 'true' || t.text === 'false') {
          next();
          return { kind: 'literal', type: 'boolean', value: t.text === 'true', text: t.text };
        }
        return invocation(undefined);
      case 'delimited':
      case 'special':
        return invocation(undefined);
      default:
        break;
    }
    throw new FhirPathSyntaxError(`unexpected ${describe(t)}`, t.position);
  };

  const postfix = (): Node => {
    let node = term();
    for (;;) {
      const t = peek();
      if (isOp(t, '.')) {
        next();
        node = invocation(node);
      } else if (isOp(t, '[')) {
        next();
        const index = binary(0);
        expect(']');
        node = { kind: 'indexer', base: node, index };
      } else {
        return node;
      }
    }
  };

  const tree = binary(0);
  const rest = peek();
  if (rest.kind !== 'eof') throw new FhirPathSyntaxError(`unexpected ${describe(rest)}`, rest.position);
  return tree;
}

function identifierText(t: Token): string {
  if (t.kind === 'identifier' || t.kind === 'delimited') return t.text;
  throw new FhirPathSyntaxError(`expected a name but found ${describe(t)}`, t.position);
}

function describe(t: Token): string {
  if (t.kind === 'eof') return 'the end of the expression';
  if (t.kind === 'string') return `string '${t.text}'`;
  return `'${t.kind === 'variable' ? '%' : ''}${t.text}'`;
}
