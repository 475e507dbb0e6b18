import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { exportModel, verifyExport } from '../src/export/index.js';
import { emptyMeta } from '../src/model/meta.js';
import { randomInputs } from '../src/model/load/onnx-verify.js';

/**
 * A layer whose output is 0 on every calibration sample (a dead ReLU: bias -100; or all-zero weights) must still
 * give an int8 file its runtime loads: its range [0, 1e-6] made a ~4e-9 scale, and the op computing it a
 * requantization ratio LiteRT's XNNPACK refused ("failed to prepare").
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-dead-'));

function deadModel(kind: 'dead-relu' | 'zero-weights'): tfType.LayersModel {
  const input = tf.input({ shape: [8, 8, 3] });
  let x = tf.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tfType.SymbolicTensor;
  const dead = tf.layers.conv2d({ filters: 4, kernelSize: 1, activation: kind === 'dead-relu' ? 'relu' : 'linear', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }), name: 'dead' });
  x = dead.apply(x) as tfType.SymbolicTensor;
  // The live path keeps the model's outputs informative.
  const live = tf.layers.globalAveragePooling2d({}).apply(input) as tfType.SymbolicTensor;
  const gap = tf.layers.globalAveragePooling2d({}).apply(x) as tfType.SymbolicTensor;
  const out = tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(tf.layers.concatenate().apply([live, gap])) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: out });
  const [k] = dead.getWeights();
  dead.setWeights(kind === 'dead-relu' ? [k, tf.fill([4], -100)] : [tf.zerosLike(k), tf.zeros([4])]);
  return model;
}

for (const kind of ['dead-relu', 'zero-weights'] as const) {
  for (const target of ['tflite', 'onnx'] as const) {
    test(`a layer that outputs 0 on every calibration sample (${kind}) exports to ${target} int8 and runs in its runtime`, async () => {
      const model = deadModel(kind);
      const shape = [8, 8, 3];
      const n = 32;
      const x = randomInputs(shape, n, 9);
      const y = Int32Array.from((tf.tidy(() => (model.predict(tf.tensor(x, [n, ...shape])) as tfType.Tensor).argMax(-1)) as tfType.Tensor).dataSync());
      const out = join(dir, `${kind}-${target}`);
      const res = await exportModel(tf, model, emptyMeta(), { target, precision: 'int8', calibration: randomInputs(shape, 32, 3) }, out);
      const v = await verifyExport(tf, { target, precision: 'int8', dir: out, files: res.files }, model, { x, y, n, sampleShape: shape, numClasses: 3 });
      assert.ok(v.agreement >= 0.9, JSON.stringify(v));
    });
  }
}
