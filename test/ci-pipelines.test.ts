import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { cli, ROOT } from './helpers.js';

// A CI job over a pipelines/ example: the real recipe (copied, so the repository gets no lock or
// reports), cut down with --set so it takes seconds: 600 digits, 2 epochs, a pruning schedule that
// ends within them. Its accuracy gate is widened (2 epochs on 480 digits cannot hold a 1-point budget)
// and the int8 exports' agreement threshold lowered (60 test digits: one disagreement is 1.7%).
const PIPELINE = 'lenet-300-100-prune.yaml';
const CUT = [
  'data.digits.limit=600',
  'stages.baseline.with.epochs=2',
  'stages.prune.with.train.epochs=2',
  'stages.prune.with.schedule.endStep=10',
  'stages.prune.with.schedule.frequency=2',
  'stages.report.with.gates.0=accuracy >= stages.baseline-eval.accuracy - 0.3',
  'stages.mobile.with.threshold=0.9',
  'stages.edge.with.threshold=0.9',
  'stages.baseline-eval.with.latencySamples=5',
  'stages.report.with.latencySamples=5',
].flatMap((s) => ['--set', s]);
const sets = (...more: string[]) => [...CUT, ...more.flatMap((s) => ['--set', s])];

/** A workspace holding a copy of the pipeline, a step-summary file, and what the tests read from it. */
function ciWorkspace(ws: string) {
  const lockPath = join(ws, PIPELINE.replace(/\.yaml$/, '.lock'));
  const summaryFile = join(ws, 'step-summary.md');
  const reportsDir = () => join(ws, '.compress', 'reports');
  return {
    ws,
    lockPath,
    summaryFile,
    reportsDir,
    runIds: () => (existsSync(reportsDir()) ? readdirSync(reportsDir()).sort() : []),
    ci: (args: string[], env: Record<string, string> = {}) => cli(args, ws, { CI: 'true', GITHUB_STEP_SUMMARY: summaryFile, ...env }),
    lockStages: () => parse(readFileSync(lockPath, 'utf8')).stages as Record<string, { key: string; outputs: Record<string, string> }>,
  };
}

function freshWorkspace() {
  const w = ciWorkspace(mkdtempSync(join(tmpdir(), 'compress-ci-')));
  copyFileSync(join(ROOT, 'pipelines', PIPELINE), join(w.ws, PIPELINE));
  writeFileSync(w.summaryFile, '## an earlier step\n');
  return w;
}

/** The first CI run of the pipeline, made once (the tests after it work on copies of its workspace). */
let firstRun: Promise<{ w: ReturnType<typeof ciWorkspace>; r: Awaited<ReturnType<typeof cli>> }> | undefined;
const completedRun = () =>
  (firstRun ??= (async () => {
    const w = freshWorkspace();
    return { w, r: await w.ci(['run', PIPELINE, ...CUT]) };
  })());

/** A private copy of the workspace of a completed run (cache, outputs, lock, reports): no test sees another's files. */
async function copyOfCompletedRun() {
  const { w, r } = await completedRun();
  assert.equal(r.exitCode, 0, `the first run failed: ${r.stderr}`);
  const copy = ciWorkspace(mkdtempSync(join(tmpdir(), 'compress-ci-')));
  cpSync(w.ws, copy.ws, { recursive: true });
  return copy;
}

test('every pipelines/*.yaml validates (exit 0), and so does the cut-down copy', async () => {
  const files = readdirSync(join(ROOT, 'pipelines')).filter((f) => f.endsWith('.yaml')).sort();
  assert.ok(files.length >= 4, `pipelines: ${files.join(', ')}`);
  assert.ok(files.includes(PIPELINE));
  const results = await Promise.all(files.map((f) => cli(['validate', join('pipelines', f)], ROOT)));
  files.forEach((f, i) => {
    assert.equal(results[i].exitCode, 0, `${f}: ${results[i].stderr}`);
    assert.match(results[i].stdout, new RegExp(`pipelines/${f.replace(/\./g, '\\.')}: ok \\(\\d+ stages`));
  });
  const cut = await cli(['validate', PIPELINE, ...CUT], freshWorkspace().ws);
  assert.equal(cut.exitCode, 0, cut.stderr);
});

