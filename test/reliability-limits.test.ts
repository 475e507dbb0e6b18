/**
 * Resource limits: a stage over its `timeout` (seconds) or `memoryMb` budget is stopped and fails
 * with a message naming the stage and the budget (exit 1); stages within budget are unaffected.
 * memoryMb counts what a tfjs stage really uses: tensors live in array buffers and the wasm heap,
 * outside V8's old generation (which is all `resourceLimits` bounds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY, workspace } from './helpers.js';
import { cacheOf, run, SMALL, smallWorkspace, STACK } from './reliability-util.js';
import { encodeNpy } from '../src/data/npy.js';

test('timeout: the stage over its budget is stopped promptly and named with the budget; the one within it runs', async () => {
  // baseline has a generous budget; prune retrains for thousands of epochs within half a second.
  const recipe = SMALL.replace('    uses: train\n', '    uses: train\n    timeout: 120\n')
    .replace('    uses: prune\n', '    uses: prune\n    timeout: 0.5\n')
    .replace('train: { epochs: 1, batchSize: 32 }', 'train: { epochs: 5000, batchSize: 32 }');
  assert.notEqual(recipe, SMALL);
  const { dir } = smallWorkspace(recipe);
  const t0 = Date.now();
  const r = await run(dir, []);
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, /error: stage 'prune' failed: stage 'prune' exceeded its time budget of 0\.5 s \(timeout\) and was stopped/);
  assert.doesNotMatch(r.stderr + r.stdout, STACK);
  assert.match(r.stdout, /baseline\s+ran/);
  assert.match(r.stdout, /prune\s+failed/);
  assert.match(r.stdout, /report\s+skipped/);
  assert.ok(seconds < 30, `stopped promptly (${seconds} s)`);
  // Nothing of the stopped stage is cached.
  assert.deepEqual((await cacheOf(dir).listRecords()).map((x) => x.stageId), ['baseline']);
});

/** A dataset of 10,000 x 1,000 float32 (40 MB): tiny for V8's heap, large in array buffers and wasm memory. */
function bigNpyWorkspace(memoryMb: number): string {
  const recipe = `version: 1
name: big
seed: 7
data:
  big: { source: files, format: npy, features: x.npy, labels: y.npy, numClasses: 3 }
stages:
  baseline:
    uses: train
    memoryMb: ${memoryMb}
    with: { model: mlp-small, epochs: 1, batchSize: 500 }
`;
  const { dir } = workspace(recipe);
  const n = 10_000;
  const d = 1_000;
  const x = new Float32Array(n * d);
  for (let i = 0; i < x.length; i++) x[i] = ((i * 2654435761) % 1000) / 1000;
  const y = new Int32Array(n).map((_, i) => i % 3);
  writeFileSync(join(dir, 'x.npy'), encodeNpy(x, [n, d], 'f4'));
  writeFileSync(join(dir, 'y.npy'), encodeNpy(y, [n], 'i4'));
  return dir;
}

test('memoryMb: a stage whose tensors (array buffers + wasm heap) exceed the budget is stopped with a message naming it', async () => {
  const dir = bigNpyWorkspace(64);
  const r = await run(dir, []);
  assert.equal(r.exitCode, 1, r.stderr);
  const m = /error: stage 'baseline' failed: stage 'baseline' exceeded its memory budget of 64 MB \(memoryMb; it used (\d+) MB of JS heap, array buffers and wasm memory\) and was stopped/.exec(r.stderr);
  assert.ok(m, r.stderr);
  assert.ok(Number(m[1]) > 64, `reported use ${m[1]} MB`);
  assert.doesNotMatch(r.stderr + r.stdout, STACK);
  assert.deepEqual(await cacheOf(dir).listRecords(), []);

  // The same stage with room to spare runs: the budget measures, it does not refuse blindly.
  const ok = await run(bigNpyWorkspace(1024), ['--json']);
  assert.equal(ok.exitCode, 0, ok.stderr);
  assert.equal(ok.status.baseline, 'ran');
});

test('memoryMb: the stage stopped over its budget reports the peak it reached in report.json', async () => {
  const dir = bigNpyWorkspace(64);
  const r = await run(dir, []);
  assert.equal(r.exitCode, 1, r.stderr);
  const reports = join(dir, '.compress', 'reports');
  const baseline = JSON.parse(readFileSync(join(reports, readdirSync(reports)[0], 'report.json'), 'utf8')).stages.find((s: { id: string }) => s.id === 'baseline');
  assert.equal(baseline.status, 'failed');
  assert.ok(baseline.peakMemoryMb > 64, `peak ${baseline.peakMemoryMb} MB`);
});

test('memoryMb: the MNIST pipeline\'s training stage over 64 MB fails naming the budget (exit 1, no stack); 256 MB runs', async () => {
  const tight = workspace(TINY.replace('    uses: train\n', '    uses: train\n    memoryMb: 64\n'));
  const r = await run(tight.dir, []);
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, /error: stage 'baseline' failed: stage 'baseline' exceeded its memory budget of 64 MB \(memoryMb; .*\) and was stopped/);
  assert.doesNotMatch(r.stderr + r.stdout, STACK);
  assert.match(r.stdout, /prune\s+skipped/);

  const roomy = workspace(TINY.replace('    uses: train\n', '    uses: train\n    memoryMb: 256\n'));
  const ok = await run(roomy.dir, ['--json', '--until', 'baseline']);
  assert.equal(ok.exitCode, 0, ok.stderr);
  assert.equal(ok.status.baseline, 'ran');
});
