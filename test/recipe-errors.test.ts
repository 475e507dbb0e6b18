import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRecipe } from '../src/recipe/load.js';
import { RecipeError, type RecipeProblem } from '../src/recipe/errors.js';

const GOOD = `# yaml-language-server: $schema=./schemas/recipe.schema.json
version: 1
name: t
seed: 3
params:
  sparsity: 0.8
data:
  digits: { source: mnist, limit: 500 }
stages:
  baseline:
    uses: train
    with: { model: mlp-small, epochs: 1 }
  prune:
    uses: prune
    needs: [baseline]
    with: { sparsity: "\${params.sparsity}" }
  report:
    uses: evaluate
    needs: [prune]
`;

function problems(text: string, sets?: string[]): RecipeProblem[] {
  try {
    parseRecipe(text, 'r.yaml', { sets });
  } catch (e) {
    assert.ok(e instanceof RecipeError, `expected RecipeError, got ${e}`);
    return e.problems;
  }
  assert.fail('recipe was accepted');
}

/** Asserts one problem sits at line:col with a message matching `re`. */
function expectAt(ps: RecipeProblem[], line: number, col: number, re: RegExp): void {
  const hit = ps.find((p) => p.line === line && p.col === col && re.test(p.message));
  assert.ok(hit, `no problem at ${line}:${col} matching ${re}; got:\n${ps.map((p) => `${p.line}:${p.col} ${p.path} ${p.message}`).join('\n')}`);
}

test('a valid recipe parses, interpolates params and applies defaults', () => {
  const r = parseRecipe(GOOD, 'r.yaml');
  assert.equal(r.stages.length, 3);
  assert.equal(r.stageById.get('prune')!.with.sparsity, 0.8);
  assert.equal(r.stageById.get('prune')!.with.method, 'magnitude');
  assert.deepEqual(r.stageById.get('report')!.datasets, ['digits']);
});

test('1: YAML syntax error is positioned', () => {
  expectAt(problems('version: 1\nstages:\n  a: [1, 2\n'), 4, 1, /YAML/);
});

test('2: unknown top-level key with did-you-mean', () => {
  expectAt(problems(GOOD.replace('seed: 3', 'sed: 3')), 4, 1, /unknown key 'sed'; did you mean 'seed'/);
});

test('3: unknown key inside with: did-you-mean from the kind schema', () => {
  expectAt(problems(GOOD.replace('epochs: 1', 'epocs: 1')), 12, 31, /unknown key 'epocs'; did you mean 'epochs'/);
});

test('4: unknown stage kind with did-you-mean', () => {
  expectAt(problems(GOOD.replace('uses: train', 'uses: trian')), 11, 11, /unknown stage kind 'trian'; did you mean 'train'/);
});

test('5: unknown stage in needs with did-you-mean', () => {
  expectAt(problems(GOOD.replace('needs: [baseline]', 'needs: [baselin]')), 15, 13, /unknown stage 'baselin'; did you mean 'baseline'/);
});

test('6: wrong type is positioned at the value', () => {
  expectAt(problems(GOOD.replace('epochs: 1', 'epochs: "many"')), 12, 39, /must be integer/);
});

test('7: out-of-range number', () => {
  expectAt(problems(GOOD.replace('sparsity: "${params.sparsity}"', 'sparsity: 1.5')), 16, 23, /must be < 1/);
});

test('8: missing required key', () => {
  expectAt(problems(GOOD.replace('    uses: evaluate\n', '')), 18, 5, /missing required key 'uses'/);
});

test('9: unknown parameter reference', () => {
  expectAt(problems(GOOD.replace('${params.sparsity}', '${params.sparsty}')), 16, 23, /unknown parameter 'sparsty'; did you mean 'sparsity'/);
});

test('10: dependency cycle is spelled out', () => {
  const ps = problems(GOOD.replace('  baseline:\n    uses: train\n', '  baseline:\n    uses: train\n    needs: [report]\n'));
  assert.ok(ps.some((p) => /dependency cycle: baseline needs report needs prune needs baseline/.test(p.message)), ps.map((p) => p.message).join('\n'));
});

test('11: unknown dataset with did-you-mean', () => {
  expectAt(problems(GOOD.replace('with: { model: mlp-small, epochs: 1 }', 'with: { model: mlp-small, epochs: 1, data: digit }')), 12, 48, /unknown dataset 'digit'; did you mean 'digits'/);
});

test('12: enum value with allowed list', () => {
  expectAt(problems(GOOD.replace('model: mlp-small', 'model: lenet-6')), 12, 20, /'lenet-6' is not allowed; did you mean 'lenet-5'/);
});

test('13: gate referencing an unknown metric is caught at validation', () => {
  const text = GOOD.replace('    needs: [prune]\n', '    needs: [prune]\n    with:\n      gates: ["acuracy >= 0.9"]\n');
  expectAt(problems(text), 21, 15, /no metric 'acuracy'; did you mean 'accuracy'/);
});

test('14: gate syntax error names the column', () => {
  const text = GOOD.replace('    needs: [prune]\n', '    needs: [prune]\n    with:\n      gates: ["accuracy >= >"]\n');
  expectAt(problems(text), 21, 15, /at column 13/);
});

test('15: a stage that needs a model but has none', () => {
  expectAt(problems(GOOD.replace('    needs: [prune]\n', '')), 18, 11, /an 'evaluate' stage needs 1 upstream model stage/);
});

test('all problems are reported at once, sorted by position', () => {
  const ps = problems(GOOD.replace('sed', 'x').replace('seed: 3', 'sed: 3').replace('epochs: 1', 'epocs: 1').replace('uses: evaluate', 'uses: evaluat'));
  assert.equal(ps.length, 3);
  assert.deepEqual(ps.map((p) => p.line), [4, 12, 18]);
});

