import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { JSDOM } from 'jsdom';
import { cli, TINY, workspace } from './helpers.js';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { saveModelDir } from '../src/model/io.js';
import { emptyMeta } from '../src/model/meta.js';
import { encodeNpy } from '../src/data/npy.js';
import { tfjsNodeAvailable } from '../src/engine/backend.js';

test('plan --format mermaid is a valid mermaid flowchart (parsed by mermaid itself)', async () => {
  const { dir } = workspace(TINY.replace('  report:', '  other-branch:\n    uses: evaluate\n    needs: [baseline]\n  report:'));
  const r = await cli(['plan', '--format', 'mermaid'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  const dom = new JSDOM('<!doctype html><html><body></body></html>');
  Object.assign(globalThis, { window: dom.window, document: dom.window.document });
  const { default: mermaid } = await import('mermaid');
  mermaid.initialize({ startOnLoad: false });
  const parsed = await mermaid.parse(r.stdout);
  assert.ok(parsed && parsed.diagramType.startsWith('flowchart'));
  assert.match(r.stdout, /s_baseline --> s_prune/);
  assert.match(r.stdout, /s_baseline --> s_other_2d_branch/);
  await assert.rejects(mermaid.parse(r.stdout.replace('-->', '--> [')), 'the parser does reject broken graphs');
  for (const format of ['dot', 'json', 'text']) assert.equal((await cli(['plan', '--format', format], dir)).exitCode, 0);
  const json = JSON.parse((await cli(['plan', '--format', 'json'], dir)).stdout);
  assert.deepEqual(json.stages.map((s: { id: string }) => s.id), ['baseline', 'prune', 'other-branch', 'report']);
});

test('validate reports every problem with file:line:col, exit 2, no stack trace', async () => {
  const { dir } = workspace(TINY.replace('seed: 7', 'sed: 7').replace('uses: evaluate', 'uses: evaluat'));
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /compress\.config\.yaml:3:1  sed  unknown key 'sed'; did you mean 'seed'\?/);
  assert.match(r.stderr, /compress\.config\.yaml:\d+:11  stages\.report\.uses  unknown stage kind 'evaluat'; did you mean 'evaluate'\?/);
  assert.match(r.stderr, /2 problems; recipe not run/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});

test('run, status, --frozen, --only, --force, cache ls/gc; gates exit 3', async () => {
  const { dir, file } = workspace(TINY);
  assert.equal((await cli(['status'], dir)).stdout.match(/stale/g)?.length, 3);
  const first = await cli(['run'], dir);
  assert.equal(first.exitCode, 0, first.stderr);
  assert.ok(existsSync(join(dir, 'compress.lock')));
  assert.match((await cli(['status'], dir)).stdout, /everything is cached \(3 stages\)/);
  // --frozen passes when nothing changes and fails (exit 2) after a param change.
  assert.equal((await cli(['run', '--frozen'], dir)).exitCode, 0);
  const frozen = await cli(['run', '--frozen', '--set', 'params.sparsity=0.7'], dir);
  assert.equal(frozen.exitCode, 2);
  assert.match(frozen.stderr, /'prune' would change/);
  // status explains without running.
  assert.match((await cli(['status', '--set', 'params.sparsity=0.7'], dir)).stdout, /prune\s+stale\s+with\.sparsity: 0\.6 -> 0\.7/);
  // --force re-runs a stage (same inputs: same digests, so downstream stays cached).
  const forced = await cli(['run', '--json', '--force', 'prune'], dir);
  const ends = forced.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'stage-end');
  assert.deepEqual(Object.fromEntries(ends.map((e) => [e.outcome.id, e.outcome.status])), { baseline: 'cached', prune: 'ran', report: 'cached' });
  // --only with a missing upstream is refused.
  writeFileSync(file, readFileSync(file, 'utf8').replace('epochs: 1, batchSize: 32 }\n  prune', 'epochs: 2, batchSize: 32 }\n  prune'));
  const only = await cli(['run', '--only', 'report'], dir);
  assert.equal(only.exitCode, 1);
  assert.match(only.stderr, /not in the cache/);
  // A deliberately strict gate exits 3 and names the gate, its value and its bound.
  const gate = await cli(['run', '--set', 'stages.report.with.gates=["accuracy >= 0.999"]'], dir);
  assert.equal(gate.exitCode, 3, gate.stderr);
  assert.match(gate.stderr, /gate 'accuracy >= 0\.999' FAILED: 0\.\d+ >= 0\.999 is false/);
  // cache ls and gc.
  assert.match((await cli(['cache', 'ls'], dir)).stdout, /entries in/);
  assert.match((await cli(['cache', 'gc'], dir)).stdout, /removed \d+ entries/);
  assert.match((await cli(['status'], dir)).stdout, /everything is cached/);
});

test('init for a model file: MNIST-shaped models get a recipe that runs; others get a files data entry', async () => {
  const { dir } = workspace('', 'unused.yaml');
  const { tf } = await initEngine('wasm');
  for (const [name, inputShape, classes] of [['digits', [28, 28, 1], 10], ['tabular', [8], 3]] as const) {
    const model = buildModel(tf, 'mlp-small', { inputShape: [...inputShape], numClasses: classes, seed: 1 });
    await saveModelDir(tf, model, emptyMeta(), join(dir, name));
    model.dispose();
  }
  const init = await cli(['init', join('digits', 'model.json')], dir);
  assert.equal(init.exitCode, 0, init.stderr);
  const recipe = readFileSync(join(dir, 'compress.config.yaml'), 'utf8');
  assert.match(recipe, /\$schema=\.\.?\/.*schemas\/recipe\.schema\.json/);
  assert.match(recipe, /path: "digits\/model\.json"/);
  const run = await cli(['run', '--set', 'data.digits.limit=300', '--set', 'stages.prune.with.train.epochs=1', '--set', 'stages.prune.with.schedule.endStep=4', '--set', 'stages.prune.with.schedule.frequency=1'], dir);
  assert.ok(run.exitCode === 0 || run.exitCode === 3, run.stderr);
  assert.match(run.stdout, /report\s+ran/);
  const other = await cli(['init', join('tabular', 'model.json'), '--output', 'tabular.yaml'], dir);
  assert.equal(other.exitCode, 0, other.stderr);
  assert.match(other.stdout, /next: put your data where tabular\.yaml's data: points \(data\/features\.npy \+ data\/labels\.npy/);
  assert.match(readFileSync(join(dir, 'tabular.yaml'), 'utf8'), /source: files, features: data\/features\.npy, labels: data\/labels\.npy, numClasses: 3/);
  // The starter recipe points at data the user has yet to put there: validate says which file is missing, then passes.
  const before = await cli(['validate', 'tabular.yaml'], dir);
  assert.equal(before.exitCode, 2);
  assert.match(before.stderr, /tabular\.yaml:\d+:\d+ +data\.mine\.features +data features path 'data\/features\.npy' not found/);
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'data', 'features.npy'), encodeNpy(new Float32Array(4 * 8), [4, 8], 'f4'));
  writeFileSync(join(dir, 'data', 'labels.npy'), encodeNpy(Int32Array.of(0, 1, 2, 0), [4], 'i4'));
  assert.equal((await cli(['validate', 'tabular.yaml'], dir)).exitCode, 0);
});

