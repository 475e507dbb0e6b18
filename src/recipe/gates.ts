/**
 * Gate expressions: one comparison of two arithmetic expressions over numbers and metric references,
 * e.g. `accuracy >= stages.baseline.accuracy - 0.005`. Parsed here, never evaluated as code.
 */
export type Expr =
  | { type: 'num'; value: number }
  | { type: 'ref'; path: string[]; text: string }
  | { type: 'neg'; arg: Expr }
  | { type: 'bin'; op: '+' | '-' | '*' | '/'; left: Expr; right: Expr };

export type Comparator = '>=' | '<=' | '>' | '<' | '==' | '!=';

export interface Gate {
  source: string;
  op: Comparator;
  left: Expr;
  right: Expr;
}

export class GateSyntaxError extends Error {
  constructor(
    message: string,
    readonly column: number,
  ) {
    super(message);
  }
}

/** Longest gate: real ones are a few dozen characters; the parser and tree walks stay linear and shallow below this. */
export const MAX_GATE_LENGTH = 1000;
/** Deepest nesting of parentheses and unary minus signs. */
export const MAX_GATE_DEPTH = 32;

interface Token {
  kind: 'num' | 'id' | 'op' | 'end';
  text: string;
  pos: number;
}

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    const num = /^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?%?/.exec(src.slice(i));
    if (num) {
      tokens.push({ kind: 'num', text: num[0], pos: i });
      i += num[0].length;
      continue;
    }
    const id = /^[A-Za-z_][A-Za-z0-9_-]*(\[[^\]\s]*\])?(\.[A-Za-z_][A-Za-z0-9_-]*(\[[^\]\s]*\])?)*/.exec(src.slice(i));
    if (id) {
      tokens.push({ kind: 'id', text: id[0], pos: i });
      i += id[0].length;
      continue;
    }
    const op = /^(>=|<=|==|!=|>|<|\+|-|\*|\/|\(|\))/.exec(src.slice(i));
    if (op) {
      tokens.push({ kind: 'op', text: op[0], pos: i });
      i += op[0].length;
      continue;
    }
    throw new GateSyntaxError(`unexpected character ${JSON.stringify(c)}`, i + 1);
  }
  tokens.push({ kind: 'end', text: '', pos: src.length });
  return tokens;
}

/** Splits `stages.prune[finalSparsity=0.9].accuracy` into ['stages', 'prune[finalSparsity=0.9]', 'accuracy']. */
function splitRef(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let depth = 0;
  for (const ch of text) {
    if (ch === '[') depth++;
    if (ch === ']') depth--;
    if (ch === '.' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

export function parseGate(source: string): Gate {
  if (source.length > MAX_GATE_LENGTH) throw new GateSyntaxError(`a gate is at most ${MAX_GATE_LENGTH} characters (this one has ${source.length})`, MAX_GATE_LENGTH + 1);
  const toks = tokenize(source);
  let i = 0;
  let depth = 0;
  const peek = () => toks[i];
  const next = () => toks[i++];
  const fail = (msg: string, t = peek()): never => {
    throw new GateSyntaxError(msg, t.pos + 1);
  };
  const factor = (): Expr => {
    const t = next();
    if ((t.text === '-' || t.text === '(') && ++depth > MAX_GATE_DEPTH) fail(`parentheses and minus signs nested more than ${MAX_GATE_DEPTH} deep`, t);
    const e = primary(t);
    if (t.text === '-' || t.text === '(') depth--;
    return e;
  };
  const primary = (t: Token): Expr => {
    if (t.kind === 'num') {
      const pct = t.text.endsWith('%');
      const v = Number(pct ? t.text.slice(0, -1) : t.text);
      return { type: 'num', value: pct ? v / 100 : v };
    }
    if (t.kind === 'id') return { type: 'ref', path: splitRef(t.text), text: t.text };
    if (t.text === '-') return { type: 'neg', arg: factor() };
    if (t.text === '(') {
      const e = sum();
      if (peek().text !== ')') fail(`expected ')'`);
      next();
      return e;
    }
    return fail(t.kind === 'end' ? 'expression ends too early' : `unexpected '${t.text}'`, t);
  };
  const product = (): Expr => {
    let e = factor();
    while (peek().text === '*' || peek().text === '/') {
      const op = next().text as '*' | '/';
      e = { type: 'bin', op, left: e, right: factor() };
    }
    return e;
  };
  const sum = (): Expr => {
    let e = product();
    while (peek().text === '+' || peek().text === '-') {
      const op = next().text as '+' | '-';
      e = { type: 'bin', op, left: e, right: product() };
    }
    return e;
  };
  const left = sum();
  const opTok = next();
  if (!['>=', '<=', '>', '<', '==', '!='].includes(opTok.text)) {
    fail(opTok.kind === 'end' ? 'a gate needs a comparison (>=, <=, >, <, ==, !=)' : `expected a comparison, got '${opTok.text}'`, opTok);
  }
  const right = sum();
  if (peek().kind !== 'end') fail(`unexpected '${peek().text}' after the comparison`);
  return { source, op: opTok.text as Comparator, left, right };
}

/** The value of an expression without references, or undefined when it reads a metric. */
export function constantValue(e: Expr): number | undefined {
  return refsOf(e).length ? undefined : evalExpr(e, () => NaN);
}

/** Why an expression can never be a number (a constant part that is NaN or infinite, a division by a constant 0). */
export function nonFiniteConstant(e: Expr): string | undefined {
  const c = constantValue(e);
  if (c !== undefined) return Number.isFinite(c) ? undefined : `is ${c} (a division by zero?)`;
  if (e.type === 'neg') return nonFiniteConstant(e.arg);
  if (e.type !== 'bin') return undefined;
  if (e.op === '/' && constantValue(e.right) === 0) return 'divides by zero';
  return nonFiniteConstant(e.left) ?? nonFiniteConstant(e.right);
}

export function refsOf(e: Expr): Array<Extract<Expr, { type: 'ref' }>> {
  switch (e.type) {
    case 'ref':
      return [e];
    case 'neg':
      return refsOf(e.arg);
    case 'bin':
      return [...refsOf(e.left), ...refsOf(e.right)];
    default:
      return [];
  }
}

export function evalExpr(e: Expr, lookup: (ref: Extract<Expr, { type: 'ref' }>) => number): number {
  switch (e.type) {
    case 'num':
      return e.value;
    case 'ref':
      return lookup(e);
    case 'neg':
      return -evalExpr(e.arg, lookup);
    case 'bin': {
      const a = evalExpr(e.left, lookup);
      const b = evalExpr(e.right, lookup);
      return e.op === '+' ? a + b : e.op === '-' ? a - b : e.op === '*' ? a * b : a / b;
    }
  }
}

export function compare(op: Comparator, a: number, b: number): boolean {
  switch (op) {
    case '>=':
      return a >= b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    case '<':
      return a < b;
    case '==':
      return a === b;
    case '!=':
      return a !== b;
  }
}
