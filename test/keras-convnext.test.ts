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
 * keras.applications ConvNeXt's building blocks as Keras writes them: the 7x7 depthwise conv as
 * `Conv2D(filters=C, groups=C)`, LayerNormalization, Dense on the NHWC tensor, gelu, the custom LayerScale and
 * StochasticDepth layers, a residual add (convnext.py's ConvNeXtBlock, scaled down), a downsampling layer and the head.
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-convnext-'));

type LayerClass = new (config: object) => tfType.layers.Layer;
const make = (name: string, config: object) => {
  const Cls = (tf.serialization.SerializationMap.getMap().classNameMap as unknown as Record<string, [LayerClass]>)[name][0];
  return new Cls(config);
};
const apply = (layer: tfType.layers.Layer, x: tfType.SymbolicTensor | tfType.SymbolicTensor[]) => layer.apply(x) as tfType.SymbolicTensor;

function convnextMini(dropPathRate: number): tfType.LayersModel {
  const input = tf.input({ shape: [16, 16, 3] });
  let x = apply(tf.layers.conv2d({ filters: 8, kernelSize: 4, strides: 4, name: 'stem_conv' }), input);
  x = apply(tf.layers.layerNormalization({ epsilon: 1e-6, name: 'stem_layernorm' }), x);
  let y = apply(make('GroupedConv2D', { filters: 8, kernelSize: 7, padding: 'same', groups: 8, name: 'block_depthwise_conv' }), x);
  y = apply(tf.layers.layerNormalization({ epsilon: 1e-6, name: 'block_layernorm' }), y);
  y = apply(tf.layers.dense({ units: 32, name: 'block_pointwise_conv_1' }), y);
  y = apply(tf.layers.activation({ activation: 'gelu', name: 'block_gelu' }), y);
  y = apply(tf.layers.dense({ units: 8, name: 'block_pointwise_conv_2' }), y);
  y = apply(make('LayerScale', { initValues: 1e-6, projectionDim: 8, name: 'block_layer_scale' }), y);
  y = apply(make('StochasticDepth', { dropPathRate, name: 'block_stochastic_depth' }), y);
  x = apply(tf.layers.add({ name: 'block_add' }), [x, y]);
  x = apply(tf.layers.layerNormalization({ epsilon: 1e-6, name: 'downsampling_layernorm' }), x);
  x = apply(tf.layers.conv2d({ filters: 16, kernelSize: 2, strides: 2, name: 'downsampling_conv' }), x);
  x = apply(tf.layers.globalAveragePooling2d({ name: 'head_gap' }), x);
  x = apply(tf.layers.layerNormalization({ epsilon: 1e-6, name: 'head_layernorm' }), x);
  const model = tf.model({ inputs: input, outputs: apply(tf.layers.dense({ units: 5, name: 'head_dense' }), x) });
  // Trained-looking weights: a layer scale of 1e-6 would hide the whole block.
  model.setWeights(model.getWeights().map((w, i) => tf.randomNormal(w.shape, 0, 0.4, 'float32', 7 + i)));
  return model;
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst <= tol ? undefined : `max |diff| ${worst}`;
};

for (const [file, write] of [['convnext.h5', writeKeras2H5], ['convnext.keras', writeKeras3]] as const) {
  test(`a Keras ConvNeXt block (${file}) loads with its groups=C conv as DepthwiseConv2D and computes what Keras's layers compute`, async () => {
    const model = convnextMini(0.1);
    const x = tf.randomNormal([4, 16, 16, 3], 0, 1, 'float32', 3);
    const want = (model.predict(x) as tfType.Tensor).dataSync();
    writeFileSync(join(dir, file), await write(model));
    const loaded = await loadModelFrom(tf, join(dir, file));
    const dw = loaded.getLayer('block_depthwise_conv');
    assert.equal(dw.getClassName(), 'DepthwiseConv2D');
    assert.deepEqual(dw.getWeights()[0].shape, [7, 7, 8, 1]);
    assert.equal(loaded.getLayer('block_layer_scale').getClassName(), 'LayerScale');
    assert.equal(loaded.getLayer('block_stochastic_depth').getClassName(), 'StochasticDepth');
    assert.equal(close((loaded.predict(x) as tfType.Tensor).dataSync(), want, 1e-5), undefined);
  });
}

test('LayerScale folds into the Dense before it in the export graph (no multiply left)', async () => {
  writeFileSync(join(dir, 'fold.keras'), await writeKeras3(convnextMini(0)));
  const model = await loadModelFrom(tf, join(dir, 'fold.keras'));
  const ir = buildIr(model, 'tflite');
  const scaled = ir.ops.find((op) => op.layer === 'block_pointwise_conv_2');
  assert.ok(scaled && 'folded' in scaled && scaled.folded, 'the Dense carries the layer scale');
  assert.equal(ir.ops.filter((op) => op.layer === 'block_layer_scale').length, 0);
});

test('StochasticDepth drops whole samples in training (the rest scaled by 1 / keep) and is the identity at inference', () => {
  const layer = make('StochasticDepth', { dropPathRate: 0.5, name: 'sd' }) as tfType.layers.Layer & { seed?: number };
  layer.seed = 4;
  const x = tf.ones([64, 2, 2, 3]);
  assert.deepEqual(Array.from((layer.apply(x) as tfType.Tensor).dataSync()), Array.from(x.dataSync()));
  const y = (layer.apply(x, { training: true }) as tfType.Tensor).reshape([64, 12]).arraySync() as number[][];
  const kept = y.filter((row) => row.every((v) => v === 2)).length;
  const dropped = y.filter((row) => row.every((v) => v === 0)).length;
  assert.equal(kept + dropped, 64, 'every sample is kept whole or dropped whole');
  assert.ok(kept > 16 && dropped > 16, `kept ${kept}, dropped ${dropped}`);
});

for (const [target, precision] of [['tflite', 'float32'], ['tflite', 'dynamic-int8'], ['tflite', 'int8'], ['onnx', 'float32']] as const) {
  test(`the loaded ConvNeXt block exports to ${target} ${precision} (LayerScale folded into the Dense before it, StochasticDepth gone) and agrees in its runtime`, async () => {
    writeFileSync(join(dir, 'export.keras'), await writeKeras3(convnextMini(0.1)));
    const model = await loadModelFrom(tf, join(dir, 'export.keras'));
    const shape = [16, 16, 3];
    const n = 64;
    const xs = tf.randomNormal([n, ...shape], 0, 1, 'float32', 9);
    const x = xs.dataSync() as Float32Array;
    const y = Int32Array.from((model.predict(xs) as tfType.Tensor).argMax(-1).dataSync());
    const out = join(dir, `convnext-${target}-${precision}`);
    const calibration = tf.randomNormal([32, ...shape], 0, 1, 'float32', 2).dataSync() as Float32Array;
    const res = await exportModel(tf, model, emptyMeta(), { target, precision, calibration }, out);
    const v = await verifyExport(tf, { target, precision, dir: out, files: res.files }, model, { x, y, n, sampleShape: shape, numClasses: 5 });
    assert.ok(v.agreement >= 0.95, JSON.stringify(v));
  });
}
