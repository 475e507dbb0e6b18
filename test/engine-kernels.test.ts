import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { WASM_KERNEL_NAMES } from '../src/engine/kernels/index.js';
import { simdKernels } from '../src/engine/simd/module.js';
import { packGemmB } from '../src/engine/simd/conv.wat.js';
import { createRng } from '../src/util/rng.js';
import { relMaxError } from './fixtures/rel-error.js';

let tf: typeof tfType;
before(async () => {
  ({ tf } = await initEngine('wasm'));
});

const TOL = 1e-4;


function randn(rng: () => number, n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng() * 2 - 1;
  return a;
}

const int = (rng: () => number, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Runs fn on a backend and returns the values of its outputs as plain arrays. */
async function on(backend: string, fn: () => tfType.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const outs = tf.tidy(fn);
  const vals = outs.map((t) => t.dataSync() as Float32Array);
  tf.dispose(outs);
  await tf.setBackend('wasm');
  return vals;
}

/** Spreads a filter [KH,KW,...] over a dilated grid: conv with it at dilation 1 == conv with w at dilation d. */
function dilateFilter(w: Float32Array, shape: number[], dh: number, dw: number): { w: Float32Array; shape: number[] } {
  const [KH, KW, ...rest] = shape;
  const inner = size(rest);
  const EH = (KH - 1) * dh + 1, EW = (KW - 1) * dw + 1;
  const out = new Float32Array(EH * EW * inner);
  for (let kh = 0; kh < KH; kh++)
    for (let kw = 0; kw < KW; kw++) out.set(w.subarray((kh * KW + kw) * inner, (kh * KW + kw + 1) * inner), (kh * dh * EW + kw * dw) * inner);
  return { w: out, shape: [EH, EW, ...rest] };
}
function undilateGrad(g: Float32Array, shape: number[], dh: number, dw: number): Float32Array {
  const [KH, KW, ...rest] = shape;
  const inner = size(rest);
  const EW = (KW - 1) * dw + 1;
  const out = new Float32Array(KH * KW * inner);
  for (let kh = 0; kh < KH; kh++)
    for (let kw = 0; kw < KW; kw++) out.set(g.subarray((kh * dh * EW + kw * dw) * inner, (kh * dh * EW + kw * dw + 1) * inner), (kh * KW + kw) * inner);
  return out;
}

interface ConvCase {
  xShape: [number, number, number, number];
  wShape: [number, number, number, number];
  stride: [number, number];
  dilation: [number, number];
  pad: 'same' | 'valid';
}

function convCases(seed: number, count: number, depthwise: boolean): ConvCase[] {
  const rng = createRng(seed);
  const cases: ConvCase[] = [];
  while (cases.length < count) {
    const K: [number, number] = [int(rng, 1, 4), int(rng, 1, 4)];
    const dil = rng() < 0.35;
    let stride: [number, number] = dil ? [1, 1] : [int(rng, 1, 3), int(rng, 1, 3)];
    // Dilation on one axis or both (col2im handles a height dilation with width dilation 1).
    const dilation: [number, number] = dil ? ([[int(rng, 2, 3), 1], [1, int(rng, 2, 3)], [int(rng, 2, 3), int(rng, 2, 3)]] as [number, number][])[int(rng, 0, 2)] : [1, 1];
    const pad = rng() < 0.5 ? 'same' : 'valid';
    const H = int(rng, 4, 11), W = int(rng, 4, 11);
    const eKH = (K[0] - 1) * dilation[0] + 1, eKW = (K[1] - 1) * dilation[1] + 1;
    if (pad === 'valid' && (eKH > H || eKW > W)) continue;
    // Up to 12 input channels: from 8 on, the filter gradient takes its conv formulation.
    const Ci = rng() < 0.3 ? int(rng, 8, 12) : int(rng, 1, 5);
    if (Ci >= 8 && rng() < 0.6) stride = [1, 1];
    const last = depthwise ? int(rng, 1, 3) : int(rng, 1, 6);
    cases.push({ xShape: [int(rng, 1, 3), H, W, Ci], wShape: [K[0], K[1], Ci, last], stride, dilation, pad });
  }
  return cases;
}

test('all compress wasm kernels are registered for wasm', () => {
  for (const name of WASM_KERNEL_NAMES) assert.ok(tf.getKernel(name, 'wasm'), name);
});

for (const depthwise of [false, true]) {
  const label = depthwise ? 'DepthwiseConv2dNativeBackpropInput/Filter' : 'Conv2DBackpropInput/Filter';
  test(`${label}: wasm gradients equal cpu over random shapes, strides, paddings, dilations`, async () => {
    const cases = convCases(depthwise ? 202 : 101, 40, depthwise);
    if (!depthwise) {
      const asConv = cases.filter((c) => c.xShape[3] >= 8 && c.stride.every((v) => v === 1) && c.dilation.every((v) => v === 1));
      assert.ok(asConv.length >= 3, `${asConv.length} cases exercise the conv formulation of the filter gradient`);
    }
    let worst = 0;
    for (const [i, c] of cases.entries()) {
      const rng = createRng(1000 + i);
      const xv = randn(rng, size(c.xShape)), wv = randn(rng, size(c.wShape));
      const conv = (x: tfType.Tensor4D, w: tfType.Tensor4D, d: [number, number]) =>
        depthwise ? tf.depthwiseConv2d(x, w, c.stride, c.pad, 'NHWC', d) : tf.conv2d(x, w, c.stride, c.pad, 'NHWC', d);
      const yShape = tf.tidy(() => conv(tf.zeros(c.xShape), tf.zeros(c.wShape), c.dilation).shape);
      const dyv = randn(rng, size(yShape));
      const grads = (wv2: Float32Array, ws: number[], d: [number, number]) => () => {
        const x = tf.tensor4d(xv, c.xShape), w = tf.tensor4d(wv2, ws as [number, number, number, number]);
        const dy = tf.tensor4d(dyv, yShape as [number, number, number, number]);
        const g = tf.grads((a: tfType.Tensor, b: tfType.Tensor) => conv(a as tfType.Tensor4D, b as tfType.Tensor4D, d).mul(dy).sum());
        return g([x, w]);
      };
      const [gx, gw] = await on('wasm', grads(wv, c.wShape, c.dilation));
      // Reference on cpu: dilation is emulated with a zero-spread filter at dilation 1, which tfjs's cpu gradients support.
      const dil = c.dilation[0] > 1 || c.dilation[1] > 1;
      const e = dil ? dilateFilter(wv, c.wShape, c.dilation[0], c.dilation[1]) : { w: wv, shape: c.wShape };
      const [rx, rwFull] = await on('cpu', grads(e.w, e.shape, [1, 1]));
      const rw = dil ? undilateGrad(rwFull, c.wShape, c.dilation[0], c.dilation[1]) : rwFull;
      const ex = relMaxError(gx, rx), ew = relMaxError(gw, rw);
      worst = Math.max(worst, ex, ew);
      assert.ok(ex <= TOL && ew <= TOL, `case ${i} ${JSON.stringify(c)}: dx err ${ex}, dw err ${ew}`);
    }
    assert.ok(worst <= TOL);
  });
}

test('MaxPoolGrad and AvgPoolGrad: wasm equals cpu over random shapes, strides, paddings', async () => {
  const rng = createRng(303);
  for (let i = 0; i < 40; i++) {
    const f: [number, number] = [int(rng, 1, 3), int(rng, 1, 3)];
    const s: [number, number] = [int(rng, 1, 3), int(rng, 1, 3)];
    const pad = rng() < 0.5 ? 'same' : 'valid';
    const shape: [number, number, number, number] = [int(rng, 1, 3), int(rng, 3, 10), int(rng, 3, 10), int(rng, 1, 5)];
    const xv = randn(rng, size(shape));
    for (const kind of ['max', 'avg'] as const) {
      const pool = (x: tfType.Tensor4D) => (kind === 'max' ? tf.maxPool(x, f, s, pad) : tf.avgPool(x, f, s, pad));
      const yShape = tf.tidy(() => pool(tf.zeros(shape)).shape);
      const dyv = randn(createRng(i), size(yShape));
      const fn = () => {
        const dy = tf.tensor(dyv, yShape);
        return [tf.grad((x: tfType.Tensor) => pool(x as tfType.Tensor4D).mul(dy).sum())(tf.tensor4d(xv, shape))];
      };
      const [a] = await on('wasm', fn);
      const [b] = await on('cpu', fn);
      const e = relMaxError(a, b);
      assert.ok(e <= TOL, `${kind} case ${i} ${JSON.stringify({ f, s, pad, shape })}: err ${e}`);
    }
  }
});

test('UnsortedSegmentSum (and the gather gradient): wasm equals cpu', async () => {
  const rng = createRng(404);
  for (let i = 0; i < 20; i++) {
    const n = int(rng, 1, 12), inner = [int(rng, 1, 4), int(rng, 1, 3)];
    const segs = int(rng, 1, 6);
    const xv = randn(rng, n * size(inner));
    const ids = Int32Array.from({ length: n }, () => int(rng, 0, segs - 1));
    const table = randn(rng, segs * size(inner));
    const fn = () => {
      const x = tf.tensor(xv, [n, ...inner]);
      const s = tf.unsortedSegmentSum(x, tf.tensor1d(ids, 'int32'), segs);
      const g = tf.grad((t: tfType.Tensor) => tf.gather(t, tf.tensor1d(ids, 'int32')).mul(x).sum())(tf.tensor(table, [segs, ...inner]));
      return [s, g];
    };
    const [a1, a2] = await on('wasm', fn);
    const [b1, b2] = await on('cpu', fn);
    assert.ok(relMaxError(a1, b1) <= TOL && relMaxError(a2, b2) <= TOL, `case ${i}`);
  }
});

test('every layer type trains on wasm: variable gradients equal cpu', async () => {
  const L = tf.layers;
  const input = tf.input({ shape: [12, 12, 2] });
  let x = L.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu6', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tfType.SymbolicTensor;
  x = L.batchNormalization().apply(x) as tfType.SymbolicTensor;
  x = L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'tanh', depthwiseInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(x) as tfType.SymbolicTensor;
  x = L.separableConv2d({ filters: 6, kernelSize: 3, padding: 'valid', activation: 'sigmoid', depthwiseInitializer: tf.initializers.glorotUniform({ seed: 3 }), pointwiseInitializer: tf.initializers.glorotUniform({ seed: 4 }) }).apply(x) as tfType.SymbolicTensor;
  const a = L.maxPooling2d({ poolSize: 2, strides: 1, padding: 'same' }).apply(x) as tfType.SymbolicTensor;
  const b = L.averagePooling2d({ poolSize: 2, strides: 1, padding: 'same' }).apply(x) as tfType.SymbolicTensor;
  x = L.add().apply([a, b]) as tfType.SymbolicTensor;
  x = L.conv2d({ filters: 3, kernelSize: 2, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 5 }) }).apply(x) as tfType.SymbolicTensor;
  x = L.flatten().apply(x) as tfType.SymbolicTensor;
  x = L.dropout({ rate: 0.3, seed: 7 }).apply(x) as tfType.SymbolicTensor;
  x = L.dense({ units: 5, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 6 }) }).apply(x) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: x });
  const rng = createRng(505);
  const xv = randn(rng, 4 * 12 * 12 * 2);
  const labels = Int32Array.from({ length: 4 }, (_, i) => i % 5);
  const lossOf = (training: boolean) => () => {
    const y = model.apply(tf.tensor4d(xv, [4, 12, 12, 2]), { training }) as tfType.Tensor;
    return tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(labels, 'int32'), 5), y.log()) as tfType.Scalar;
  };
  // Training mode (dropout active, batch statistics) must run on wasm without a missing kernel.
  await tf.setBackend('wasm');
  tf.tidy(() => {
    const { grads } = tf.variableGrads(lossOf(true));
    for (const g of Object.values(grads)) assert.ok(Number.isFinite(g.sum().dataSync()[0]));
  });
  // Inference mode is deterministic: compare every variable gradient with cpu (moving stats are not trainable).
  const names = model.trainableWeights.map((w) => w.originalName);
  const fn = () => {
    const { grads } = tf.variableGrads(lossOf(false));
    return model.trainableWeights.map((w) => grads[(w as unknown as { val: tfType.Variable }).val.name]);
  };
  const ga = await on('wasm', fn);
  const gb = await on('cpu', fn);
  assert.equal(ga.length, names.length);
  for (let i = 0; i < ga.length; i++) {
    const e = relMaxError(ga[i], gb[i]);
    assert.ok(e <= TOL, `${names[i]}: err ${e}`);
  }
  model.dispose();
});