test('init writes a recipe that validates; layers lists a stage model', async () => {
  const { dir } = workspace('', 'unused.yaml');
  const init = await cli(['init'], dir);
  assert.equal(init.exitCode, 0, init.stderr);
  assert.equal((await cli(['validate'], dir)).exitCode, 0);
  assert.equal((await cli(['init'], dir)).exitCode, 2, 'refuses to overwrite');
  const layers = await cli(['layers', 'lenet-5'], dir);
  assert.match(layers.stdout, /conv_1\s+Conv2D\s+\[\?,24,24,20\]\s+520/);
});

test('layers on a stage that produces no model (an export) says so, exit 2', async () => {
  const { dir } = workspace(`version: 1
data:
  digits: { source: mnist, limit: 200 }
stages:
  m: { uses: train, with: { model: mlp-small, epochs: 1 } }
  t: { uses: export, needs: [m], with: { target: tflite } }
`);
  const r = await cli(['layers', 't'], dir);
  assert.equal(r.exitCode, 2, r.stderr);
  assert.match(r.stderr, /stage 't' \(export\) produces no model to list/);
});

test('a recipe path written after --force (which takes the words after it as stages) is a usage error showing the order', async () => {
  const { dir } = workspace('version: 1\nstages:\n  m: { uses: train, with: { model: mlp-small, epochs: 1 } }\n', 'r.yaml');
  const r = await cli(['run', '--force', 'm', 'r.yaml'], dir);
  assert.equal(r.exitCode, 2, r.stderr);
  assert.match(r.stderr, /--force took 'r\.yaml' as a stage name; write the recipe path before --force \(compress run r\.yaml --force m\)/);
});