test('a CI run writes report.json, summary.md and report.html under .compress/reports/<run-id>/ and appends summary.md to GITHUB_STEP_SUMMARY', async () => {
  const { w, r } = await completedRun();
  const { runIds, reportsDir, summaryFile, lockStages } = w;
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  const ids = runIds();
  assert.equal(ids.length, 1);
  const dir = join(reportsDir(), ids[0]);
  for (const f of ['report.json', 'summary.md', 'report.html']) assert.ok(existsSync(join(dir, f)), f);
  assert.match(r.stdout, new RegExp(`report: ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/summary\\.md`));
  const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
  assert.equal(report.runId, ids[0]);
  assert.equal(report.exitCode, 0);
  assert.deepEqual(report.stages.map((s: { id: string; status: string }) => `${s.id}:${s.status}`), ['baseline', 'baseline-eval', 'prune', 'report', 'mobile', 'edge', 'cloud'].map((id) => `${id}:ran`));
  assert.deepEqual(report.gates.map((g: { gate: string; passed: boolean }) => [g.gate, g.passed]), [
    ['accuracy >= stages.baseline-eval.accuracy - 0.3', true],
    ['sparsity >= 0.85', true],
  ]);
  const md = readFileSync(join(dir, 'summary.md'), 'utf8');
  assert.match(md, /^## compress: lenet-300-100-prune\.yaml ✅/);
  assert.match(md, new RegExp(`passed · run \`${ids[0]}\``));
  assert.equal(readFileSync(summaryFile, 'utf8'), `## an earlier step\n${md}`);
  assert.deepEqual(Object.keys(lockStages()), ['baseline', 'baseline-eval', 'prune', 'report', 'mobile', 'edge', 'cloud']);
});

test('a too-strict gate (via --set) exits 3 naming the gate, its value and its bound', async () => {
  const { ci, lockPath, runIds, reportsDir, summaryFile } = await copyOfCompletedRun();
  const lockBefore = readFileSync(lockPath, 'utf8');
  const before = readFileSync(summaryFile, 'utf8');
  const earlier = new Set(runIds());
  const r = await ci(['run', PIPELINE, ...sets('stages.report.with.gates.1=sparsity >= 0.99')]);
  assert.equal(r.exitCode, 3, `${r.stdout}\n${r.stderr}`);
  const [id] = runIds().filter((x) => !earlier.has(x));
  const report = JSON.parse(readFileSync(join(reportsDir(), id, 'report.json'), 'utf8'));
  const sparsity = report.stages.find((s: { id: string }) => s.id === 'report').metrics.sparsity as number;
  assert.ok(sparsity >= 0.85 && sparsity < 0.99, String(sparsity));
  // Gates are not part of the key: every stage came from the cache.
  assert.ok(report.stages.every((s: { status: string }) => s.status === 'cached'));
  assert.equal(report.exitCode, 3);
  const shown = Number(sparsity.toPrecision(6)).toString();
  assert.ok(r.stderr.includes(`error: gate 'sparsity >= 0.99' FAILED: ${shown} >= 0.99 is false (stage 'report')`), r.stderr);
  const appended = readFileSync(summaryFile, 'utf8').slice(before.length);
  assert.match(appended, /^## compress: lenet-300-100-prune\.yaml ❌/);
  assert.match(appended, /\*\*1 gate failed\*\*/);
  assert.match(appended, /\| `sparsity >= 0\.99` \| report \| \*\*FAIL\*\*/);
  assert.equal(readFileSync(lockPath, 'utf8'), lockBefore);
});

test('--frozen fails (exit 2) after a param change, and passes once `run` has updated the lock', async () => {
  const { ci, lockPath, lockStages } = await copyOfCompletedRun();
  const same = await ci(['run', '--frozen', PIPELINE, ...CUT]);
  assert.equal(same.exitCode, 0, `unchanged recipe: ${same.stderr}`);
  const lockBefore = readFileSync(lockPath, 'utf8');
  const changed = sets('params.sparsity=0.92');
  const frozen = await ci(['run', '--frozen', PIPELINE, ...changed]);
  assert.equal(frozen.exitCode, 2, `${frozen.stdout}\n${frozen.stderr}`);
  assert.match(frozen.stderr, /--frozen: the run would change .*lenet-300-100-prune\.lock:/);
  assert.match(frozen.stderr, /'prune' would change/);
  assert.doesNotMatch(frozen.stderr, /'baseline' would change/);
  assert.equal(readFileSync(lockPath, 'utf8'), lockBefore, '--frozen never writes the lock');
  const run = await ci(['run', PIPELINE, ...changed]);
  assert.equal(run.exitCode, 0, `${run.stdout}\n${run.stderr}`);
  assert.notEqual(lockStages().prune.key, parse(lockBefore).stages.prune.key);
  assert.equal(lockStages().baseline.key, parse(lockBefore).stages.baseline.key);
  const again = await ci(['run', '--frozen', PIPELINE, ...changed]);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.match(again.stdout, /7 stages: 0 ran, 7 cached/);
});

test('compress verify passes on the unchanged result, and fails (exit 2) after a stage digest in the lock is tampered with', async () => {
  const { ci, lockPath, lockStages } = await copyOfCompletedRun();
  const changed = CUT;
  const ok = await ci(['verify', PIPELINE, ...changed]);
  assert.equal(ok.exitCode, 0, `${ok.stdout}\n${ok.stderr}`);
  for (const id of ['baseline', 'baseline-eval', 'prune', 'report', 'mobile', 'edge', 'cloud']) assert.match(ok.stdout, new RegExp(`^ {2}${id} +ok$`, 'm'));
  assert.match(ok.stdout, /verify: 7 stages recomputed, all match .*lenet-300-100-prune\.lock/);

  const text = readFileSync(lockPath, 'utf8');
  const digest = lockStages().mobile.outputs['model.tflite'];
  assert.match(digest, /^[0-9a-f]{64}$/);
  const tampered = text.replace(digest, 'f'.repeat(64));
  assert.notEqual(tampered, text);
  writeFileSync(lockPath, tampered);
  try {
    const bad = await ci(['verify', PIPELINE, ...changed, '--only', 'mobile']);
    assert.equal(bad.exitCode, 2, `${bad.stdout}\n${bad.stderr}`);
    assert.match(bad.stdout, /^ {2}mobile +differs: model\.tflite$/m);
    assert.match(bad.stdout, /^ {2}prune +\(input, from the cache as locked\)$/m);
    assert.match(bad.stderr, /error: verify: 1 of 1 stage differs from .*lenet-300-100-prune\.lock: mobile/);
    assert.equal(readFileSync(lockPath, 'utf8'), tampered);
  } finally {
    writeFileSync(lockPath, text);
  }
});