test('Sum over leading axes (bias gradients) matches cpu; other reductions still work', async () => {
  const rng = createRng(77);
  const cases: Array<{ shape: number[]; axis: number | number[]; keepDims?: boolean }> = [
    { shape: [16, 24, 24, 20], axis: [0, 1, 2] },
    { shape: [64, 8, 8, 50], axis: [0, 1, 2], keepDims: true },
    { shape: [4099, 7], axis: 0 },
    { shape: [33, 17, 31], axis: [1, 0] },
    { shape: [64, 24, 24, 20], axis: [1, 2] }, // not leading: the wasm kernel
    { shape: [5, 3], axis: 0 }, // small: the wasm kernel
  ];
  for (const c of cases) {
    const v = randn(rng, size(c.shape));
    const fn = () => [tf.sum(tf.tensor(v, c.shape), c.axis, c.keepDims)];
    const [a] = await on('wasm', fn);
    const [b] = await on('cpu', fn);
    assert.ok(relMaxError(a, b) <= 1e-5, `${JSON.stringify(c)}: err ${relMaxError(a, b)}`);
    const shapeOn = async (be: string) => {
      await tf.setBackend(be);
      const s = tf.tidy(() => tf.sum(tf.tensor(v, c.shape), c.axis, c.keepDims).shape);
      await tf.setBackend('wasm');
      return s;
    };
    assert.deepEqual(await shapeOn('wasm'), await shapeOn('cpu'));
  }
});

