/**
 * Training-step fusions on wasm (src/engine/fused-activations.ts, src/engine/kernels/batchnorm.ts,
 * src/engine/kernels/gradients.ts): a batch norm runs the ReLU / ReLU6 after it in its own passes, and a
 * conv without bias computes no gradient for an input nothing needs. Each is checked against the cpu
 * backend (tfjs-layers' own layers, op by op) on a training step's loss, every variable's gradient and
 * the moving statistics.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { shardGradients } from '../src/engine/train.js';
import { createRng } from '../src/util/rng.js';
import { relMaxError } from './fixtures/rel-error.js';

let tf: typeof tfType;
before(async () => {
  ({ tf } = await initEngine('wasm'));
});

const simdOn = process.env.COMPRESS_WASM_SIMD !== '0';
const N = 16, HW = 6, C = 8; // 16*6*6*8 = 4608 elements: the SIMD batch-norm path (>= 4096)

type Wiring = 'chain' | 'shared-output' | 'no-batch-norm' | 'residual-pad';

/**
 * conv (no bias) -> batch norm -> activation -> conv -> batch norm -> activation -> pooling -> softmax.
 * 'shared-output': the first batch norm's output also feeds an Add. 'no-batch-norm': conv (bias) ->
 * activation -> depthwise (bias) -> activation -> conv (bias) -> activation (the importers' convs with the
 * batch norm folded in). 'residual-pad': conv -> BN -> act -> ZeroPadding2D ((0, 1), (0, 1)) -> depthwise
 * (stride 2, valid) -> BN -> act -> conv 1x1 -> BN -> Add with the depthwise block's output.
 */
function buildModel(act: () => tfType.layers.Layer, wiring: Wiring): tfType.LayersModel {
  const L = tf.layers;
  const rng = createRng(5);
  const init = () => tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: Math.floor(rng() * 1e6) });
  const input = tf.input({ shape: [HW, HW, 3] });
  if (wiring === 'residual-pad') {
    const bn = (t: tfType.SymbolicTensor) => L.batchNormalization({ momentum: 0.9, gammaInitializer: init(), betaInitializer: init() }).apply(t) as tfType.SymbolicTensor;
    const a1 = act().apply(bn(L.conv2d({ filters: C, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init() }).apply(input) as tfType.SymbolicTensor)) as tfType.SymbolicTensor;
    const padded = L.zeroPadding2d({ padding: [[0, 1], [0, 1]] }).apply(a1) as tfType.SymbolicTensor;
    const d1 = act().apply(bn(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'valid', useBias: false, depthwiseInitializer: init() }).apply(padded) as tfType.SymbolicTensor)) as tfType.SymbolicTensor;
    const p1 = bn(L.conv2d({ filters: C, kernelSize: 1, useBias: false, kernelInitializer: init() }).apply(d1) as tfType.SymbolicTensor);
    const sum = L.add().apply([p1, d1]) as tfType.SymbolicTensor;
    const out = L.dense({ units: 4, activation: 'softmax', kernelInitializer: init() }).apply(L.globalAveragePooling2d({}).apply(sum)) as tfType.SymbolicTensor;
    return tf.model({ inputs: input, outputs: out });
  }
  if (wiring === 'no-batch-norm') {
    const conv = (kernelSize: number) => L.conv2d({ filters: C, kernelSize, padding: 'same', kernelInitializer: init(), biasInitializer: init() });
    const depthwise = L.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthwiseInitializer: init(), biasInitializer: init() });
    const a1 = act().apply(conv(3).apply(input)) as tfType.SymbolicTensor;
    const d1 = act().apply(depthwise.apply(a1)) as tfType.SymbolicTensor;
    const a2 = act().apply(conv(1).apply(d1)) as tfType.SymbolicTensor;
    const out = L.dense({ units: 4, activation: 'softmax', kernelInitializer: init() }).apply(L.globalAveragePooling2d({}).apply(a2)) as tfType.SymbolicTensor;
    return tf.model({ inputs: input, outputs: out });
  }
  const c1 = L.conv2d({ filters: C, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init() }).apply(input) as tfType.SymbolicTensor;
  const bnInit = () => ({ gammaInitializer: init(), betaInitializer: init() });
  const b1 = L.batchNormalization({ momentum: 0.9, ...bnInit() }).apply(c1) as tfType.SymbolicTensor;
  let h = act().apply(b1) as tfType.SymbolicTensor;
  if (wiring === 'shared-output') h = L.add().apply([h, b1]) as tfType.SymbolicTensor;
  const c2 = L.conv2d({ filters: C, kernelSize: 1, useBias: false, kernelInitializer: init() }).apply(h) as tfType.SymbolicTensor;
  const b2 = L.batchNormalization({ momentum: 0.9, ...bnInit() }).apply(c2) as tfType.SymbolicTensor;
  const a2 = act().apply(b2) as tfType.SymbolicTensor;
  const pooled = L.globalAveragePooling2d({}).apply(a2) as tfType.SymbolicTensor;
  const out = L.dense({ units: 4, activation: 'softmax', kernelInitializer: init() }).apply(pooled) as tfType.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

