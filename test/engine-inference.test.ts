import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { inferencePlan } from '../src/engine/inference.js';
import { evaluateModel } from '../src/engine/train.js';
import { withNchwInput } from '../src/model/layout.js';
import { createRng } from '../src/util/rng.js';
import { relMaxError } from './fixtures/rel-error.js';

let tf: typeof tfType;
before(async () => {
  ({ tf } = await initEngine('wasm'));
});

type Sym = tfType.SymbolicTensor;


/**
 * Every pattern the plan fuses and the ones it must not: conv -> BN -> ReLU6 (stride 2, 'same'),
 * depthwise (multiplier 2) -> BN (no scale) -> ReLU, conv with bias -> BN (no centre) and no activation,
 * conv -> Activation('relu') without BN, a conv read twice (not fusable), dilated 'valid' conv
 * -> BN -> ReLU(maxValue 4) (BN folds, the activation stays a layer), a dilated depthwise (stays a
 * layer: tfjs-layers runs it undilated, and the plan must compute what model.predict computes).
 */
function buildModel(): tfType.LayersModel {
  const L = tf.layers;
  let seed = 10;
  const init = () => tf.initializers.glorotUniform({ seed: seed++ });
  const input = tf.input({ shape: [13, 11, 3], name: 'in' });
  let x = L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', useBias: false, kernelInitializer: init(), name: 'c1' }).apply(input) as Sym;
  x = L.batchNormalization({ name: 'bn1' }).apply(x) as Sym;
  x = L.reLU({ maxValue: 6, name: 'r1' }).apply(x) as Sym;
  x = L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', depthwiseInitializer: init(), name: 'd2' }).apply(x) as Sym;
  x = L.batchNormalization({ scale: false, name: 'bn2' }).apply(x) as Sym;
  x = L.reLU({ name: 'r2' }).apply(x) as Sym;
  x = L.conv2d({ filters: 16, kernelSize: 1, useBias: true, kernelInitializer: init(), biasInitializer: 'ones', name: 'c3' }).apply(x) as Sym;
  const skip = L.batchNormalization({ center: false, name: 'bn3' }).apply(x) as Sym;
  x = L.conv2d({ filters: 16, kernelSize: 3, padding: 'same', kernelInitializer: init(), name: 'c4' }).apply(skip) as Sym;
  x = L.activation({ activation: 'relu', name: 'a4' }).apply(x) as Sym;
  const twice = L.conv2d({ filters: 16, kernelSize: 1, kernelInitializer: init(), name: 'c5' }).apply(x) as Sym;
  const bn5 = L.batchNormalization({ name: 'bn5' }).apply(twice) as Sym;
  x = L.add({ name: 'add' }).apply([bn5, twice, skip]) as Sym;
  x = L.conv2d({ filters: 8, kernelSize: 2, dilationRate: 2, padding: 'valid', kernelInitializer: init(), name: 'c6' }).apply(x) as Sym;
  x = L.batchNormalization({ name: 'bn6' }).apply(x) as Sym;
  x = L.reLU({ maxValue: 4, name: 'r6' }).apply(x) as Sym;
  x = L.depthwiseConv2d({ kernelSize: 2, dilationRate: 2, padding: 'same', depthwiseInitializer: init(), name: 'd7' }).apply(x) as Sym;
  const out = L.batchNormalization({ name: 'bn7' }).apply(x) as Sym;
  const model = tf.model({ inputs: input, outputs: out });
  // Moving statistics and affine parameters away from their initial 0 / 1, so folding them matters.
  const rng = createRng(42);
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    layer.setWeights(layer.weights.map((w) => {
      const isVariance = w.name.includes('moving_variance');
      const shape = w.shape as number[];
      const size = shape.reduce((a, b) => a * b, 1);
      return tf.tensor(Float32Array.from({ length: size }, () => (isVariance ? 0.2 + rng() * 2 : rng() * 2 - 1)), shape);
    }));
  }
  return model;
}