test('Identity on wasm shares the data: a clone outlives its source, and nothing leaks', () => {
  const before = tf.memory();
  const ids = () => (tf.backend() as unknown as { numDataIds(): number }).numDataIds();
  const idsBefore = ids();
  const x = tf.tensor([1, 2, 3, 4], [2, 2]);
  const c = tf.clone(x);
  x.dispose();
  assert.deepEqual(Array.from(c.dataSync()), [1, 2, 3, 4]);
  const d = tf.clone(c);
  c.dispose();
  assert.deepEqual(d.shape, [2, 2]);
  assert.deepEqual(Array.from(d.dataSync()), [1, 2, 3, 4]);
  d.dispose();
  assert.equal(tf.memory().numTensors, before.numTensors);
  assert.equal(tf.memory().numBytes, before.numBytes);
  assert.equal(ids(), idsBefore, 'the wasm heap block is freed with the last reference');
});

test('SIMD kernels (Relu, bias Add, ReLU and ClipByValue gradients, 2x2 MaxPoolGrad, conv input and filter gradients) equal cpu', async () => {
  const { simdKernels } = await import('../src/engine/simd/module.js');
  // This file also runs with COMPRESS_WASM_SIMD=0 (engine-kernels-nosimd.test.ts): then the JS paths.
  const simdOn = process.env.COMPRESS_WASM_SIMD !== '0';
  assert.equal(simdKernels() !== undefined, simdOn, simdOn ? 'initEngine(wasm) loads the SIMD kernels' : 'COMPRESS_WASM_SIMD=0 keeps them off');
  const rng = createRng(505);
  // Sizes around the vector width (a partial last vector) and above the threshold where they are used.
  for (const shape of [[3, 41, 37, 5], [64, 24, 24, 20], [2, 13, 9, 50], [1, 4099], [8, 31, 17, 7]]) {
    const C = shape[shape.length - 1];
    // Values on a coarse grid, so that max-pool windows hold ties and ReLU sees exact zeros.
    const xv = randn(rng, size(shape)).map((v) => Math.round(v * 4) / 4);
    const bv = randn(rng, C);
    const dyv = randn(rng, size(shape));
    const fn = () => {
      const x = tf.tensor(xv, shape), b = tf.tensor1d(bv), dy = tf.tensor(dyv, shape);
      const [relu, add] = [tf.relu(x), tf.add(x, b)];
      const reluGrad = tf.grad((t: tfType.Tensor) => tf.relu(t).mul(dy).sum())(x);
      // NaN in x, and an infinite dy where x <= 0, propagate as tfjs's dy * step(x) does (found by review)
      const odd = tf.tensor(xv.map((v, i) => (i % 97 === 5 ? NaN : v)), shape);
      const dyInf = tf.tensor(dyv.map((v, i) => (i % 89 === 3 ? Infinity : v)), shape);
      const nanGrad = tf.grad((t: tfType.Tensor) => tf.relu(t).mul(dyInf).sum())(odd);
      // ClipByValue (ReLU6 = relu, then clip to [0, 6]): bounds included, NaN x gives 0, dy passes as is
      const clipGrad = tf.grad((t: tfType.Tensor) => tf.clipByValue(t, -0.25, 0.5).mul(dy).sum())(x);
      const clipNanGrad = tf.grad((t: tfType.Tensor) => tf.clipByValue(t, 0, 6).mul(dyInf).sum())(odd.mul(8));
      return [relu, add, tf.add(b, x), reluGrad, nanGrad, clipGrad, clipNanGrad];
    };
    const a = await on('wasm', fn);
    const c = await on('cpu', fn);
    for (let i = 0; i < a.length; i++) {
      const same = a[i].every((v, j) => Object.is(v, c[i][j]) || v === c[i][j]);
      assert.ok(same, `output ${i} of ${JSON.stringify(shape)}: err ${relMaxError(a[i], c[i])}`);
    }
  }
  for (const shape of [[2, 8, 8, 4], [3, 9, 11, 5], [64, 24, 24, 20], [5, 8, 8, 50], [1, 7, 6, 13]] as [number, number, number, number][]) {
    const xv = randn(rng, size(shape)).map((v) => Math.round(v * 2) / 2);
    const yShape = [shape[0], shape[1] >> 1, shape[2] >> 1, shape[3]];
    const dyv = randn(rng, size(yShape));
    const fn = () => {
      const dy = tf.tensor(dyv, yShape);
      return [tf.grad((x: tfType.Tensor) => tf.maxPool(x as tfType.Tensor4D, 2, 2, 'valid').mul(dy).sum())(tf.tensor4d(xv, shape))];
    };
    const [a] = await on('wasm', fn);
    const [b] = await on('cpu', fn);
    assert.ok(relMaxError(a, b) === 0, `maxPoolGrad ${JSON.stringify(shape)}: err ${relMaxError(a, b)}`);
  }
  // Input gradients: stride-1 'valid' convs with KW*Ci % 4 == 0 take the fused conv_dgrad (tiles of
  // 4 or 1 positions x 8 or 4 taps); strided, padded or dilated ones col2im (runs of odd length, row
  // edges, a height dilation: found by review, col2im once ignored it).
  for (const [xShape, wShape, strides, pad, dil] of [
    [[4, 12, 12, 20], [5, 5, 20, 50], 1, 'valid', [1, 1]],
    [[2, 9, 11, 4], [3, 3, 4, 6], 1, 'valid', [1, 1]],
    [[3, 7, 8, 8], [2, 2, 8, 5], 1, 'valid', [1, 1]],
    [[2, 6, 6, 3], [3, 3, 3, 4], 1, 'valid', [1, 1]],
    [[3, 11, 9, 3], [3, 4, 3, 6], 2, 'same', [1, 1]],
    [[2, 10, 13, 7], [3, 3, 7, 5], [2, 3], 'valid', [1, 1]],
    [[1, 8, 8, 3], [3, 3, 3, 4], 1, 'valid', [2, 1]],
    [[3, 6, 10, 3], [2, 1, 3, 9], 1, 'valid', [2, 1]],
  ] as Array<[[number, number, number, number], [number, number, number, number], number | [number, number], 'same' | 'valid', [number, number]]>) {
    const xv = randn(rng, size(xShape)), wv = randn(rng, size(wShape));
    const grad = (w: Float32Array, shape: number[], d: [number, number]) => () => {
      const f = tf.tensor4d(w, shape as [number, number, number, number]);
      return [tf.grad((x: tfType.Tensor) => tf.conv2d(x as tfType.Tensor4D, f, strides, pad, 'NHWC', d).square().sum())(tf.tensor4d(xv, xShape))];
    };
    const [a] = await on('wasm', grad(wv, wShape, dil));
    // cpu has no dilated gradients: the same conv with the filter spread over the dilated grid
    const spread = dilateFilter(wv, wShape, dil[0], dil[1]);
    const [b] = await on('cpu', grad(spread.w, spread.shape, [1, 1]));
    assert.ok(relMaxError(a, b) <= TOL, `conv dx ${JSON.stringify({ xShape, wShape, strides, pad, dil })}: err ${relMaxError(a, b)}`);
  }
  // Filter gradients with few input channels and Co a multiple of 4 go through the SIMD conv_wgrad
  // (patches gathered in blocks, 4x8 register tiles, partial tiles at both edges, padding, dilation).
  for (const [xShape, wShape, strides, pad, dil] of [
    [[64, 28, 28, 1], [5, 5, 1, 20], 1, 'valid', 1],
    [[3, 13, 11, 3], [3, 3, 3, 8], 2, 'same', 1],
    [[2, 9, 10, 5], [2, 3, 5, 12], [1, 2], 'same', 1],
    [[2, 12, 12, 2], [3, 2, 2, 4], 1, 'same', 2],
    [[1, 7, 7, 7], [7, 7, 7, 16], 1, 'same', 1],
  ] as Array<[[number, number, number, number], [number, number, number, number], number | [number, number], 'same' | 'valid', number]>) {
    const xv = randn(rng, size(xShape)), wv = randn(rng, size(wShape));
    const grad = (w: Float32Array, shape: number[], d: number) => () => {
      const x = tf.tensor4d(xv, xShape);
      return [tf.grad((f: tfType.Tensor) => tf.conv2d(x, f as tfType.Tensor4D, strides, pad, 'NHWC', d).square().sum())(tf.tensor(w, shape))];
    };
    const [a] = await on('wasm', grad(wv, wShape, dil));
    // cpu has no dilated gradients: the same conv with the filter spread over the dilated grid
    const spread = dilateFilter(wv, wShape, dil, dil);
    const b = undilateGrad((await on('cpu', grad(spread.w, spread.shape, 1)))[0], wShape, dil, dil);
    assert.ok(relMaxError(a, b) <= TOL, `conv dW ${JSON.stringify({ xShape, wShape, strides, pad, dil })}: err ${relMaxError(a, b)}`);
  }
});

