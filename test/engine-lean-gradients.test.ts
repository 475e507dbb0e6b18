/**
 * The training step's backward pass (src/engine/lean-gradients.ts) frees each node's output gradients and saved
 * tensors once the node is done: the same gradients as tf.variableGrads, in less memory.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { leanVariableGrads } from '../src/engine/lean-gradients.js';
import { trainingForward } from '../src/engine/train.js';
import { createRng } from '../src/util/rng.js';

let tf: typeof tfType;
before(async () => {
  ({ tf } = await initEngine('wasm'));
});

/** A small MobileNetV2-like net: conv-BN-ReLU6, a padded stride-2 depthwise, six residual depthwise blocks, a conv with bias and ReLU. */
function buildNet(): tfType.LayersModel {
  const L = tf.layers;
  const rng = createRng(21);
  const init = () => tf.initializers.randomUniform({ minval: -0.4, maxval: 0.4, seed: Math.floor(rng() * 1e6) });
  const bn = (t: tfType.SymbolicTensor) => L.batchNormalization({ gammaInitializer: init(), betaInitializer: init() }).apply(t) as tfType.SymbolicTensor;
  const relu6 = (t: tfType.SymbolicTensor) => L.reLU({ maxValue: 6 }).apply(t) as tfType.SymbolicTensor;
  const input = tf.input({ shape: [16, 16, 3] });
  const a = relu6(bn(L.conv2d({ filters: 16, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init() }).apply(input) as tfType.SymbolicTensor));
  const padded = L.zeroPadding2d({ padding: [[0, 1], [0, 1]] }).apply(a) as tfType.SymbolicTensor;
  const d = relu6(bn(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'valid', useBias: false, depthwiseInitializer: init() }).apply(padded) as tfType.SymbolicTensor));
  let sum = d;
  for (let block = 0; block < 6; block++) {
    const p = bn(L.conv2d({ filters: 16, kernelSize: 1, useBias: false, kernelInitializer: init() }).apply(relu6(bn(L.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false, depthwiseInitializer: init() }).apply(sum) as tfType.SymbolicTensor))) as tfType.SymbolicTensor);
    sum = L.add().apply([p, sum]) as tfType.SymbolicTensor;
  }
  const e = L.conv2d({ filters: 16, kernelSize: 1, activation: 'relu', kernelInitializer: init(), biasInitializer: init() }).apply(sum) as tfType.SymbolicTensor;
  const out = L.dense({ units: 5, activation: 'softmax', kernelInitializer: init() }).apply(L.globalAveragePooling2d({}).apply(e)) as tfType.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

type Grads = (f: () => tfType.Scalar, vars: tfType.Variable[]) => { value: tfType.Scalar; grads: Record<string, tfType.Tensor> };

type Forward = (model: tfType.LayersModel, x: tfType.Tensor) => tfType.Tensor;
const applyForward: Forward = (model, x) => model.apply(x, { training: true }) as tfType.Tensor;

/** One step's loss and gradients (by variable name) with `grads`, from the same weights, and the step's peak tensor memory. */
async function step(model: tfType.LayersModel, initial: tfType.Tensor[], grads: Grads, forward: Forward = applyForward) {
  const rng = createRng(4);
  const x = tf.tensor4d(Float32Array.from({ length: 8 * 16 * 16 * 3 }, () => rng() * 2 - 1), [8, 16, 16, 3]);
  const y = tf.tidy(() => tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 0, 1, 2], 'int32'), 5));
  let values: Record<string, Float32Array> = {};
  const { peakBytes } = await tf.profile(() => {
    model.setWeights(initial);
    const vars = model.trainableWeights.map((w) => w.read() as tfType.Variable);
    const f = () => tf.losses.softmaxCrossEntropy(y, forward(model, x)) as tfType.Scalar;
    const r = grads(f, vars);
    values = { loss: r.value.dataSync() as Float32Array, ...Object.fromEntries(Object.entries(r.grads).map(([k, g]) => [k, g.dataSync() as Float32Array])) };
    tf.dispose([r.value, ...Object.values(r.grads)]);
  });
  tf.dispose([x, y]);
  return { values, peakBytes };
}

test('the lean backward pass gives tf.variableGrads\' loss and gradients, bit for bit, and leaves no tensor behind', async () => {
  const model = buildNet();
  const initial = model.getWeights().map((w) => w.clone());
  const before = tf.memory().numTensors;
  const lean = await step(model, initial, (f, vars) => leanVariableGrads(tf, f, vars));
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  const stock = await step(model, initial, (f, vars) => tf.variableGrads(f, vars) as ReturnType<Grads>);
  assert.deepEqual(Object.keys(lean.values).sort(), Object.keys(stock.values).sort());
  assert.equal(Object.keys(lean.values).length, 1 + model.trainableWeights.length);
  for (const [name, v] of Object.entries(lean.values)) assert.deepEqual(v, stock.values[name], name);
  assert.ok(lean.peakBytes <= stock.peakBytes, `peak tensor memory: lean ${lean.peakBytes} B, tf.variableGrads ${stock.peakBytes} B`);
  tf.dispose(initial);
  model.dispose();
});

