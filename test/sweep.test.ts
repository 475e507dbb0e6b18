import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseRecipe } from '../src/recipe/load.js';
import { RecipeError } from '../src/recipe/errors.js';
import { parseBranchId, sweepTables } from '../src/report/sweep.js';
import { cli, ROOT, workspace } from './helpers.js';

const recipe = (stages: string) => `version: 1
data: { d: { source: mnist, limit: 200 } }
stages:
${stages}`;

function problemsOf(text: string): string[] {
  try {
    parseRecipe(text, 'r.yaml');
  } catch (e) {
    if (e instanceof RecipeError) return e.problems.map((p) => `${p.line}:${p.col} ${p.path} ${p.message}`);
    throw e;
  }
  return [];
}

test('matrix: branches, fan-out downstream, shared diamonds, teacher and gate references follow the branch', () => {
  const r = parseRecipe(recipe(`  base: { uses: train, with: { model: mlp-small, epochs: 1 } }
  prune:
    uses: prune
    needs: [base]
    matrix: { sparsity: [0.5, 0.8] }
  a: { uses: retrain, needs: [prune, base], with: { teacher: base } }
  b: { uses: retrain, needs: [prune] }
  q:
    uses: quantize
    needs: [a]
    matrix: { default: { bits: [4, 8] } }
    with: { default: { method: kmeans } }
  both: { uses: retrain, needs: [a, b], with: { teacher: b } }
  ev:
    uses: evaluate
    needs: [both]
    with: { gates: ["accuracy >= stages.prune.accuracy - 0.1"] }
`), 'r.yaml');
  const ids = r.stages.map((s) => s.id);
  assert.deepEqual(ids, [
    'base', 'prune[sparsity=0.5]', 'prune[sparsity=0.8]',
    'a[sparsity=0.5]', 'a[sparsity=0.8]', 'b[sparsity=0.5]', 'b[sparsity=0.8]',
    'q[sparsity=0.5,bits=4]', 'q[sparsity=0.5,bits=8]', 'q[sparsity=0.8,bits=4]', 'q[sparsity=0.8,bits=8]',
    // a and b descend from the same sweep: `both` pairs matching branches (2, not 4).
    'both[sparsity=0.5]', 'both[sparsity=0.8]', 'ev[sparsity=0.5]', 'ev[sparsity=0.8]',
  ]);
  const by = (id: string) => r.stageById.get(id)!;
  assert.equal(by('prune[sparsity=0.8]').with.sparsity, 0.8);
  assert.equal(by('prune[sparsity=0.8]').with.matrix, undefined);
  assert.deepEqual(by('a[sparsity=0.8]').needs, ['prune[sparsity=0.8]', 'base']);
  assert.equal(by('a[sparsity=0.8]').with.teacher, 'base', 'an unswept teacher keeps its id');
  assert.deepEqual(by('q[sparsity=0.8,bits=4]').with.default, { method: 'kmeans', bits: 4 });
  assert.deepEqual(by('q[sparsity=0.8,bits=4]').needs, ['a[sparsity=0.8]']);
  assert.deepEqual(by('both[sparsity=0.5]').needs, ['a[sparsity=0.5]', 'b[sparsity=0.5]']);
  assert.equal(by('both[sparsity=0.5]').with.teacher, 'b[sparsity=0.5]', 'a swept teacher follows the branch');
  assert.deepEqual(by('ev[sparsity=0.5]').with.gates, ['accuracy >= stages.prune[sparsity=0.5].accuracy - 0.1']);
  assert.deepEqual(parseBranchId('q[sparsity=0.8,bits=4]'), { stage: 'q', coords: { sparsity: '0.8', bits: '4' } });
  assert.equal(parseBranchId('q'), undefined);
});

test('matrix: mistakes are positioned at the matrix entry, once for all branches', () => {
  const bad = recipe(`  base: { uses: train, with: { model: mlp-small, epochs: 1 } }
  prune:
    uses: prune
    needs: [base]
    matrix:
      sparsity: [0.5, 1.5]
      method: [magnitude, "rm -rf"]
  q:
    uses: quantize
    needs: [prune]
    matrix: { default: { bitz: [4, 8] }, calibration: 3 }
`);
  const ps = problemsOf(bad);
  assert.deepEqual(ps, [
    '9:23 stages.prune.matrix.sparsity[1] must be < 1',
    '10:27 stages.prune.matrix.method[1] matrix value "rm -rf": use numbers, booleans or strings of letters, digits and _ . + - (they become part of stage ids)',
    "14:26 stages.q.matrix.default.bitz unknown key 'bitz'; did you mean 'bits'? (allowed: method, bits, symmetric, perChannel, init)",
    '14:55 stages.q.matrix.calibration a matrix entry is a non-empty list of values (or a mapping of `with` keys to lists)',
  ]);
  assert.match(problemsOf(recipe(`  base: { uses: train, with: { model: mlp-small } }\n  "x[a=1]": { uses: evaluate, needs: [base] }\n`)).join('\n'), /'\[' in a stage id is reserved for sweep branches/);
});