test('SIMD matrix products (first use of a right operand, A^T . B) and few-channel forward convs equal cpu', async () => {
  const rng = createRng(606);
  // [M, K, N]: 4x8 and 4x4 tiles, a last row tile of 1, N % 4 != 0 (XNNPACK), transposed operands.
  for (const [M, K, N] of [[64, 800, 500], [13, 37, 12], [5, 9, 20], [64, 33, 10], [7, 300, 100]]) {
    const av = randn(rng, M * K), bv = randn(rng, K * N), atv = randn(rng, K * M);
    const fn = () => {
      const a = tf.tensor2d(av, [M, K]), b = tf.tensor2d(bv, [K, N]), at = tf.tensor2d(atv, [K, M]);
      const first = tf.matMul(a, b); // b is new: the SIMD gemm
      const again = tf.matMul(a, b); // b seen before: XNNPACK, packed once and reused
      return [first, again, tf.matMul(at, b, true, false), tf.matMul(b, a, true, true)];
    };
    const w = await on('wasm', fn);
    const c = await on('cpu', fn);
    for (let i = 0; i < w.length; i++) assert.ok(relMaxError(w[i], c[i]) <= TOL, `matMul ${i} [${M},${K}]x[${K},${N}]: err ${relMaxError(w[i], c[i])}`);
  }
  for (const [xShape, wShape, strides, pad, dil] of [
    [[64, 28, 28, 1], [5, 5, 1, 20], 1, 'valid', 1],
    [[3, 17, 15, 3], [3, 3, 3, 8], 2, 'same', 1],
    [[2, 11, 12, 4], [3, 2, 4, 12], 1, 'same', 2],
    [[2, 9, 9, 2], [4, 4, 2, 5], 1, 'valid', 1], // Co % 4 != 0: XNNPACK
  ] as Array<[[number, number, number, number], [number, number, number, number], number, 'same' | 'valid', number]>) {
    const xv = randn(rng, size(xShape)), wv = randn(rng, size(wShape));
    const fwd = (w: Float32Array, shape: number[], d: number) => () => [tf.conv2d(tf.tensor4d(xv, xShape), tf.tensor4d(w, shape as [number, number, number, number]), strides, pad, 'NHWC', [d, d])];
    const [a] = await on('wasm', fwd(wv, wShape, dil));
    const spread = dilateFilter(wv, wShape, dil, dil);
    const [b] = await on('cpu', fwd(spread.w, spread.shape, 1));
    assert.ok(relMaxError(a, b) <= TOL, `conv fwd ${JSON.stringify({ xShape, wShape, strides, pad, dil })}: err ${relMaxError(a, b)}`);
  }
});