test('inside another gradient (higher order) the lean pass defers to tf.variableGrads', () => {
  const v = tf.variable(tf.scalar(3));
  // d/dx of (the gradient of v*v*x w.r.t. v) = d/dx (2 v x) = 2v = 6.
  const outer = tf.grad((x: tfType.Tensor) => {
    const { grads } = leanVariableGrads(tf, () => tf.mul(tf.mul(v, v), x) as tfType.Scalar, [v]);
    return grads[v.name];
  });
  assert.equal(outer(tf.scalar(2)).dataSync()[0], 6);
  v.dispose();
});

test('the lean backward pass frees the gradients and saved tensors of the nodes it is done with', () => {
  // conv -> probe -> 7 x (conv -> relu) -> mean; the probe's gradient runs last but one, and notes the live bytes then.
  const ws = Array.from({ length: 8 }, (_, i) => tf.variable(tf.randomUniform([3, 3, 8, 8], -0.3, 0.3, 'float32', i + 1)));
  const x = tf.randomUniform([4, 32, 32, 8], -1, 1, 'float32', 99);
  const liveAtProbe = (grads: Grads): number => {
    let bytes = 0;
    const probe = tf.customGrad((t: unknown) => ({ value: tf.clone(t as tfType.Tensor), gradFunc: (dy: tfType.Tensor) => ((bytes = tf.memory().numBytes), tf.clone(dy)) }));
    const f = () => {
      let h = probe(tf.conv2d(x as tfType.Tensor4D, ws[0] as tfType.Tensor4D, 1, 'same')) as tfType.Tensor4D;
      for (const w of ws.slice(1)) h = tf.relu(tf.conv2d(h, w as tfType.Tensor4D, 1, 'same'));
      return tf.mean(h) as tfType.Scalar;
    };
    const r = grads(f, ws);
    tf.dispose([r.value, ...Object.values(r.grads)]);
    return bytes;
  };
  const base = tf.memory().numBytes; // the variables and x
  const lean = liveAtProbe((f, vars) => leanVariableGrads(tf, f, vars)) - base;
  const stock = liveAtProbe((f, vars) => tf.variableGrads(f, vars) as ReturnType<Grads>) - base;
  // tfjs holds the 7 later layers' saved inputs and outputs and their gradients there; the lean pass, its frontier.
  const activation = 4 * 32 * 32 * 8 * 4;
  assert.ok(stock >= 14 * activation, `tf.variableGrads: ${stock} B live at the probe`);
  assert.ok(lean <= 4 * activation, `lean: ${lean} B live at the probe (one activation: ${activation} B)`);
  tf.dispose([...ws, x]);
});

test('the layer-by-layer training forward pass gives model.apply\'s loss and gradients, bit for bit, and peaks lower', async () => {
  const model = buildNet();
  const initial = model.getWeights().map((w) => w.clone());
  const lean = (f: () => tfType.Scalar, vars: tfType.Variable[]) => leanVariableGrads(tf, f, vars);
  const before = tf.memory().numTensors;
  const walked = await step(model, initial, lean, (m, x) => trainingForward(tf, m, x));
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  const applied = await step(model, initial, lean);
  for (const [name, v] of Object.entries(walked.values)) assert.deepEqual(v, applied.values[name], name);
  // model.apply held every layer's output until the pass ended.
  assert.ok(walked.peakBytes < applied.peakBytes * 0.8, `peak tensor memory: layer by layer ${walked.peakBytes} B, model.apply ${applied.peakBytes} B`);
  tf.dispose(initial);
  model.dispose();
});

test('a gradient function that returns one tensor for two inputs, or dy itself, is handled (each input gets its own)', () => {
  const a = tf.variable(tf.tensor1d([1, 2, 3]));
  const b = tf.variable(tf.tensor1d([4, 5, 6]));
  const sumBoth = tf.customGrad((x: unknown, y: unknown) => {
    const value = tf.add(x as tfType.Tensor, y as tfType.Tensor);
    return { value, gradFunc: (dy: tfType.Tensor) => { const g = tf.mul(dy, 2); return [g, g]; } };
  });
  const passOn = tf.customGrad((x: unknown) => ({ value: tf.clone(x as tfType.Tensor), gradFunc: (dy: tfType.Tensor) => dy }));
  // loss = sum(passOn(sumBoth(a, b)) * a): a's gradient collects two terms (one disposed after it is summed).
  const { value, grads } = leanVariableGrads(tf, () => tf.sum(tf.mul(passOn(sumBoth(a, b)) as tfType.Tensor, a)) as tfType.Scalar, [a, b]);
  const stock = tf.variableGrads(() => tf.sum(tf.mul(passOn(sumBoth(a, b)) as tfType.Tensor, a)) as tfType.Scalar, [a, b]);
  assert.equal(value.dataSync()[0], stock.value.dataSync()[0]);
  assert.deepEqual([...grads[a.name].dataSync()], [...stock.grads[a.name].dataSync()]);
  assert.deepEqual([...grads[b.name].dataSync()], [...stock.grads[b.name].dataSync()]);
  assert.deepEqual([...grads[b.name].dataSync()], [2, 4, 6]);
  tf.dispose([a, b, value, stock.value, ...Object.values(grads), ...Object.values(stock.grads)]);
});
