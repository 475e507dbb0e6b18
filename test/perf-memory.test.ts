/**
 * Mid-size models stay within memory: a quantize stage (calibration, per-layer error report,
 * evaluation) on a conv net with wide 96x96 layers, under a `memoryMb` budget. Before inference
 * batches were bounded by activation memory and the error report streamed layer by layer, the same
 * stage peaked far above this budget (measured in README, "Mid-size models") and was stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { cli, workspace } from './helpers.js';
import { encodeNpy } from '../src/data/npy.js';
import { initEngine } from '../src/engine/backend.js';
import { saveModelDir } from '../src/model/io.js';
import { emptyMeta } from '../src/model/meta.js';
import { createRng } from '../src/util/rng.js';

export const QUANTIZE_BUDGET_MB = 512;

/** Stem conv, a 96-channel 1x1 expansion, depthwise, projection: MobileNet's widest pattern at 96x96. */
function wideConvNet(tf: typeof tfType): tfType.LayersModel {
  let s = 5;
  const init = () => tf.initializers.heNormal({ seed: (s = (s * 1103515245 + 12345) >>> 0) });
  const input = tf.input({ shape: [96, 96, 3] });
  let x = tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', name: 'stem', kernelInitializer: init() }).apply(input) as tfType.SymbolicTensor;
  x = tf.layers.reLU({ maxValue: 6, name: 'stem_relu' }).apply(x) as tfType.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 96, kernelSize: 1, name: 'expand', kernelInitializer: init() }).apply(x) as tfType.SymbolicTensor;
  x = tf.layers.batchNormalization({ name: 'expand_bn' }).apply(x) as tfType.SymbolicTensor;
  x = tf.layers.reLU({ maxValue: 6, name: 'expand_relu' }).apply(x) as tfType.SymbolicTensor;
  x = tf.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', name: 'dw', depthwiseInitializer: init() }).apply(x) as tfType.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 32, kernelSize: 1, name: 'project', kernelInitializer: init() }).apply(x) as tfType.SymbolicTensor;
  x = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfType.SymbolicTensor;
  const out = tf.layers.dense({ units: 10, activation: 'softmax', name: 'classifier', kernelInitializer: init() }).apply(x) as tfType.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

test(`memoryMb: int8 quantize of a conv net with 96x96x96 activations (160 images) stays within ${QUANTIZE_BUDGET_MB} MB`, async () => {
  const recipe = `version: 1
name: wide-quantize
seed: 3
data:
  images: { source: files, features: x.npy, labels: y.npy, numClasses: 10, split: { train: 0.8, validation: 0.1, test: 0.1 } }
stages:
  load: { uses: load, with: { path: model } }
  int8:
    uses: quantize
    needs: [load]
    memoryMb: ${QUANTIZE_BUDGET_MB}
    with: { default: { method: linear, bits: 8 }, activations: { samples: 128 } }
`;
  const { dir } = workspace(recipe);
  const { tf } = await initEngine('wasm');
  const model = wideConvNet(tf);
  await saveModelDir(tf, model, emptyMeta(), join(dir, 'model'));
  model.dispose();
  const n = 160;
  const rng = createRng(4);
  writeFileSync(join(dir, 'x.npy'), encodeNpy(Float32Array.from({ length: n * 96 * 96 * 3 }, () => rng() * 2 - 1), [n, 96, 96, 3], 'f4'));
  writeFileSync(join(dir, 'y.npy'), encodeNpy(Int32Array.from({ length: n }, (_, i) => i % 10), [n], 'i4'));
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  const reports = join(dir, '.compress', 'reports');
  const report = JSON.parse(readFileSync(join(reports, readdirSync(reports)[0], 'report.json'), 'utf8'));
  const int8 = report.stages.find((s: { id: string }) => s.id === 'int8');
  assert.equal(int8.status, 'ran');
  assert.ok(int8.peakMemoryMb > 0 && int8.peakMemoryMb <= QUANTIZE_BUDGET_MB, `peak ${int8.peakMemoryMb} MB`);
  assert.ok(typeof int8.metrics.int8Accuracy === 'number');
});