test('Tile, Mean over leading axes, channel Sub / Multiply, FusedBatchNorm (batch norm forward and gradients) equal cpu', async () => {
  const rng = createRng(707);
  const tiles: Array<{ shape: number[]; reps: number[]; dtype?: 'int32' }> = [
    { shape: [1, 1, 1, 64], reps: [64, 7, 7, 1] }, // one row repeated (batch norm)
    { shape: [1, 1, 1, 5], reps: [9, 11, 13, 2] },
    { shape: [3, 1, 4, 6], reps: [2, 40, 3, 5] }, // rows from several sources, short rows
    { shape: [2, 3, 40], reps: [30, 2, 2] },
    { shape: [7, 33], reps: [20, 30], dtype: 'int32' },
    { shape: [2, 2], reps: [3, 3] }, // small: wasm's own
  ];
  for (const c of tiles) {
    const v = randn(rng, size(c.shape)).map((x) => (c.dtype ? Math.round(x * 100) : x));
    const fn = () => [tf.tile(tf.tensor(v, c.shape, c.dtype ?? 'float32'), c.reps)];
    const [a] = await on('wasm', fn);
    const [b] = await on('cpu', fn);
    assert.deepEqual(Array.from(a), Array.from(b), `tile ${JSON.stringify(c)}`);
  }
  for (const shape of [[64, 7, 7, 64], [5, 13, 11, 7], [3000, 6]]) {
    const C = shape[shape.length - 1];
    const xv = randn(rng, size(shape)), cv = randn(rng, C);
    const axes = shape.slice(0, -1).map((_, i) => i);
    const fn = () => {
      const x = tf.tensor(xv, shape), c = tf.tensor1d(cv), c4 = tf.tensor(cv, [...shape.slice(0, -1).map(() => 1), C]);
      const v = tf.abs(c).add(0.5), o = tf.tensor1d(cv.map((q) => q * 3));
      return [
        tf.mean(x, axes), tf.mean(x, axes, true), tf.sub(x, c), tf.sub(x, c4), tf.mul(x, c), tf.mul(c4, x),
        tf.batchNorm(x, c, v, o, c, 1e-3), tf.batchNorm(x, c, v), tf.batchNorm(x, c4, tf.reshape(v, c4.shape), undefined, c4, 0.1),
      ];
    };
    const a = await on('wasm', fn);
    const b = await on('cpu', fn);
    for (let i = 0; i < a.length; i++) assert.ok(relMaxError(a[i], b[i]) <= 1e-5, `output ${i} of ${JSON.stringify(shape)}: err ${relMaxError(a[i], b[i])}`);
  }
});

