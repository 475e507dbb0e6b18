import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { buildIr, exportModel, verifyExport } from '../src/export/index.js';
import { calibrateActivations } from '../src/compression/calibrate.js';
import { inferencePlan } from '../src/engine/inference.js';
import { emptyMeta } from '../src/model/meta.js';
import { engine, tempDir } from './fixtures/export/models.js';
import { decisiveSamples } from './fixtures/layer-zoo.js';

type Sym = tfType.SymbolicTensor;

/**
 * Keras applications' ZeroPadding2D before stride-2 'valid' convs: ResNet's symmetric pad (not TF's SAME on an even
 * input: the IR keeps a pad op) and `correct_pad` ((0, 1), (0, 1)) (TF's SAME: the IR folds it). The inference plan
 * folds both into their convs, so no walk step computes the pads' outputs; calibration still gives them ranges
 * (the IR's pad op is one of the tensors an int8 export quantizes), and int8 files written from those ranges alone
 * agree with the float model in their runtimes.
 */
function paddedNet(tf: typeof tfType): tfType.LayersModel {
  const L = tf.layers;
  let seed = 5;
  const init = () => tf.initializers.heNormal({ seed: seed++ });
  const ap = (layer: tfType.layers.Layer, x: Sym) => layer.apply(x) as Sym;
  const input = tf.input({ shape: [28, 28, 1], name: 'input' });
  let x = ap(L.zeroPadding2d({ padding: [[1, 1], [1, 1]], name: 'stem_pad' }), input);
  x = ap(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', useBias: false, kernelInitializer: init(), name: 'stem' }), x);
  x = ap(L.reLU({ maxValue: 6, name: 'stem_relu' }), ap(L.batchNormalization({ name: 'stem_bn' }), x));
  x = ap(L.zeroPadding2d({ padding: [[0, 1], [0, 1]], name: 'dw_pad' }), x);
  x = ap(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'valid', useBias: false, depthwiseInitializer: init(), name: 'dw' }), x);
  x = ap(L.reLU({ maxValue: 6, name: 'dw_relu' }), ap(L.batchNormalization({ name: 'dw_bn' }), x));
  x = ap(L.conv2d({ filters: 16, kernelSize: 1, kernelInitializer: init(), name: 'pw' }), x);
  x = ap(L.globalAveragePooling2d({ name: 'gap' }), x);
  return tf.model({ inputs: input, outputs: ap(L.dense({ units: 10, activation: 'softmax', kernelInitializer: init(), name: 'fc' }), x) });
}

test('int8 tflite / onnx of a model whose ZeroPadding2D the plan folds: calibrated ranges cover the IR\'s pad op; the files agree in their runtimes', async () => {
  const tf = await engine();
  const model = paddedNet(tf);
  const plan = inferencePlan(tf, model);
  plan.dispose();
  assert.deepEqual(plan.fused.map((f) => f.zeroPadding), ['stem_pad', 'dw_pad']);
  const ir = buildIr(model, 'tflite');
  assert.deepEqual(ir.ops.filter((o) => o.kind === 'pad').map((o) => o.layer), ['stem_pad']);
  const { test: data, calibration } = decisiveSamples(tf, model);
  const meta = emptyMeta();
  meta.activationRanges = await calibrateActivations(tf, model, { x: calibration, n: calibration.length / 784, sampleShape: [28, 28, 1] });
  assert.ok(meta.activationRanges.stem_pad && meta.activationRanges.dw_pad, JSON.stringify(Object.keys(meta.activationRanges)));
  for (const target of ['tflite', 'onnx'] as const) {
    const dir = tempDir(`int8-zero-padding-${target}`);
    // No calibration samples: every quantized tensor's range comes from meta (a missing one fails the export).
    const res = await exportModel(tf, model, meta, { target, precision: 'int8' }, dir);
    const v = await verifyExport(tf, { target, precision: 'int8', dir, files: res.files }, model, data);
    assert.ok(v.agreement >= 0.99, `${target}: ${JSON.stringify(v)}`);
  }
  model.dispose();
});
