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

type Wiring = 'chain' | 'shared-output';

/**
 * conv (no bias) -> batch norm -> activation -> conv -> batch norm -> activation -> pooling -> softmax.
 * 'shared-output': the first batch norm's output also feeds an Add.
 */
function buildModel(act: () => tfType.layers.Layer, wiring: Wiring): tfType.LayersModel {
  const L = tf.layers;
  const rng = createRng(5);
  const init = () => tf.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed: Math.floor(rng() * 1e6) });
  const input = tf.input({ shape: [HW, HW, 3] });
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
}

/** One training step's loss, gradients (model.trainableWeights order) and moving statistics on `backend`. */
async function step(backend: string, model: tfType.LayersModel, initial: tfType.Tensor[]): Promise<Step> {
  await tf.setBackend(backend);
    const rng = createRng(17);
  const xv = Float32Array.from({ length: N * HW * HW * 3 }, () => rng() * 4 - 2);
  const labels = Int32Array.from({ length: N }, (_, i) => i % 4);
  let values: Float32Array[] = [];
  const { kernels } = await tf.profile(() => {
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
  return { values, kernels: kernels.map((k) => k.name) };
}

async function compare(act: () => tfType.layers.Layer, wiring: Wiring): Promise<Step> {
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
  return wasm;
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
  assert.equal(kernels.filter((k) => k === 'Relu').length, simdOn ? 1 : 2, 'the first activation runs as its own layer, the second fused');
});

test('a conv without bias on the data input computes no input gradient while training (only the second conv does)', async () => {
  const { kernels } = await compare(ACTIVATIONS[0][1], 'chain');
  assert.equal(kernels.filter((k) => k === 'Conv2DBackpropInput').length, 1);
  assert.equal(kernels.filter((k) => k === 'Conv2DBackpropFilter').length, 2);
});