test("'same' padding that only one axis needs (tfjs-wasm computes zeros there) is right on wasm", async () => {
  // A 1x3 filter with stride 2 on 10 rows: no padding on H, 1+1 on W. tfjs-backend-wasm 4.22 passes
  // 'same' to XNNPACK as its SAME flag and gets all zeros; compress passes the padding explicitly.
  const xv = Float32Array.from({ length: 2 * 10 * 11 * 6 }, (_, i) => Math.sin(i));
  for (const [KH, KW, sh, sw] of [[1, 3, 2, 2], [3, 1, 1, 3], [1, 5, 2, 1]]) {
    const wv = Float32Array.from({ length: KH * KW * 6 * 6 }, (_, i) => Math.cos(i));
    const dv = Float32Array.from({ length: KH * KW * 6 }, (_, i) => Math.cos(2 * i));
    const bias = Float32Array.from({ length: 6 }, (_, i) => 0.1 * i);
    const fn = () => {
      const x = tf.tensor4d(xv, [2, 10, 11, 6]), w = tf.tensor4d(wv, [KH, KW, 6, 6]), d = tf.tensor4d(dv, [KH, KW, 6, 1]), b = tf.tensor1d(bias);
      const s: [number, number] = [sh, sw];
      return [
        tf.conv2d(x, w, s, 'same'),
        tf.depthwiseConv2d(x, d, s, 'same'),
        tf.fused.conv2d({ x, filter: w, strides: s, pad: 'same', bias: b, activation: 'relu' }),
        tf.fused.depthwiseConv2d({ x, filter: d, strides: s, pad: 'same', bias: b, activation: 'relu' }),
      ];
    };
    const a = await on('wasm', fn);
    const c = await on('cpu', fn);
    for (let i = 0; i < a.length; i++) assert.ok(relMaxError(a[i], c[i]) <= TOL, `${['conv', 'depthwise', 'fused conv', 'fused depthwise'][i]} ${KH}x${KW} stride ${sh}x${sw}: err ${relMaxError(a[i], c[i])}`);
  }
});

test('random differential check vs cpu: conv forward and gradients, pooling, products, reductions, tile, depthwise (seeded)', async () => {
  // Shapes around the SIMD kernels' edges: 1-9 input channels, channel counts that are and are not
  // multiples of 4, strides, 'same' and 'valid', odd sizes. (This is how the padding bug was found.)
  const rng = createRng(808);
  for (let it = 0; it < 25; it++) {
    const N = int(rng, 1, 6), H = int(rng, 3, 16), W = int(rng, 3, 16), Ci = int(rng, 1, 9), Co = [4, 8, 12, 5, 16, 20, 3][int(rng, 0, 6)];
    const KH = int(rng, 1, Math.min(5, H)), KW = int(rng, 1, Math.min(5, W));
    const s = rng() < 0.6 ? 1 : int(rng, 1, 3), pad = rng() < 0.5 ? 'valid' : 'same';
    const M = int(rng, 1, 70), K = int(rng, 1, 300), Nn = [4, 8, 12, 100, 36, 7][int(rng, 0, 5)];
    const v = {
      x: randn(rng, N * H * W * Ci), w: randn(rng, KH * KW * Ci * Co), b: randn(rng, Co), d: randn(rng, KH * KW * Ci),
      A: randn(rng, M * K), B: randn(rng, K * Nn), C: randn(rng, M * Nn), t: randn(rng, Co),
    };
    const fn = () => {
      const x = tf.tensor4d(v.x, [N, H, W, Ci]), w = tf.tensor4d(v.w, [KH, KW, Ci, Co]), b = tf.tensor1d(v.b);
      const y = tf.conv2d(x, w, s, pad);
      const out = [y, ...tf.grads((a, f) => tf.relu(tf.add(tf.conv2d(a as tfType.Tensor4D, f as tfType.Tensor4D, s, pad), b)).square().sum())([x, w])];
      if (y.shape[1] >= 2 && y.shape[2] >= 2) out.push(tf.grad((a) => tf.maxPool(a as tfType.Tensor4D, 2, 2, 'valid').square().sum())(y));
      const A = tf.tensor2d(v.A, [M, K]), B = tf.tensor2d(v.B, [K, Nn]);
      out.push(tf.matMul(A, B), tf.matMul(A, tf.tensor2d(v.C, [M, Nn]), true, false));
      out.push(tf.mean(y, [0, 1, 2]), tf.sum(y, [0, 1, 2]), tf.tile(tf.tensor4d(v.t, [1, 1, 1, Co]), [N, 3, 2, 1]));
      const d = tf.tensor4d(v.d, [KH, KW, Ci, 1]);
      out.push(...tf.grads((a, f) => tf.depthwiseConv2d(a as tfType.Tensor4D, f as tfType.Tensor4D, s, pad).square().sum())([x, d]));
      return out;
    };
    const a = await on('wasm', fn);
    const c = await on('cpu', fn);
    for (let i = 0; i < a.length; i++) {
      const e = relMaxError(a[i], c[i]);
      assert.ok(e <= 2e-4, `case ${it} output ${i} ${JSON.stringify({ x: [N, H, W, Ci], w: [KH, KW, Ci, Co], s, pad, mm: [M, K, Nn] })}: err ${e}`);
    }
  }
});

test('the prebuilt SIMD binaries (npm run build, plain and shared memory) are exactly what wabt assembles from the current source', async () => {
  const { readFileSync } = await import('node:fs');
  const { assembleKernels, kernelsDigest, prebuilt } = await import('../src/engine/simd/module.js');
  for (const kind of ['plain', 'shared'] as const) {
    const files = prebuilt(kind);
    assert.equal(readFileSync(files.digest, 'utf8').trim(), kernelsDigest(kind), `${kind}: digest of the text the binary came from`);
    assert.deepEqual(new Uint8Array(readFileSync(files.wasm)), await assembleKernels(kind), kind);
  }
});

