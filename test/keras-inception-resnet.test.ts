import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { exportModel, verifyExport } from '../src/export/index.js';
import { buildIr } from '../src/export/ir.js';
import { emptyMeta } from '../src/model/meta.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { writeKeras2H5, writeKeras3 } from './fixtures/keras-writer.js';

/**
 * keras.applications InceptionResNetV2's scaled residual, `CustomScaleLayer(scale)([x, up])` = x + up * scale
 * (inception_resnet_block: branches -> Concatenate -> a 1x1 conv with bias -> the scaled add -> ReLU), scaled down.
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-irv2-'));

function block(): tfType.LayersModel {
  const Cls = (tf.serialization.SerializationMap.getMap().classNameMap as unknown as Record<string, [new (c: object) => tfType.layers.Layer]>).CustomScaleLayer[0];
  const apply = (l: tfType.layers.Layer, x: tfType.SymbolicTensor | tfType.SymbolicTensor[]) => l.apply(x) as tfType.SymbolicTensor;
  const input = tf.input({ shape: [9, 9, 3] });
  const x = apply(tf.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', name: 'stem' }), input);
  const b0 = apply(tf.layers.conv2d({ filters: 4, kernelSize: 1, activation: 'relu', name: 'branch_0' }), x);
  const b1 = apply(tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'branch_1' }), x);
  const mixed = apply(tf.layers.concatenate({ name: 'block35_0_mixed' }), [b0, b1]);
  const up = apply(tf.layers.conv2d({ filters: 8, kernelSize: 1, name: 'block35_0_conv' }), mixed);
  let y = apply(new Cls({ scale: 0.17, name: 'custom_scale_layer' }), [x, up]);
  y = apply(tf.layers.activation({ activation: 'relu', name: 'block35_0_ac' }), y);
  y = apply(tf.layers.globalAveragePooling2d({ name: 'gap' }), y);
  const model = tf.model({ inputs: input, outputs: apply(tf.layers.dense({ units: 5, name: 'predictions' }), y) });
  model.setWeights(model.getWeights().map((w, i) => tf.randomNormal(w.shape, 0, 0.4, 'float32', 3 + i)));
  return model;
}

test('CustomScaleLayer loads from .h5 and .keras and computes x + r * scale', async () => {
  const model = block();
  const x = tf.randomNormal([4, 9, 9, 3], 0, 1, 'float32', 5);
  const want = (model.predict(x) as tfType.Tensor).dataSync();
  // The layer alone, against the formula.
  const a = tf.randomNormal([2, 3, 3, 8], 0, 1, 'float32', 1);
  const r = tf.randomNormal([2, 3, 3, 8], 0, 1, 'float32', 2);
  const got = (model.getLayer('custom_scale_layer').apply([a, r]) as tfType.Tensor).dataSync();
  const formula = tf.add(a, tf.mul(r, 0.17)).dataSync();
  assert.ok(got.every((v, i) => Math.abs(v - formula[i]) < 1e-6));
  for (const [file, bytes] of [['irv2.h5', await writeKeras2H5(model)], ['irv2.keras', await writeKeras3(model)]] as const) {
    writeFileSync(join(dir, file), bytes);
    const loaded = await loadModelFrom(tf, join(dir, file));
    assert.equal(loaded.getLayer('custom_scale_layer').getClassName(), 'CustomScaleLayer', file);
    const out = (loaded.predict(x) as tfType.Tensor).dataSync();
    assert.ok(out.every((v, i) => Math.abs(v - want[i]) < 1e-5), file);
  }
});

test("the scale folds into the conv computing the residual: the export graph has the add and no multiply", () => {
  const ir = buildIr(block(), 'tflite');
  const ops = ir.ops.filter((op) => op.layer === 'custom_scale_layer').map((op) => op.kind);
  assert.deepEqual(ops, ['add']);
  const conv = ir.ops.find((op) => op.layer === 'block35_0_conv');
  assert.ok(conv && 'folded' in conv && conv.folded);
});

for (const [target, precision] of [['tflite', 'int8'], ['onnx', 'float32']] as const) {
  test(`an InceptionResNet block exports to ${target} ${precision} and agrees in its runtime`, async () => {
    const model = block();
    const shape = [9, 9, 3];
    const n = 64;
    const xs = tf.randomNormal([n, ...shape], 0, 1, 'float32', 9);
    const y = Int32Array.from((model.predict(xs) as tfType.Tensor).argMax(-1).dataSync());
    const out = join(dir, `irv2-${target}-${precision}`);
    const calibration = tf.randomNormal([32, ...shape], 0, 1, 'float32', 2).dataSync() as Float32Array;
    const res = await exportModel(tf, model, emptyMeta(), { target, precision, calibration }, out);
    const v = await verifyExport(tf, { target, precision, dir: out, files: res.files }, model, { x: xs.dataSync() as Float32Array, y, n, sampleShape: shape, numClasses: 5 });
    assert.ok(v.agreement >= 0.95, JSON.stringify(v));
  });
}