test('inference plan: batch norms folded into convs and fused activations compute what model.predict does on the cpu backend', async () => {
  const model = buildModel();
  const rng = createRng(7);
  const xv = Float32Array.from({ length: 3 * 13 * 11 * 3 }, () => rng() * 2 - 1);
  await tf.setBackend('cpu');
  const reference = tf.tidy(() => (model.predict(tf.tensor(xv, [3, 13, 11, 3])) as tfType.Tensor).dataSync() as Float32Array);
  await tf.setBackend('wasm');
  const plan = inferencePlan(tf, model);
  try {
    const got = tf.tidy(() => plan.predict(tf.tensor(xv, [3, 13, 11, 3])).dataSync() as Float32Array);
    const err = relMaxError(got, reference);
    assert.ok(err <= 1e-5, `plan vs cpu model.predict: ${err}`);
  } finally {
    plan.dispose();
  }
});

test('inference plan fuses exactly the conv -> batch norm -> activation chains no other layer reads', () => {
  const model = buildModel();
  const plan = inferencePlan(tf, model);
  plan.dispose();
  assert.deepEqual(plan.fused, [
    { conv: 'c1', batchNorm: 'bn1', activation: 'r1' },
    { conv: 'd2', batchNorm: 'bn2', activation: 'r2' },
    { conv: 'c3', batchNorm: 'bn3', activation: undefined },
    { conv: 'c4', batchNorm: undefined, activation: 'a4' },
    { conv: 'c6', batchNorm: 'bn6', activation: undefined },
  ]);
});

test('inference plan frees every intermediate tensor: only the output and its own folded weights outlive a pass', () => {
  const model = buildModel();
  const before = tf.memory().numTensors;
  const plan = inferencePlan(tf, model);
  const withPlan = tf.memory().numTensors;
  // c1 (3x3 over the 3 input channels) and c3 (1x1) run on compress's SIMD kernels: their filters also packed.
  assert.equal(withPlan - before, 2 * plan.fused.length + 2, 'a folded filter and a bias per fused conv, a packed filter for c1 and c3');
  const x = tf.ones([2, 13, 11, 3]);
  const y = plan.predict(x);
  assert.equal(tf.memory().numTensors, withPlan + 2, 'x and y only');
  y.dispose();
  x.dispose();
  plan.dispose();
  assert.equal(tf.memory().numTensors, before);
});

test('evaluateModel runs through the plan and predicts what model.predict predicts', () => {
  const L = tf.layers;
  const input = tf.input({ shape: [8, 8, 2] });
  let x = L.conv2d({ filters: 6, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(input) as Sym;
  x = L.batchNormalization({ movingVarianceInitializer: tf.initializers.constant({ value: 0.3 }), betaInitializer: tf.initializers.constant({ value: 0.2 }) }).apply(x) as Sym;
  x = L.reLU({ maxValue: 6 }).apply(x) as Sym;
  x = L.globalAveragePooling2d({}).apply(x) as Sym;
  x = L.dense({ units: 4, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }) }).apply(x) as Sym;
  const model = tf.model({ inputs: input, outputs: x });
  const rng = createRng(9);
  const n = 40;
  const data = { x: Float32Array.from({ length: n * 128 }, () => rng() * 2 - 1), y: Int32Array.from({ length: n }, (_, i) => i % 4), n, sampleShape: [8, 8, 2], numClasses: 4 };
  const expected = tf.tidy(() => tf.argMax(model.predict(tf.tensor(data.x, [n, 8, 8, 2])) as tfType.Tensor, -1).dataSync() as Int32Array);
  const ev = evaluateModel(tf, model, data, 16);
  assert.deepEqual(Array.from(ev.predictions), Array.from(expected));
  assert.equal(ev.accuracy, expected.filter((p, i) => p === data.y[i]).length / n);
});