test('BatchNormalization training: output, two-pass gradient (dx, dgamma, dbeta) and moving statistics (SIMD moments) equal cpu', async () => {
  const simdOn = process.env.COMPRESS_WASM_SIMD !== '0';
  const rng = createRng(909);
  for (const shape of [[4, 6, 5, 8], [16, 12, 12, 24], [3, 50, 4], [2, 70, 36]]) {
    const C = shape[shape.length - 1];
    const layer = tf.layers.batchNormalization({ momentum: 0.9, epsilon: 1e-3 });
    layer.apply(tf.input({ shape: shape.slice(1) }));
    // x with a per-channel offset and scale, so that mean and variance matter
    const xv = randn(rng, size(shape)).map((v, i) => v * (1 + (i % C)) + (i % C) - 2);
    const dyv = randn(rng, size(shape));
    const initial = [randn(rng, C), randn(rng, C), randn(rng, C), randn(rng, C).map((v) => 1 + Math.abs(v))];
    const fn = () => {
      layer.setWeights(initial.map((a) => tf.tensor1d(a)));
      const x = tf.variable(tf.tensor(xv, shape));
      const dy = tf.tensor(dyv, shape);
      const [gamma, beta] = layer.trainableWeights.map((w) => (w as unknown as { val: tfType.Variable }).val);
      let y: tfType.Tensor | undefined;
      const { grads } = tf.variableGrads(() => {
        y = tf.keep(layer.apply(x, { training: true }) as tfType.Tensor);
        return tf.sum(tf.mul(y, dy)) as tfType.Scalar;
      }, [x, gamma, beta]);
      const out = [y!, grads[x.name], grads[gamma.name], grads[beta.name], ...layer.getWeights().slice(2).map((w) => w.clone())];
      x.dispose();
      return out;
    };
    // From 4096 elements the two-pass gradient runs; smaller ones take tfjs-layers' own.
    await tf.setBackend('wasm');
    const { kernelNames } = await tf.profile(() => tf.dispose(fn()));
    assert.equal(kernelNames.includes('CompressBatchNormGrad'), simdOn && size(shape) >= 4096, `${JSON.stringify(shape)}: which gradient`);
    assert.equal(kernelNames.includes('CompressMoments'), simdOn && size(shape) >= 4096, `${JSON.stringify(shape)}: which moments`);
    const a = await on('wasm', fn);
    const c = await on('cpu', fn);
    const names = ['y', 'dx', 'dgamma', 'dbeta', 'moving mean', 'moving variance'];
    for (let i = 0; i < a.length; i++) {
      const e = relMaxError(a[i], c[i]);
      assert.ok(e <= 2e-5, `${JSON.stringify(shape)} ${names[i]}: err ${e}`);
    }
  }
});

// 3x3 depthwise convs with channel multiplier 1 and channels % 4 == 0 (MobileNet's) run their forward
// on the SIMD dw3x3, their filter gradient on dw3x3_wgrad and, at stride 1, their input gradient on
// dw3x3 (the flipped filter, padded by 2 - pad).
for (const [pad, stride] of [['same', 1], ['valid', 1], ['same', 2], ['valid', 2]] as const) {
  test(`depthwise 3x3 stride ${stride} '${pad}' on the SIMD path: forward, input and filter gradients equal cpu`, async () => {
    const rng = createRng(31 + stride * 2 + (pad === 'same' ? 0 : 1));
    for (const xShape of [[2, 7, 9, 4], [3, 5, 4, 16], [1, 3, 3, 8]] as Array<[number, number, number, number]>) {
      const wShape: [number, number, number, number] = [3, 3, xShape[3], 1];
      const xv = randn(rng, size(xShape)), wv = randn(rng, size(wShape));
      const yShape = tf.tidy(() => tf.depthwiseConv2d(tf.zeros(xShape) as tfType.Tensor4D, tf.zeros(wShape) as tfType.Tensor4D, stride, pad).shape);
      const dyv = randn(rng, size(yShape));
      const fn = () => {
        const x = tf.tensor4d(xv, xShape), w = tf.tensor4d(wv, wShape);
        const dy = tf.tensor(dyv, yShape);
        const g = tf.grads((a: tfType.Tensor, b: tfType.Tensor) => tf.depthwiseConv2d(a as tfType.Tensor4D, b as tfType.Tensor4D, stride, pad).mul(dy).sum());
        return [tf.depthwiseConv2d(x, w, stride, pad), ...g([x, w])];
      };
      const a = await on('wasm', fn);
      const c = await on('cpu', fn);
      ['y', 'dx', 'dw'].forEach((name, i) => {
        const e = relMaxError(a[i], c[i]);
        assert.ok(e <= TOL, `${JSON.stringify(xShape)} ${name}: err ${e}`);
      });
    }
  });
}