interface Step {
  values: Float32Array[];
  kernels: string[];
  /** The step's peak tensor memory (tf.profile). */
  peakBytes: number;
}

/** One training step's loss, gradients (model.trainableWeights order) and moving statistics on `backend`. */
async function step(backend: string, model: tfType.LayersModel, initial: tfType.Tensor[]): Promise<Step> {
  await tf.setBackend(backend);
    const rng = createRng(17);
  const xv = Float32Array.from({ length: N * HW * HW * 3 }, () => rng() * 4 - 2);
  const labels = Int32Array.from({ length: N }, (_, i) => i % 4);
  let values: Float32Array[] = [];
  const { kernels, peakBytes } = await tf.profile(() => {
    model.setWeights(initial);
    const vars = model.trainableWeights.map((w) => w.read() as tfType.Variable);
    const out = tf.tidy(() => {
      const { value, grads } = shardGradients(tf, model, vars, tf.tensor4d(xv, [N, HW, HW, 3]), labels, 4, { scale: 1 });
      return [value, ...vars.map((v) => grads[v.name])];
    });
    const moving = model.getWeights().filter((_, i) => /moving/.test(model.weights[i].name));
    values = [...out, ...moving].map((t) => t.dataSync() as Float32Array);
    tf.dispose(out);
  });
  await tf.setBackend('wasm');
  return { values, kernels: kernels.map((k) => k.name), peakBytes };
}

async function compare(act: () => tfType.layers.Layer, wiring: Wiring): Promise<Step & { cpu: Step }> {
  await tf.setBackend('wasm');
  const model = buildModel(act, wiring);
  const initial = model.getWeights().map((w) => w.clone());
  const wasm = await step('wasm', model, initial);
  const cpu = await step('cpu', model, initial);
  assert.equal(wasm.values.length, cpu.values.length);
  wasm.values.forEach((v, i) => {
    const e = relMaxError(v, cpu.values[i]);
    assert.ok(e <= 2e-5, `value ${i} (0: loss, then gradients, then moving statistics): err ${e}`);
  });
  tf.dispose(initial);
  model.dispose();
  return { ...wasm, cpu };
}

const ACTIVATIONS: Array<[string, () => tfType.layers.Layer]> = [
  ['ReLU6', () => tf.layers.reLU({ maxValue: 6 })],
  ['ReLU', () => tf.layers.reLU({})],
  ['ReLU(maxValue 0.5)', () => tf.layers.reLU({ maxValue: 0.5 })],
];

for (const [name, act] of ACTIVATIONS) {
  test(`batch norm then ${name}, training on wasm: fused into the batch norm's passes; loss, gradients, moving statistics equal cpu`, async () => {
    const { kernels } = await compare(act, 'chain');
    assert.equal(kernels.includes('CompressBatchNormAct'), simdOn, 'fused forward');
    assert.equal(kernels.includes('Relu'), !simdOn, 'no separate activation');
    // The loss clips the probabilities once; a ReLU6 layer's own clip would add one per layer.
    assert.equal(kernels.filter((k) => k === 'ClipByValue').length, simdOn || name === 'ReLU' ? 1 : 3);
  });
}

test('a batch norm whose output also feeds another layer runs its activation unfused, and trains as on cpu', async () => {
  const { kernels } = await compare(ACTIVATIONS[0][1], 'shared-output');
  // The first ReLU6 runs as its own op (one clip, kept output: reluFromOutput), the second fused.
  assert.equal(kernels.filter((k) => k === 'Relu').length, simdOn ? 0 : 2);
  assert.equal(kernels.filter((k) => k === 'CompressBatchNormAct').length, simdOn ? 1 : 0);
});

