import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parse } from 'yaml';
import { cli } from './helpers.js';

/** train -> prune -> quantize -> evaluate, and exports to every target (TFLite int8, ONNX int8, TF.js float16). */
const RECIPE = `version: 1
name: determinism
seed: 11
data:
  digits: { source: mnist, limit: 300 }
stages:
  baseline:
    uses: train
    with: { model: mlp-small, epochs: 1, batchSize: 32 }
  prune:
    uses: prune
    needs: [baseline]
    with: { sparsity: 0.5, train: { epochs: 1, batchSize: 32 } }
  quantize:
    uses: quantize
    needs: [prune]
    with: { default: { method: kmeans, bits: 4 } }
  eval:
    uses: evaluate
    needs: [quantize]
    with: { latencySamples: 0 }
  export:
    uses: export
    needs: [quantize]
    with:
      targets: [ { target: tflite, precision: int8 }, { target: onnx, precision: int8 }, { target: tfjs, precision: float16 } ]
      threshold: 0.5
`;

/** Every file under `dir`, by relative path, as its bytes. */
function files(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(relative(dir, p).split('\\').join('/'), readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('the same recipe, data and backend in two fresh workspaces and caches gives byte-identical artifacts and lock', async () => {
  // Different places (and path lengths), concurrency and time zone, each with its own fresh cache.
  const a = mkdtempSync(join(tmpdir(), 'compress-det-a-'));
  const b = join(mkdtempSync(join(tmpdir(), 'compress-det-b-')), 'nested', 'workspace');
  mkdirSync(b, { recursive: true });
  for (const d of [a, b]) writeFileSync(join(d, 'compress.config.yaml'), RECIPE);
  const ra = await cli(['run', '-j', '1', '--backend', 'wasm'], a, { TZ: 'UTC' });
  assert.equal(ra.exitCode, 0, `${ra.stdout}\n${ra.stderr}`);
  const rb = await cli(['run', '-j', '2', '--backend', 'wasm'], b, { TZ: 'Pacific/Auckland' });
  assert.equal(rb.exitCode, 0, `${rb.stdout}\n${rb.stderr}`);

  const fa = files(join(a, '.compress', 'out'));
  const fb = files(join(b, '.compress', 'out'));
  // Every kind of artifact is there, and not empty.
  for (const f of ['baseline/model.json', 'baseline/weights.bin', 'prune/weights.bin', 'quantize/weights.bin', 'export/tflite-int8/model.tflite', 'export/onnx-int8/model.onnx', 'export/tfjs-float16/model.json']) {
    assert.ok(fa.get(f)?.length, `${f} written`);
  }
  assert.deepEqual([...fb.keys()], [...fa.keys()], 'the same files');
  const differing = [...fa.keys()].filter((f) => !fa.get(f)!.equals(fb.get(f)!));
  assert.deepEqual(differing, [], `files whose bytes differ between the two runs: ${differing.join(', ')}`);

  // The locks agree on every key, output digest and metric (the whole file, in fact).
  const la = readFileSync(join(a, 'compress.lock'), 'utf8');
  const lb = readFileSync(join(b, 'compress.lock'), 'utf8');
  const lockA = parse(la);
  const lockB = parse(lb);
  assert.deepEqual(Object.keys(lockA.stages), ['baseline', 'prune', 'quantize', 'eval', 'export']);
  for (const id of Object.keys(lockA.stages)) {
    assert.equal(lockB.stages[id].key, lockA.stages[id].key, `${id}: key`);
    assert.equal(lockB.stages[id].outputsDigest, lockA.stages[id].outputsDigest, `${id}: outputs digest`);
    assert.deepEqual(lockB.stages[id].outputs, lockA.stages[id].outputs, `${id}: file digests`);
    assert.deepEqual(lockB.stages[id].metrics, lockA.stages[id].metrics, `${id}: metrics`);
  }
  assert.equal(lb, la);
  // And the lock's digests are those of the files on disk.
  for (const [id, st] of Object.entries(lockA.stages as Record<string, { outputs: Record<string, string> }>)) {
    for (const [f, d] of Object.entries(st.outputs)) assert.equal(sha(fa.get(`${id}/${f}`)!), d, `${id}/${f}`);
  }
});