// The convs compress's SIMD kernels run in training (1x1 stride 1 forward and input gradient as one GEMM;
// an image's first 3x3 conv over 3 channels forward by conv3x3c3): values and gradients equal cpu.
test('SIMD training convs (1x1 stride 1, first 3x3 over 3 channels): forward, input and filter gradients equal cpu', async () => {
  const rng = createRng(41);
  const cases: Array<[[number, number, number, number], number, number, number, 'same' | 'valid']> = [
    [[2, 5, 7, 8], 1, 12, 1, 'same'], [[3, 4, 4, 16], 1, 4, 1, 'valid'], [[1, 3, 3, 4], 1, 8, 1, 'same'], [[2, 3, 5, 6], 1, 8, 1, 'valid'],
    [[2, 9, 8, 3], 3, 16, 2, 'same'], [[1, 7, 7, 3], 3, 8, 1, 'valid'],
  ];
  for (const [xShape, K, Co, stride, pad] of cases) {
    const wShape: [number, number, number, number] = [K, K, xShape[3], Co];
    const xv = randn(rng, size(xShape)), wv = randn(rng, size(wShape));
    const yShape = tf.tidy(() => tf.conv2d(tf.zeros(xShape) as tfType.Tensor4D, tf.zeros(wShape) as tfType.Tensor4D, stride, pad).shape);
    const dyv = randn(rng, size(yShape));
    const fn = () => {
      const x = tf.tensor4d(xv, xShape), w = tf.tensor4d(wv, wShape);
      const dy = tf.tensor(dyv, yShape);
      const g = tf.grads((a: tfType.Tensor, b: tfType.Tensor) => tf.conv2d(a as tfType.Tensor4D, b as tfType.Tensor4D, stride, pad).mul(dy).sum());
      return [tf.conv2d(x, w, stride, pad), ...g([x, w])];
    };
    const a = await on('wasm', fn);
    const c = await on('cpu', fn);
    ['y', 'dx', 'dw'].forEach((name, i) => {
      const e = relMaxError(a[i], c[i]);
      assert.ok(e <= TOL, `${JSON.stringify(xShape)} ${K}x${K} x ${Co} stride ${stride} ${pad} ${name}: err ${e}`);
    });
  }
});

test('batch moments (CompressMoments, one pass from a shift) of activations far from zero equal a float64 reference', { skip: process.env.COMPRESS_WASM_SIMD === '0' && 'needs the SIMD kernels' }, async () => {
  const rng = createRng(77);
  const [M, C] = [3000, 8];
  // Channel c: offset 10^c (up to 1e7) with a spread of 1..8 around it; rows in random order.
  const xv = new Float32Array(M * C).map((_, i) => 10 ** (i % C) + (rng() * 2 - 1) * (1 + (i % C)));
  const [mean, variance] = tf.tidy(() => (tf.engine().runKernel('CompressMoments', { x: tf.tensor2d(xv, [M, C]) }) as tfType.Tensor[]).map((t) => t.dataSync()));
  for (let c = 0; c < C; c++) {
    let s = 0, q = 0;
    for (let r = 0; r < M; r++) s += xv[r * C + c];
    const m = s / M;
    for (let r = 0; r < M; r++) q += (xv[r * C + c] - m) ** 2;
    const v = q / M;
    assert.ok(Math.abs(mean[c] - m) <= 1e-6 * Math.abs(m) + 1e-6, `channel ${c} mean ${mean[c]} vs ${m}`);
    assert.ok(Math.abs(variance[c] - v) <= 1e-5 * v, `channel ${c} variance ${variance[c]} vs ${v}`);
  }
});

test('pack_strips and pack_strips_t (wasm) lay out a matrix and a transpose as packGemmB does', { skip: process.env.COMPRESS_WASM_SIMD === '0' && 'needs the SIMD kernels' }, async () => {
  const backend = tf.backend() as unknown as { getMemoryOffset(id: unknown): number };
  const simd = simdKernels(backend)!;
  const rng = createRng(51);
  for (const [K, N] of [[5, 12], [3, 4], [7, 20], [1, 8]]) {
    const bv = randn(rng, K * N);
    const bT = new Float32Array(K * N).map((_, i) => bv[(i % K) * N + Math.floor(i / K)]); // [N, K]
    const want = packGemmB(bv, K, N);
    const [got, gotT] = tf.tidy(() => {
      const b = tf.tensor1d(bv), t = tf.tensor1d(bT), o = tf.zeros([K * N]), oT = tf.zeros([K * N]);
      const at = (x: tfType.Tensor) => backend.getMemoryOffset(x.dataId);
      simd.pack_strips(at(b), at(o), K, N);
      simd.pack_strips_t(at(t), at(oT), K, N);
      return [o.dataSync(), oT.dataSync()];
    });
    assert.deepEqual(Array.from(got), Array.from(want), `pack_strips ${K}x${N}`);
    assert.deepEqual(Array.from(gotT), Array.from(want), `pack_strips_t ${K}x${N}`);
  }
});

test('same-shape Add, Sub and Multiply (a residual connection) run as one SIMD pass and equal cpu bit for bit', async () => {
  const { simdKernels } = await import('../src/engine/simd/module.js');
  const k = simdKernels();
  if (process.env.COMPRESS_WASM_SIMD === '0') {
    assert.equal(k, undefined);
    return;
  }
  const calls = { bias_add: 0, channel_sub: 0, channel_mul: 0 };
  const inner = { bias_add: k!.bias_add, channel_sub: k!.channel_sub, channel_mul: k!.channel_mul };
  for (const name of Object.keys(calls) as Array<keyof typeof calls>)
    k![name] = (...a: Parameters<typeof inner.bias_add>) => {
      calls[name]++;
      inner[name](...a);
    };
  try {
    const rng = createRng(77);
    // a MobileNetV2 residual's shape, and sizes that are not multiples of 4 (the last vector overlaps)
    for (const shape of [[2, 56, 56, 24], [3, 37, 41, 3], [1, 4098]]) {
      const av = randn(rng, size(shape)), bv = randn(rng, size(shape));
      const fn = () => {
        const a = tf.tensor(av, shape), b = tf.tensor(bv, shape);
        return [tf.add(a, b), tf.sub(a, b), tf.mul(a, b)];
      };
      const before = calls.bias_add + calls.channel_sub + calls.channel_mul;
      const w = await on('wasm', fn);
      assert.equal(calls.bias_add + calls.channel_sub + calls.channel_mul - before, 3, `${JSON.stringify(shape)}: the SIMD kernels ran`);
      const c = await on('cpu', fn);
      for (let i = 0; i < 3; i++) assert.ok(w[i].every((v, j) => Object.is(v, c[i][j])), `output ${i} of ${JSON.stringify(shape)}`);
    }
  } finally {
    Object.assign(k!, inner);
  }
});