for (const [name, act] of ACTIVATIONS) {
  test(`conv (bias) then ${name} without batch norm, training on wasm: one op keeping only its output; loss and gradients equal cpu, less memory`, async () => {
    const { kernels, peakBytes, cpu } = await compare(act, 'no-batch-norm');
    if (!simdOn) return;
    // The layer's relu + clip kept the conv's output and the relu's for the backward pass; now only the output.
    assert.equal(kernels.filter((k) => k === 'CompressClipGrad' || k === 'CompressReluGrad').length, 3, "each activation's gradient in one pass from its output");
    // The convs' biases in their own passes (no Add keeping the depthwise output), and no gradient for the data input.
    const count = (list: string[], k: string) => list.filter((n) => n === k).length;
    assert.deepEqual([count(kernels, 'FusedConv2D'), count(kernels, 'FusedDepthwiseConv2D')], [2, 1]);
    assert.equal(count(kernels, 'Add'), count(cpu.kernels, 'Add') - 1, "the depthwise conv's bias Add is gone");
    assert.equal(kernels.filter((k) => k === 'Conv2DBackpropInput').length, 1, 'the second conv only');
    if (name !== 'ReLU') assert.equal(kernels.filter((k) => k === 'Relu').length, 0, 'a clamped ReLU runs as one clip');
    // A clamped ReLU's relu output (its clip's input) is no longer kept (a plain ReLU's input is the conv's output,
    // which the conv's own gradient keeps anyway).
    if (name !== 'ReLU') assert.ok(peakBytes < cpu.peakBytes * 0.8, `peak tensor memory of the step: wasm ${peakBytes} B, cpu (the layers op by op) ${cpu.peakBytes} B`);
  });
}

test('a conv without bias on the data input computes no input gradient while training (only the second conv does)', async () => {
  const { kernels } = await compare(ACTIVATIONS[0][1], 'chain');
  assert.equal(kernels.filter((k) => k === 'Conv2DBackpropInput').length, 1);
  assert.equal(kernels.filter((k) => k === 'Conv2DBackpropFilter').length, 2);
});

/**
 * conv -> BN(scale / center as given) -> ReLU -> conv -> BN -> ReLU -> pooling -> softmax; BN gammas 1, betas 0.
 * `frozen`: the batch norms are not trainable (a transfer-learning base: they run in inference mode while training).
 */
function affineModel(scale: boolean, center: boolean, frozen = false): tfType.LayersModel {
  const L = tf.layers;
  const rng = createRng(9);
  const init = () => tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: Math.floor(rng() * 1e6) });
  const bn = () => L.batchNormalization({ scale, center, momentum: 0.9, gammaInitializer: 'ones', betaInitializer: 'zeros', trainable: !frozen });
  const input = tf.input({ shape: [HW, HW, 3] });
  const a1 = L.reLU({ maxValue: 6 }).apply(bn().apply(L.conv2d({ filters: C, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init() }).apply(input))) as tfType.SymbolicTensor;
  const a2 = L.reLU({}).apply(bn().apply(L.conv2d({ filters: C, kernelSize: 1, useBias: false, kernelInitializer: init() }).apply(a1))) as tfType.SymbolicTensor;
  const out = L.dense({ units: 4, activation: 'softmax', kernelInitializer: init() }).apply(L.globalAveragePooling2d({}).apply(a2)) as tfType.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

for (const [scale, center, frozen] of [[false, true, false], [true, false, false], [false, false, false], [false, true, true]]) {
  test(`batch norm with scale ${scale} and center ${center}${frozen ? ', frozen' : ''} (keras.applications InceptionV3: scale false) trains on wasm and cpu as one with gamma 1, beta 0`, async () => {
    const model = affineModel(scale, center, frozen);
    const twin = affineModel(true, true, frozen);
    const twinLoss = await step('wasm', twin, twin.getWeights());
    for (const backend of ['wasm', 'cpu']) {
      const { values } = await step(backend, model, model.getWeights());
      // The twin's variables are the model's plus gammas / betas; the loss and the convs' and dense's gradients agree.
      assert.ok(relMaxError(values[0], twinLoss.values[0]) <= 2e-5, `${backend}: loss ${values[0][0]} vs ${twinLoss.values[0][0]}`);
      // Kernels and biases in the order the layers were built (gammas / betas left out).
      const grads = (m: tfType.LayersModel, vals: Float32Array[]) => m.trainableWeights.map((w, i) => [w.name, vals[i + 1]] as const).filter(([n]) => /kernel|bias/.test(n));
      const mine = grads(model, values), theirs = grads(twin, twinLoss.values);
      assert.equal(mine.length, 4, "two conv kernels, the dense kernel and bias");
      assert.equal(theirs.length, 4);
      mine.forEach(([name, g], i) => assert.ok(relMaxError(g, theirs[i][1]) <= 2e-5, `${backend}: gradient of ${name}`));
    }
    model.dispose();
    twin.dispose();
  });
}

test('a residual Add and a ZeroPadding2D keep nothing for the backward pass while training on wasm; loss, gradients, moving statistics equal cpu', async () => {
  const { kernels } = await compare(ACTIVATIONS[0][1], 'residual-pad');
  const count = (list: string[], k: string) => list.filter((n) => n === k).length;
  // The lean forms ran (they keep nothing by construction: a customGrad that saves no tensor).
  assert.equal(count(kernels, 'AddN'), 1, 'the residual sum as one AddN');
  assert.equal(count(kernels, 'PadV2'), 1);
});
