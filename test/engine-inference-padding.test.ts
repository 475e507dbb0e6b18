import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { inferencePlan } from '../src/engine/inference.js';
import { setInferenceConvs } from '../src/engine/kernels/index.js';
import { simdKernels, type SimdKernels } from '../src/engine/simd/module.js';
import { calibrateActivations, INPUT_KEY } from '../src/compression/calibrate.js';
import { cloneModel, layerErrorReport } from '../src/compression/fakequant.js';
import { createRng } from '../src/util/rng.js';
import { relMaxError } from './fixtures/rel-error.js';

/**
 * ZeroPadding2D folded into the conv after it by the inference plan (src/engine/inference.ts): the conv runs on
 * the unpadded input with explicit padding, on compress's SIMD kernels (3x3 over 3 channels, 3x3 depthwise) and on
 * XNNPACK, and computes what model.predict computes; a pad read twice stays a layer; calibration still gives a
 * folded pad the range of its (never computed) output.
 */
let tf: typeof tfType;
const simdCalls = { dw3x3: 0, conv3x3c3: 0 };
before(async () => {
  ({ tf } = await initEngine('wasm'));
  const k = simdKernels(tf.backend()) as SimdKernels;
  for (const name of ['dw3x3', 'conv3x3c3'] as const) {
    const inner = k[name] as (...a: number[]) => void;
    (k as unknown as Record<string, unknown>)[name] = (...a: number[]) => {
      simdCalls[name]++;
      inner(...a);
    };
  }
});
after(() => setInferenceConvs('auto'));

type Sym = tfType.SymbolicTensor;

/**
 * Keras applications' patterns: `correct_pad` ((0, 1), (0, 1)) before a stride-2 'valid' 3x3 conv over the image
 * and before a stride-2 'valid' depthwise conv, each with BN + ReLU6 after; a symmetric pad before a stride-2
 * depthwise; a pad before a 'same' conv (static size: the conv's own SAME padding is added), before a grouped conv,
 * before a 1x1 conv with its own relu6 and no BN (XNNPACK: the SIMD GEMM takes no padding); a pad read by two convs
 * (not folded).
 */
function paddedModel(): tfType.LayersModel {
  const L = tf.layers;
  let seed = 30;
  const init = () => tf.initializers.glorotUniform({ seed: seed++ });
  const ap = (layer: tfType.layers.Layer, x: Sym | Sym[]) => layer.apply(x) as Sym;
  const bnRelu6 = (x: Sym, name: string) => ap(L.reLU({ maxValue: 6, name: `${name}_relu` }), ap(L.batchNormalization({ name: `${name}_bn` }), x));
  const input = tf.input({ shape: [32, 31, 3], name: 'in' });
  let x = ap(L.zeroPadding2d({ padding: [[0, 1], [0, 1]], name: 'stem_pad' }), input);
  x = bnRelu6(ap(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', useBias: false, kernelInitializer: init(), name: 'stem' }), x), 'stem');
  x = ap(L.zeroPadding2d({ padding: [[1, 1], [1, 1]], name: 'dw1_pad' }), x);
  x = bnRelu6(ap(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'valid', useBias: false, depthwiseInitializer: init(), name: 'dw1' }), x), 'dw1');
  x = bnRelu6(ap(L.conv2d({ filters: 16, kernelSize: 1, useBias: false, kernelInitializer: init(), name: 'expand' }), x), 'expand');
  x = ap(L.zeroPadding2d({ padding: [[0, 1], [0, 1]], name: 'dw2_pad' }), x);
  x = bnRelu6(ap(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'valid', useBias: false, depthwiseInitializer: init(), name: 'dw2' }), x), 'dw2');
  x = ap(L.zeroPadding2d({ padding: [[1, 1], [0, 2]], name: 'same_pad' }), x);
  x = ap(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', kernelInitializer: init(), name: 'same' }), x);
  x = ap(L.activation({ activation: 'relu', name: 'same_act' }), x);
  const twice = ap(L.zeroPadding2d({ padding: [[1, 0], [0, 1]], name: 'twice_pad' }), x);
  const a = ap(L.conv2d({ filters: 8, kernelSize: 2, kernelInitializer: init(), name: 'twice_a' }), twice);
  const b = ap(L.conv2d({ filters: 8, kernelSize: 2, activation: 'relu', kernelInitializer: init(), name: 'twice_b' }), twice);
  x = ap(L.add({ name: 'twice_add' }), [a, b]);
  x = ap(L.zeroPadding2d({ padding: [[1, 1], [1, 1]], name: 'grouped_pad' }), x);
  const Grouped = tf.serialization.SerializationMap.getMap().classNameMap.GroupedConv2D[0] as unknown as new (a: object) => tfType.layers.Layer;
  x = ap(new Grouped({ filters: 8, kernelSize: 3, padding: 'valid', groups: 2, kernelInitializer: init(), name: 'grouped' }), x);
  x = ap(L.batchNormalization({ name: 'grouped_bn' }), x);
  x = ap(L.zeroPadding2d({ padding: [[2, 0], [1, 3]], name: 'pw_pad' }), x);
  x = ap(L.conv2d({ filters: 8, kernelSize: 1, activation: 'relu6', biasInitializer: 'ones', kernelInitializer: init(), name: 'pw' }), x);
  const model = tf.model({ inputs: input, outputs: x });
  // Moving statistics and affine parameters away from their initial 0 / 1, so folding them matters.
  const rng = createRng(43);
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    layer.setWeights(layer.weights.map((w) => {
      const size = w.shape.reduce((p: number, q) => p * (q ?? 1), 1);
      return tf.tensor(Float32Array.from({ length: size }, () => (w.name.includes('moving_variance') ? 0.2 + rng() * 2 : rng() * 2 - 1)), w.shape as number[]);
    }));
  }
  return model;
}

