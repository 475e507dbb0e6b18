import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { trainModel } from '../src/engine/train.js';

/**
 * A frozen BatchNormalization (trainable false: the ONNX / graph-model importers' per-channel affines, a user's
 * frozen layer) runs in inference mode while the model trains, as Keras runs it: a fine-tune keeps its constants
 * and moving statistics (tfjs-layers would use each batch's statistics and update the moving ones).
 */

const { tf } = await initEngine('wasm');

function modelWithFrozenAffine(workersTag: string): tfType.LayersModel {
  const input = tf.input({ shape: [4, 4, 2] });
  const affine = tf.layers.batchNormalization({ axis: -1, epsilon: 1e-3, trainable: false, name: `affine_${workersTag}` });
  let x = affine.apply(input) as tfType.SymbolicTensor;
  x = tf.layers.conv2d({ filters: 3, kernelSize: 1, activation: 'relu', name: `conv_${workersTag}`, kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(x) as tfType.SymbolicTensor;
  x = tf.layers.flatten().apply(x) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(x) as tfType.SymbolicTensor });
  // y = 2x - 1 on channel 0, 0.5x + 3 on channel 1, as an importer writes it (mean 0, variance 1 - eps).
  affine.setWeights([tf.tensor1d([2, 0.5]), tf.tensor1d([-1, 3]), tf.zeros([2]), tf.fill([2], 1 - 1e-3)]);
  return model;
}

for (const workers of [1, 2]) {
  test(`a frozen batch norm keeps its scale, shift and moving statistics through training (${workers} replica${workers > 1 ? 's' : ''})`, async () => {
    const model = modelWithFrozenAffine(String(workers));
    const affine = model.layers[1];
    const before = affine.getWeights().map((w) => Array.from(w.dataSync()));
    const conv = model.layers[2].getWeights()[0].dataSync().slice();
    const n = 32;
    const x = tf.randomNormal([n, 4, 4, 2], 3, 2, 'float32', 4).dataSync() as Float32Array;
    const train = { x, y: Int32Array.from({ length: n }, (_, i) => i % 3), n, sampleShape: [4, 4, 2], numClasses: 3 };
    await trainModel(tf, model, train, { epochs: 2, batchSize: 8, seed: 1, optimizer: { name: 'adam', learningRate: 0.05 }, workers });
    assert.deepEqual(affine.getWeights().map((w) => Array.from(w.dataSync())), before);
    assert.ok(model.layers[2].getWeights()[0].dataSync().some((v, i) => v !== conv[i]), 'the rest of the model trained');
  });
}