test('inference plan walk: one output per step named by its last layer, the same values as predict; hooks replace outputs; nothing leaks', () => {
  const model = buildModel();
  const plan = inferencePlan(tf, model);
  const x = tf.tensor(Float32Array.from({ length: 2 * 13 * 11 * 3 }, (_, i) => Math.sin(i)), [2, 13, 11, 3]);
  const before = tf.memory().numTensors;
  const seen: string[] = [];
  const walk = plan.walk(x);
  let r = walk.next();
  for (; !r.done; r = walk.next()) {
    seen.push(r.value.layer);
    assert.equal(r.value.layer, r.value.layers[r.value.layers.length - 1]);
  }
  assert.deepEqual(seen, [...plan.outputLayers]);
  assert.deepEqual(seen, ['r1', 'r2', 'bn3', 'a4', 'c5', 'bn5', 'add', 'bn6', 'r6', 'd7', 'bn7']);
  const predicted = plan.predict(x);
  assert.deepEqual(Array.from(r.value.dataSync()), Array.from(predicted.dataSync()));
  tf.dispose([r.value, predicted]);
  // A hook's replacement is what the walk yields (and what later steps read).
  const zeroed = plan.walk(x, { onOutput: (layer, t) => (layer === 'add' ? tf.zerosLike(t) : undefined) });
  let z = zeroed.next();
  for (; !z.done; z = zeroed.next()) {
    const step = z.value;
    if (step.layer === 'add') assert.equal(tf.tidy(() => tf.max(tf.abs(step.outputs[0])).dataSync()[0]), 0);
  }
  z.value.dispose();
  // An abandoned walk releases its tensors when closed.
  const open = plan.walk(x);
  open.next();
  open.next();
  open.return(undefined as never);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
  plan.dispose();
});

test('inference plan: Reshape [P, C/k, k] -> Cropping2D -> Reshape (the ONNX importer\'s channel slice) is one step with model.predict\'s values; a crop of other axes stays layers', () => {
  const L = tf.layers;
  const input = tf.input({ shape: [5, 3, 12], name: 'in' });
  const rows = L.reshape({ targetShape: [15, 3, 4], name: 'rows' }).apply(input) as Sym;
  const cut = L.cropping2D({ cropping: [[0, 0], [1, 1]], name: 'cut' }).apply(rows) as Sym;
  const half = L.reshape({ targetShape: [5, 3, 4], name: 'half' }).apply(cut) as Sym;
  const rows2 = L.reshape({ targetShape: [15, 3, 4], name: 'rows2' }).apply(input) as Sym;
  const spatial = L.cropping2D({ cropping: [[1, 0], [0, 2]], name: 'spatial' }).apply(rows2) as Sym;
  const back = L.reshape({ targetShape: [14, 4], name: 'back' }).apply(spatial) as Sym;
  const model = tf.model({ inputs: input, outputs: L.concatenate({ axis: 1, name: 'cat' }).apply([L.reshape({ targetShape: [15, 4] }).apply(half) as Sym, back]) as Sym });
  const plan = inferencePlan(tf, model);
  const x = tf.randomNormal([3, 5, 3, 12], 0, 1, 'float32', 4);
  const got = plan.predict(x);
  const want = model.predict(x) as tfType.Tensor;
  assert.deepEqual(Array.from(got.dataSync()), Array.from(want.dataSync()));
  assert.ok(plan.outputLayers.includes('half') && !plan.outputLayers.includes('rows') && !plan.outputLayers.includes('cut'), plan.outputLayers.join(' '));
  assert.ok(plan.outputLayers.includes('spatial'), plan.outputLayers.join(' '));
  // The same layers called again in another model (an NCHW-input export's): the plan reads that graph's nodes.
  const wrapped = inferencePlan(tf, withNchwInput(tf, model));
  const xt = x.transpose([0, 3, 1, 2]);
  const got2 = wrapped.predict(xt);
  assert.deepEqual(Array.from(got2.dataSync()), Array.from(want.dataSync()));
  tf.dispose([x, xt, got, got2, want]);
  wrapped.dispose();
  plan.dispose();
  model.dispose();
});