const FOLDED = ['stem_pad', 'dw1_pad', 'dw2_pad', 'same_pad', 'grouped_pad', 'pw_pad'];

test('inference plan: a ZeroPadding2D read only by a conv folds into its padding; a pad read twice stays a layer', () => {
  const model = paddedModel();
  const plan = inferencePlan(tf, model);
  plan.dispose();
  assert.deepEqual(plan.fused, [
    { conv: 'stem', zeroPadding: 'stem_pad', batchNorm: 'stem_bn', activation: 'stem_relu' },
    { conv: 'dw1', zeroPadding: 'dw1_pad', batchNorm: 'dw1_bn', activation: 'dw1_relu' },
    { conv: 'expand', batchNorm: 'expand_bn', activation: 'expand_relu' },
    { conv: 'dw2', zeroPadding: 'dw2_pad', batchNorm: 'dw2_bn', activation: 'dw2_relu' },
    { conv: 'same', zeroPadding: 'same_pad', batchNorm: undefined, activation: 'same_act' },
    { conv: 'grouped', zeroPadding: 'grouped_pad', batchNorm: 'grouped_bn', activation: undefined },
    { conv: 'pw', zeroPadding: 'pw_pad', batchNorm: undefined, activation: undefined },
  ]);
  assert.deepEqual(plan.outputLayers, ['stem_relu', 'dw1_relu', 'expand_relu', 'dw2_relu', 'same_act', 'twice_pad', 'twice_a', 'twice_b', 'twice_add', 'grouped_bn', 'pw']);
  const unfused = inferencePlan(tf, model, { fuse: false });
  unfused.dispose();
  for (const pad of [...FOLDED, 'twice_pad']) assert.ok(unfused.outputLayers.includes(pad), pad);
  model.dispose();
});