test('--backend tensorflow without @tensorflow/tfjs-node installed fails before any stage, saying what to install', async (t) => {
  if (tfjsNodeAvailable()) return t.skip('@tensorflow/tfjs-node is installed here');
  const { dir } = workspace('version: 1\ndata:\n  digits: { source: mnist, limit: 50 }\nstages:\n  m: { uses: train, with: { model: mlp-small, epochs: 1 } }\n');
  const r = await cli(['run', '--backend', 'tensorflow'], dir);
  assert.notEqual(r.exitCode, 0);
  assert.match(r.stderr, /backend 'tensorflow' needs @tensorflow\/tfjs-node, which is not installed/);
  assert.doesNotMatch(r.stderr, /Cannot find package/);
});

test("the run summary of a structured prune shows the parameters it removed (its sparsity stays near 0)", async () => {
  const { dir } = workspace(`version: 1
seed: 2
data:
  digits: { source: mnist, limit: 200 }
stages:
  m: { uses: train, with: { model: mlp-small, epochs: 1 } }
  s: { uses: prune, needs: [m], with: { method: structured, sparsity: 0.5, layers: [ { type: Dense }, { match: dense_3, exclude: true } ] } }
`);
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /\n  s\s+ran\s+.*params [\d,]+ -> [\d,]+ \(\d+ units removed\)/);
});

test('a failed stage: its reason printed once on stderr, exit 1', async () => {
  const { dir } = workspace(`version: 1
data:
  digits: { source: mnist, limit: 200 }
stages:
  m: { uses: train, with: { model: mlp-small, epochs: 1 } }
  q: { uses: quantize, needs: [m], with: { default: { method: kmeans, bits: 5 }, layers: [ { match: nope } ] } }
`);
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 1, r.stderr);
  const said = (r.stderr + r.stdout).split('matches no layer').length - 1;
  assert.equal(said, 1, r.stderr + r.stdout);
  assert.match(r.stderr, /error: stage 'q' failed: selector entry #0 \{ match: "nope" \} matches no layer/);
});

test('two recipes in one directory keep their own outputs (a non-default recipe writes .compress/out/<file name>/<stage>/)', async () => {
  const { dir } = workspace(TINY, 'a.yaml');
  writeFileSync(join(dir, 'b.yaml'), TINY.replace('seed: 7', 'seed: 8'));
  writeFileSync(join(dir, 'compress.config.yaml'), TINY.replace('seed: 7', 'seed: 9'));
  for (const args of [['run', 'a.yaml'], ['run', 'b.yaml'], ['run']]) {
    const r = await cli([...args, '--only', 'baseline'], dir);
    assert.equal(r.exitCode, 0, r.stderr);
  }
  const weights = (...p: string[]) => readFileSync(join(dir, '.compress', 'out', ...p, 'baseline', 'weights.bin'));
  const [a, b, dflt] = [weights('a.yaml'), weights('b.yaml'), weights()];
  assert.notDeepEqual(a, b, "b.yaml's run left a.yaml's baseline alone (different seeds, different weights)");
  assert.notDeepEqual(a, dflt);
  assert.notDeepEqual(b, dflt);
});
