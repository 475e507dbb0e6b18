import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { exportModel, verifyExport } from '../src/export/index.js';
import { readTflite } from '../src/export/tflite/reader.js';
import { Op } from '../src/export/tflite/schema.js';
import { emptyMeta } from '../src/model/meta.js';

/**
 * A LayerNormalization in a full-int8 .tflite: its channel means are 1x1 convs (filter 1/C), not int8 MEAN over the
 * last axis, which LiteRT computed wrongly when it read the quantized model input (agreement 0.20 on this model,
 * where onnxruntime's int8 file agreed on 0.95).
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-ln-int8-'));

test('a LayerNormalization of the model input exports to TFLite int8 with its means as convs, agreeing in LiteRT', async () => {
  const input = tf.input({ shape: [4, 4, 8] });
  const ln = tf.layers.layerNormalization({ epsilon: 1e-6, name: 'ln' }).apply(input) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: tf.layers.flatten().apply(ln) as tfType.SymbolicTensor });
  model.setWeights(model.getWeights().map((w, i) => tf.randomNormal(w.shape, 1, 0.3, 'float32', 7 + i)));
  const n = 64;
  const xs = tf.randomNormal([n, 4, 4, 8], 0, 1, 'float32', 9);
  const y = Int32Array.from((model.predict(xs) as tfType.Tensor).argMax(-1).dataSync());
  const out = join(dir, 'ln');
  const res = await exportModel(tf, model, emptyMeta(), { target: 'tflite', precision: 'int8', calibration: tf.randomNormal([32, 4, 4, 8], 0, 1, 'float32', 2).dataSync() as Float32Array }, out);
  const ops = readTflite(readFileSync(join(out, res.files[0]))).operators.map((o) => o.code);
  assert.ok(!ops.includes(Op.MEAN), `ops ${ops.join(', ')}`);
  assert.equal(ops.filter((c) => c === Op.CONV_2D).length, 2, 'the mean and the variance');
  const v = await verifyExport(tf, { target: 'tflite', precision: 'int8', dir: out, files: res.files }, model, { x: xs.dataSync() as Float32Array, y, n, sampleShape: [4, 4, 8], numClasses: 128 }, { threshold: 0.9 });
  assert.ok(v.agreement >= 0.9, JSON.stringify({ agreement: v.agreement, maxAbsDiff: v.maxAbsDiff }));
});