test('inference plan: convs with a folded ZeroPadding2D compute what model.predict computes, on the SIMD kernels and on XNNPACK', async () => {
  const model = paddedModel();
  const rng = createRng(8);
  const xv = Float32Array.from({ length: 3 * 32 * 31 * 3 }, () => rng() * 2 - 1);
  await tf.setBackend('cpu');
  const reference = tf.tidy(() => (model.predict(tf.tensor(xv, [3, 32, 31, 3])) as tfType.Tensor).dataSync() as Float32Array);
  await tf.setBackend('wasm');
  const plan = inferencePlan(tf, model);
  try {
    for (const convs of ['simd', 'xnnpack'] as const) {
      setInferenceConvs(convs);
      const before = { ...simdCalls };
      const x = tf.tensor(xv, [3, 32, 31, 3]);
      const walk = plan.walk(x);
      let r = walk.next();
      for (; !r.done; r = walk.next()) {
        const { layers } = r.value;
        // A folded pad's step starts with it and yields the output of its last layer.
        if (FOLDED.includes(layers[0])) assert.ok(layers.length > 1 && !plan.outputLayers.includes(layers[0]), layers.join(' '));
      }
      const got = r.value.dataSync() as Float32Array;
      tf.dispose([r.value, x]);
      const err = relMaxError(got, reference);
      assert.ok(err <= 1e-5, `${convs}: plan vs cpu model.predict: ${err}`);
      // 'simd': the stem (3x3 over 3 channels) and the two depthwise convs ran on compress's kernels, padded.
      const ran = { dw3x3: simdCalls.dw3x3 - before.dw3x3, conv3x3c3: simdCalls.conv3x3c3 - before.conv3x3c3 };
      assert.deepEqual(ran, convs === 'simd' ? { dw3x3: 2, conv3x3c3: 1 } : { dw3x3: 0, conv3x3c3: 0 }, convs);
    }
  } finally {
    setInferenceConvs('auto');
    plan.dispose();
    model.dispose();
  }
});

test('calibration: a folded ZeroPadding2D gets the range of its padded output, as when the pad runs as a layer', async () => {
  const model = paddedModel();
  const rng = createRng(12);
  // Inputs in [0.5, 1.5]: the model input's range excludes 0, the stem pad's output includes it.
  const s = { x: Float32Array.from({ length: 10 * 32 * 31 * 3 }, () => 0.5 + rng()), n: 10, sampleShape: [32, 31, 3] };
  try {
    for (const method of ['minmax', 'percentile'] as const) {
      const fused = await calibrateActivations(tf, model, s, { method, percentile: 99, batchSize: 4 });
      const layerwise = await calibrateActivations(tf, model, s, { method, percentile: 99, batchSize: 4, fuse: false });
      for (const pad of [...FOLDED, 'twice_pad']) assert.ok(fused[pad], `${method}: ${pad} has a range`);
      // The stem pad's input is the model input itself (no folding in between): the same statistics, the same range.
      assert.deepEqual(fused.stem_pad, layerwise.stem_pad, method);
      for (const pad of FOLDED) {
        const [f, l] = [fused[pad], layerwise[pad]];
        // float32 rounding apart (batch norm folded or not); a percentile may also move by a histogram bin.
        const tol = 1e-5 * Math.max(1, Math.abs(l.min), Math.abs(l.max)) + (method === 'minmax' ? 0 : (2 * (l.max - l.min)) / 2048);
        assert.ok(Math.abs(f.min - l.min) <= tol && Math.abs(f.max - l.max) <= tol, `${method} ${pad}: [${f.min}, ${f.max}] vs layer by layer [${l.min}, ${l.max}]`);
      }
      // In walk order, each folded pad right before its conv step's output.
      const keys = Object.keys(fused);
      assert.equal(keys[0], INPUT_KEY);
      assert.ok(keys.indexOf('stem_pad') === 1 && keys.indexOf('stem_relu') === 2, keys.join(' '));
    }
    const only = await calibrateActivations(tf, model, s, { layers: ['dw2_pad'] });
    assert.deepEqual(Object.keys(only), [INPUT_KEY, 'dw2_pad']);
  } finally {
    model.dispose();
  }
});

test('per-layer error report: a fused block with a folded pad is its conv\'s row (the kernels compared), its block listing the pad', async () => {
  const model = paddedModel();
  const candidate = await cloneModel(tf, model);
  const rng = createRng(13);
  const s = { x: Float32Array.from({ length: 4 * 32 * 31 * 3 }, () => rng() * 2 - 1), n: 4, sampleShape: [32, 31, 3] };
  try {
    const rows = await layerErrorReport(tf, model, candidate, s);
    const stem = rows.find((r) => r.block?.includes('stem_pad'));
    assert.deepEqual(stem?.block, ['stem_pad', 'stem', 'stem_bn', 'stem_relu']);
    assert.equal(stem?.layer, 'stem');
    assert.equal(stem?.weight?.relL2, 0, JSON.stringify(stem));
  } finally {
    model.dispose();
    candidate.dispose();
  }
});