test('--set overrides are typed, validated and named as the origin', () => {
  const r = parseRecipe(GOOD, 'r.yaml', { sets: ['stages.baseline.with.epochs=2', 'params.sparsity=0.5'] });
  assert.equal(r.stageById.get('baseline')!.with.epochs, 2);
  assert.equal(r.stageById.get('prune')!.with.sparsity, 0.5);
  const ps = problems(GOOD, ['stages.baseline.with.epochs=zero']);
  assert.equal(ps[0].origin, '--set stages.baseline.with.epochs=zero');
  assert.match(ps[0].message, /must be integer/);
});

test('--set of a param the recipe neither declares nor reads is a typo, refused with the declared ones and a suggestion', () => {
  assert.throws(() => parseRecipe(GOOD, 'r.yaml', { sets: ['params.sparsty=0.5'] }), /--set params\.sparsty=0\.5: 'params' has no param 'sparsty' and nothing reads \$\{params\.sparsty\} \(the recipe's params: sparsity\); did you mean 'sparsity'\?/);
});

test('alias bombs are refused', () => {
  const bomb = ['version: 1', 'a: &a [x, x, x, x, x, x, x, x, x, x]', 'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]', 'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]', 'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]', 'stages: {}'].join('\n');
  const ps = problems(bomb);
  assert.match(ps[0].message, /alias/i);
});

test('--set finds a dotted matrix key as written instead of adding a nested axis for the same path', () => {
  const swept = GOOD.replace('    with: { sparsity: "${params.sparsity}" }', '    with: { sparsity: "${params.sparsity}" }\n    matrix: { schedule.finalSparsity: [0.5, 0.75] }').replace(
    'with: { sparsity: "${params.sparsity}" }',
    'with: { schedule: { kind: polynomial-decay, initialSparsity: 0, finalSparsity: 0.5, beginStep: 0, endStep: 10 } }',
  );
  const before = parseRecipe(swept, 'r.yaml');
  assert.deepEqual(before.stages.map((s) => s.id).filter((id) => id.startsWith('prune')), ['prune[finalSparsity=0.5]', 'prune[finalSparsity=0.75]']);
  const r = parseRecipe(swept, 'r.yaml', { sets: ['stages.prune.matrix.schedule.finalSparsity=[0.6, 0.9]'] });
  assert.deepEqual(r.stages.map((s) => s.id).filter((id) => id.startsWith('prune')), ['prune[finalSparsity=0.6]', 'prune[finalSparsity=0.9]']);
});

const PRUNE_WITH = (w: string) => `version: 1
data:
  digits: { source: mnist, limit: 100 }
stages:
  base:
    uses: train
    with: { model: mlp-small, epochs: 1 }
  p:
    uses: prune
    needs: [base]
    with: ${w}
`;

test('a prune schedule with no target anywhere is reported by validate at the schedule', () => {
  expectAt(problems(PRUNE_WITH('{ schedule: { kind: one-shot } }')), 11, 23, /one-shot schedule needs a target: set schedule\.sparsity or the stage's sparsity/);
});

test("a prune stage's sparsity and its schedule's own target that disagree are reported", () => {
  expectAt(problems(PRUNE_WITH('{ sparsity: 0.5, schedule: { kind: constant, targetSparsity: 0.7, beginStep: 0 } }')), 11, 23, /sparsity 0\.5 and schedule\.targetSparsity 0\.7 disagree/);
});

test("a prune stage's sparsity is the target of a schedule that gives none (accepted)", () => {
  assert.doesNotThrow(() => parseRecipe(PRUNE_WITH('{ sparsity: 0.5, schedule: { kind: one-shot, step: 0 } }'), 'r.yaml'));
});

test('validate lists every key a prune schedule lacks, and keys its kind does not read', () => {
  const ps = problems(PRUNE_WITH('{ sparsity: 0.5, schedule: { kind: polynomial-decay, finalSparsity: 0.5, targetSparsity: 0.4 } }'));
  expectAt(ps, 11, 38, /a polynomial-decay schedule needs initialSparsity, beginStep, endStep/);
  assert.ok(ps.some((p) => /does not read targetSparsity/.test(p.message)), ps.map((p) => p.message).join('\n'));
});

test("a stage sparsity that the method or a threshold overrides, or next to an iterative rate, is reported", () => {
  expectAt(problems(PRUNE_WITH('{ method: "n:m", n: 2, m: 4, sparsity: 0.9 }')), 11, 50, /n:m pruning keeps n of every m weights .* sparsity 0\.9 is not used/);
  expectAt(problems(PRUNE_WITH('{ threshold: 0.01, sparsity: 0.9 }')), 11, 24, /give threshold or sparsity, not both/);
  expectAt(problems(PRUNE_WITH('{ sparsity: 0.5, schedule: { kind: iterative, rate: 0.2, rounds: 2, frequency: 1 } }')), 11, 23, /iterative schedule with a rate sets its own target/);
});

test('a prune schedule whose targets are given per layer, or by an iterative rate, is accepted without a stage sparsity', () => {
  assert.doesNotThrow(() => parseRecipe(PRUNE_WITH('{ schedule: { kind: polynomial-decay, initialSparsity: 0, beginStep: 0, endStep: 4, frequency: 1 }, layers: [ { match: "*", finalSparsity: 0.5 } ] }'), 'r.yaml'));
  assert.doesNotThrow(() => parseRecipe(PRUNE_WITH('{ schedule: { kind: iterative, rate: 0.2, rounds: 2, frequency: 1 } }'), 'r.yaml'));
});
