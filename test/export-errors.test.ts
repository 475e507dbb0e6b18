import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExportError, exportModel } from '../src/export/index.js';
import { quantizeWeights } from '../src/export/quant.js';
import { buildIr, type DenseOp } from '../src/export/ir.js';
import { emptyMeta } from '../src/model/meta.js';
import { engine, tempDir } from './fixtures/export/models.js';

test('an unsupported layer is an ExportError naming the layer and the target', async () => {
  const tf = await engine();
  const input = tf.input({ shape: [28, 28], name: 'input' });
  const x = tf.layers.lstm({ units: 8, name: 'my_lstm' }).apply(input) as ReturnType<typeof tf.input>;
  const y = tf.layers.dense({ units: 10, activation: 'softmax', name: 'out' }).apply(x) as ReturnType<typeof tf.input>;
  const model = tf.model({ inputs: input, outputs: y });
  for (const target of ['tflite', 'onnx'] as const) {
    await assert.rejects(exportModel(tf, model, emptyMeta(), { target, precision: 'float32' }, tempDir('err')), (e: unknown) => {
      assert.ok(e instanceof ExportError);
      assert.equal(e.target, target);
      assert.equal(e.layer, 'my_lstm');
      assert.match(e.message, new RegExp(`export to ${target}: layer 'my_lstm': layer type LSTM is not supported`));
      return true;
    });
  }
});

test('unsupported precisions, an inexpressible layer option and missing calibration are ExportErrors', async () => {
  const tf = await engine();
  const input = tf.input({ shape: [4, 4, 2], name: 'input' });
  const up = tf.layers.upSampling2d({ size: [2, 2], interpolation: 'bilinear', name: 'bilinear_up' }).apply(input) as ReturnType<typeof tf.input>;
  const flat = tf.layers.flatten({ name: 'flat' }).apply(up) as ReturnType<typeof tf.input>;
  const out = tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }).apply(flat) as ReturnType<typeof tf.input>;
  const model = tf.model({ inputs: input, outputs: out });
  await assert.rejects(exportModel(tf, model, emptyMeta(), { target: 'onnx', precision: 'float16' }, tempDir('err')), /export to onnx: precision 'float16' is not supported; use one of float32, int8/);
  await assert.rejects(exportModel(tf, model, emptyMeta(), { target: 'tfjs', precision: 'int8' }, tempDir('err')), ExportError);
  await assert.rejects(exportModel(tf, model, emptyMeta(), { target: 'tflite', precision: 'float32' }, tempDir('err')), /layer 'bilinear_up': interpolation 'bilinear' is not supported; use nearest/);

  const input2 = tf.input({ shape: [4], name: 'input' });
  const d = tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }).apply(input2) as ReturnType<typeof tf.input>;
  const m2 = tf.model({ inputs: input2, outputs: d });
  await assert.rejects(exportModel(tf, m2, emptyMeta(), { target: 'tflite', precision: 'int8' }, tempDir('err')), /pass opts\.calibration/);
});

test('int8 weights reuse the linear scales compress evaluated (meta.weightQuant)', async () => {
  const tf = await engine();
  const input = tf.input({ shape: [6], name: 'input' });
  const out = tf.layers.dense({ units: 4, name: 'fc' }).apply(input) as ReturnType<typeof tf.input>;
  const model = tf.model({ inputs: input, outputs: out });
  // Fake-quantize the kernel to 4-bit per-channel symmetric, as compress's linear stage would.
  const scales = [0.01, 0.02, 0.03, 0.04];
  const kv = Float32Array.from({ length: 24 }, (_, i) => (((i * 7) % 15) - 7) * scales[i % 4]);
  model.getLayer('fc').setWeights([tf.tensor2d(kv, [6, 4]), tf.zeros([4])]);
  const meta = emptyMeta();
  meta.weightQuant.fc = { method: 'linear', bits: 4, symmetric: true, axis: 1, scales, zeroPoints: [0, 0, 0, 0] };
  const op = buildIr(model, 'tflite').ops[0] as DenseOp;
  const q = quantizeWeights(op, meta, true);
  assert.equal(q.fromMeta, true);
  assert.deepEqual(Array.from(q.scales), scales.map(Math.fround));
  for (let i = 0; i < kv.length; i++) assert.equal(q.q[i], (((i * 7) % 15) - 7));
});