test('a 3x3 sweep on LeNet-300-100: branches run concurrently, upstream shared from cache, pareto table of 9', async () => {
  const { dir } = workspace(readFileSync(join(ROOT, 'pipelines', 'sweep-lenet-300-100.yaml'), 'utf8'));
  // The committed recipe, shrunk: 600 digits, one epoch each, the pruning schedule fitted to 8 steps/epoch.
  const small = ['data.digits.limit=600', 'stages.baseline.with.epochs=1', 'stages.prune.with.train.epochs=2', 'stages.prune.with.schedule.endStep=12', 'stages.prune.with.schedule.frequency=2', 'stages.quantize.with.finetune.epochs=1',
    // A model trained one epoch on 600 digits has near-tied logits: int8 agrees with float on ~95%, not 99%.
    'stages.mobile.with.threshold=0.9', 'stages.edge.with.threshold=0.9'].flatMap((s) => ['--set', s]);
  const first = await cli(['run', '--json', '--concurrency', '2', ...small], dir);
  assert.ok([0, 3].includes(first.exitCode!), first.stderr);
  const events = first.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const ends = events.filter((e) => e.type === 'stage-end').map((e) => e.outcome);
  assert.equal(ends.length, 26, 'baseline, baseline-eval, 3 prune, 9 quantize, 9 eval, 3 exports of one branch');
  assert.ok(ends.every((o) => o.status === 'ran'), JSON.stringify(ends.map((o) => [o.id, o.status, o.reason])));
  // Concurrency: at some point two branches were running at once.
  let running = 0, most = 0;
  for (const e of events) {
    if (e.type === 'stage-start') most = Math.max(most, ++running);
    if (e.type === 'stage-end' && e.outcome.status === 'ran') running--;
  }
  assert.ok(most >= 2, `at most ${most} stage(s) ran at once`);
  // Each branch is its own cache entry.
  assert.equal(new Set(ends.filter((o) => o.id.startsWith('quantize[')).map((o) => o.key)).size, 9);
  const prunes = ends.filter((o) => o.id.startsWith('prune['));
  // Branches finish in whatever order the machine gives them: each branch's sparsity is the one its id names.
  const bySparsity = prunes.map((o) => [/finalSparsity=([\d.]+)/.exec(o.id)![1], Number(o.metrics.sparsity.toFixed(2))] as const);
  assert.deepEqual(bySparsity.map(([named]) => named).sort(), ['0.5', '0.75', '0.9']);
  for (const [named, got] of bySparsity) assert.equal(got, Number(named), `prune[finalSparsity=${named}]`);

  const summary = readFileSync(join(events.find((e) => e.type === 'run-end') ? dir : dir, '.compress', 'reports', events[0].runId, 'summary.md'), 'utf8');
  const section = summary.slice(summary.indexOf('### sweep `eval`'));
  assert.match(section, /### sweep `eval`: 9 branches, \d on the pareto front/);
  const rows = section.split('\n').filter((l) => /^\| 0\.\d+ \| [468] \|/.test(l));
  assert.equal(rows.length, 9, section);
  const tables = sweepTables(JSON.parse(readFileSync(join(dir, '.compress', 'reports', events[0].runId, 'report.json'), 'utf8')).stages);
  const evalTable = tables.find((t) => t.stage === 'eval')!;
  assert.deepEqual(evalTable.axes, ['finalSparsity', 'bits']);
  assert.ok(evalTable.rows.some((r) => r.pareto) && evalTable.rows.every((r, i, a) => i === 0 || a[i - 1].size! <= r.size!));
  const html = readFileSync(join(dir, '.compress', 'reports', events[0].runId, 'report.html'), 'utf8');
  const table = /<table class="sweep" data-sweep="eval">([\s\S]*?)<\/table>/.exec(html)?.[1] ?? '';
  assert.equal((table.match(/<tr/g) ?? []).length, 1 + 9, 'header + 9 branches in the HTML pareto table');
  // The smallest model is the sparsest, most coarsely quantized one.
  assert.deepEqual(evalTable.rows[0].coords, { finalSparsity: '0.9', bits: '4' });

  // Widening the bits axis reruns only the new branches; baseline and the pruned models come from cache.
  const second = await cli(['run', '--json', ...small, '--set', 'stages.quantize.matrix.default.bits=[4,5,8]'], dir);
  const ends2 = second.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'stage-end').map((e) => e.outcome);
  const ran = ends2.filter((o) => o.status === 'ran').map((o) => o.id).sort();
  assert.deepEqual(ran, ['0.5', '0.75', '0.9'].flatMap((s) => [`eval[finalSparsity=${s},bits=5]`, `quantize[finalSparsity=${s},bits=5]`]).sort());
  assert.equal(ends2.filter((o) => o.status === 'cached').length, 2 + 3 + 6 + 6 + 3);
});
