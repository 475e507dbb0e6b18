/**
 * Regression tests for the recipe-level findings of the independent attack (issue 20): prototype
 * pollution through user keys, placeholders expanded twice, unbounded inputs (huge strings, deep
 * gates, deep YAML flows) and messages that show values badly. All in-process, no stage runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRecipe } from '../src/recipe/load.js';
import { RecipeError, UsageError, shown, type RecipeProblem } from '../src/recipe/errors.js';
import { parseOverride } from '../src/recipe/overrides.js';
import { substitute } from '../src/stages/exec.js';
import { parseGate, GateSyntaxError } from '../src/recipe/gates.js';

function problems(text: string, sets?: string[]): RecipeProblem[] {
  try {
    parseRecipe(text, 'r.yaml', { sets });
  } catch (e) {
    assert.ok(e instanceof RecipeError, `expected RecipeError, got ${(e as Error).stack}`);
    return e.problems;
  }
  assert.fail('recipe was accepted');
}

function expectAt(ps: RecipeProblem[], line: number, col: number, re: RegExp): void {
  const hit = ps.find((p) => p.line === line && p.col === col && re.test(p.message));
  assert.ok(hit, `no problem at ${line}:${col} matching ${re}; got:\n${ps.map((p) => `${p.line}:${p.col} ${p.path} ${p.message}`).join('\n')}`);
}

const HEAD = `version: 1
data:
  digits: { source: mnist, limit: 100 }
stages:
`;

test('matrix key `__proto__.polluted` is a positioned recipe error and Object.prototype stays clean', () => {
  const ps = problems(`${HEAD}  base:
    uses: train
    matrix: { __proto__.polluted: [1] }
    with: { model: mlp-small }
`);
  expectAt(ps, 7, 35, /matrix key '__proto__.polluted': '__proto__' is not a `with` key/);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('a `__proto__` key under with: is a positioned recipe error, not an inherited with.path', () => {
  const ps = problems(`${HEAD}  m:
    uses: load
    with: { __proto__: { path: models/x } }
`);
  expectAt(ps, 7, 13, /key '__proto__' is not allowed/);
});

test('--set through `__proto__` is a usage error', () => {
  assert.throws(() => parseOverride('stages.__proto__.polluted=1'), (e: unknown) => e instanceof UsageError && /__proto__/.test(e.message));
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('a parameter holding `${outputs}` reaches the exec command as literal text (expanded once)', () => {
  const r = parseRecipe(
    `version: 1
params: { x: "\${outputs}/../../../pwned9", y: "a$$b" }
stages:
  e:
    uses: exec
    with: { command: [touch, "\${params.x}", "--y=\${params.y}", "\${outputs}/ok"] }
`,
    'r.yaml',
  );
  const argv = substitute(r.stageById.get('e')!.with.command, '/OUT', []);
  assert.deepEqual(argv, ['touch', '${outputs}/../../../pwned9', '--y=a$$b', '/OUT/ok']);
});

test('a 1,000,000-character `uses:` is refused quickly, without echoing it back', () => {
  const huge = 'x'.repeat(1_000_000);
  const t0 = process.hrtime.bigint();
  const ps = problems(`${HEAD}  a:\n    uses: ${huge}\n`);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  expectAt(ps, 6, 11, /string of 1000000 characters is longer than 4096/);
  assert.ok(ps.every((p) => p.message.length < 300), 'a message echoes the huge string');
  assert.ok(ms < 2000, `took ${ms} ms`);
});

test('an unknown 3,000-character stage name in needs gets no suggestion and is shown truncated', () => {
  const long = `b${'a'.repeat(3000)}`;
  const ps = problems(`${HEAD}  base:\n    uses: train\n    needs: [${long}]\n    with: { model: mlp-small }\n`);
  const p = ps.find((x) => /unknown stage/.test(x.message));
  assert.ok(p, JSON.stringify(ps));
  assert.match(p.message, /… \(3001 characters\)/);
  assert.doesNotMatch(p.message, /did you mean/);
});

test('gates: 5,000 nested parentheses and 20,000 unary minus signs are clear recipe errors', () => {
  for (const gate of [`accuracy >= ${'('.repeat(5000)}1${')'.repeat(5000)}`, `accuracy >= ${'-'.repeat(20000)}1`]) {
    assert.throws(() => parseGate(gate), (e: unknown) => e instanceof GateSyntaxError && /at most 1000 characters/.test(e.message));
  }
  assert.throws(() => parseGate(`accuracy >= ${'('.repeat(100)}1${')'.repeat(100)}`), (e: unknown) => e instanceof GateSyntaxError && /nested more than 32 deep/.test(e.message));
  assert.throws(() => parseGate(`accuracy >= ${'-'.repeat(400)}1`), (e: unknown) => e instanceof GateSyntaxError && /nested more than 32 deep/.test(e.message));
});

test('gates dividing by constant zero are recipe errors (NaN and infinite bounds)', () => {
  for (const g of ['accuracy >= 0/0', 'accuracy != 0/0', 'accuracy >= 1/0', 'accuracy / 0 >= 1']) {
    const ps = problems(`${HEAD}  base:\n    uses: train\n    with: { model: mlp-small }\n  ev:\n    uses: evaluate\n    needs: [base]\n    with: { gates: ["${g}"] }\n`);
    expectAt(ps, 11, 21, /division by zero|divides by zero/);
  }
});

test('3,000 nested YAML flow levels give the 64-level message, not a stack overflow', () => {
  const ps = problems(`version: 1\nx: ${'['.repeat(3000)}${']'.repeat(3000)}\n`);
  assert.ok(ps.some((p) => /nested more than 64 levels deep/.test(p.message) && p.line === 2), JSON.stringify(ps.map((p) => p.message)));
  assert.ok(ps.every((p) => !/call stack/.test(p.message)));
});

test('messages show non-string values as YAML-ish JSON, escape control characters, and say NaN', () => {
  const ps = problems(`${HEAD}  a:\n    uses: { a: 1 }\n  s:\n    uses: !!set { load }\n  b:\n    uses: "tr\\u0007ain"\n  c:\n    uses: train\n    with: { model: mlp-small, epochs: .nan }\n`);
  const all = ps.map((p) => p.message).join('\n');
  assert.doesNotMatch(all, /\[object Object\]/);
  assert.match(all, /unknown stage kind '\{"a":1\}'/);
  assert.match(all, /unknown stage kind 'tr\\u0007ain'/);
  assert.doesNotMatch(all, /\u0007/);
  assert.match(all, /must be integer, got NaN/);
  assert.equal(shown({ a: 1 }), '{"a":1}');
});

test('a second YAML document is explained without naming yaml\'s API', () => {
  const ps = problems(`version: 1\nstages: {}\n---\nversion: 1\n`);
  assert.ok(ps.some((p) => /more than one YAML document/.test(p.message)), JSON.stringify(ps));
  assert.ok(ps.every((p) => !/parseAllDocuments/.test(p.message)));
});

test('unknown YAML tags (!!js/function) are recipe errors at their position', () => {
  const ps = problems(`${HEAD}  a:\n    uses: !!js/function "function () {}"\n`);
  expectAt(ps, 6, 11, /unknown tag .*js\/function/);
});
