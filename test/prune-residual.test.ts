import { test } from 'node:test';
import type * as tfType from '@tensorflow/tfjs';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initEngine } from '../src/engine/backend.js';
import { saveModelDir } from '../src/model/io.js';
import { emptyMeta } from '../src/model/meta.js';
import { encodeNpy } from '../src/data/npy.js';
import { cli, workspace } from './helpers.js';

/**
 * Structured pruning of a residual network (every imported ResNet): the layers whose outputs are
 * added together cannot lose filters on their own. The stage says so before pruning or training,
 * naming every such layer and a selector that leaves them out — which then runs. (It failed after
 * the whole schedule, naming one Add at a time.)
 */

const { tf } = await initEngine('wasm');

async function residualWorkspace(layers: string): Promise<string> {
  const { dir } = workspace(`version: 1
name: residual
seed: 1
data:
  d: { source: files, features: x.npy, labels: y.npy, numClasses: 3 }
stages:
  model: { uses: load, with: { path: model } }
  pruned:
    uses: prune
    needs: [model]
    with: { method: structured, sparsity: 0.5, layers: ${layers}, train: { epochs: 1, batchSize: 16 } }
`);
  const input = tf.input({ shape: [6, 6, 3] });
  const stem = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'stem' }).apply(input) as tfType.SymbolicTensor;
  const inner = tf.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', name: 'inner' }).apply(stem) as tfType.SymbolicTensor;
  const branch = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'branch' }).apply(inner) as tfType.SymbolicTensor;
  const sum = tf.layers.add({ name: 'residual' }).apply([stem, branch]) as tfType.SymbolicTensor;
  const pooled = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(sum) as tfType.SymbolicTensor;
  const out = tf.layers.dense({ units: 3, activation: 'softmax', name: 'head' }).apply(pooled) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: out });
  await saveModelDir(tf, model, emptyMeta(), join(dir, 'model'));
  model.dispose();
  const n = 48;
  writeFileSync(join(dir, 'x.npy'), encodeNpy(Float32Array.from({ length: n * 108 }, (_, i) => Math.sin(i * 0.37)), [n, 6, 6, 3], 'f4'));
  writeFileSync(join(dir, 'y.npy'), encodeNpy(Int32Array.from({ length: n }, (_, i) => i % 3), [n], 'i4'));
  return dir;
}

test('structured pruning names every layer feeding a residual Add before pruning or training, and its hint runs', async () => {
  const dir = await residualWorkspace('[ { match: head, exclude: true } ]');
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /structured pruning cannot remove filters of 2 selected layers on their own \(nothing was pruned or trained\)/);
  assert.match(r.stderr, /structured removal of (branch, stem|stem, branch) reaches layer residual \(Add\): its inputs would lose different channels/);
  assert.doesNotMatch(r.stdout + r.stderr, /pruning: epoch/);
  const selector = /\{ match: ("re:[^"]+"), exclude: true \}/.exec(r.stderr);
  assert.ok(selector, r.stderr);
  const fixed = await residualWorkspace(`[ { match: head, exclude: true }, { match: ${selector[1]}, exclude: true } ]`);
  const ok = await cli(['run'], fixed);
  assert.equal(ok.exitCode, 0, ok.stderr);
  assert.match(ok.stdout, /pruned\s+ran/);
});
