import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { createRng } from '../src/util/rng.js';
import {
  magnitudeMask,
  thresholdMask,
  sensitivityMask,
  sensitivityThreshold,
  globalMagnitudeMasks,
  structuredMask,
  nmMask,
  prunedCount,
  MaskSet,
  MaskError,
  readKernel,
  taylorImportance,
  kernelVariable,
} from '../src/prune/index.js';

const { tf } = await initEngine('cpu');

function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = createRng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * (r() * 2 - 1);
  return out;
}
const zeros = (m: Uint8Array) => m.reduce((a, v) => a + (v ? 0 : 1), 0);

test('magnitude: exactly round(s*n) zeros, smallest |w| first, deterministic ties', () => {
  const w = randn(1000, 1);
  for (const s of [0, 0.29, 0.37, 0.5, 0.9, 1]) {
    const m = magnitudeMask(w, s);
    assert.equal(zeros(m), Math.round(s * 1000), `sparsity ${s}`);
    let maxPruned = 0;
    let minKept = Infinity;
    m.forEach((keep, i) => (keep ? (minKept = Math.min(minKept, Math.abs(w[i]))) : (maxPruned = Math.max(maxPruned, Math.abs(w[i])))));
    assert.ok(maxPruned <= minKept);
  }
  assert.equal(prunedCount(100, 0.29), 29);
  assert.equal(prunedCount(10, 0.25), 3); // round half up
  // ties: lower index pruned first
  const t = new Float32Array([1, -1, 1, 1, 0.5, 1]);
  assert.deepEqual([...magnitudeMask(t, 0.5)], [0, 0, 1, 1, 0, 1]);
  assert.throws(() => magnitudeMask(w, 1.2), MaskError);
});

test('threshold and sensitivity (Distiller) masks', () => {
  const w = randn(500, 2);
  const m = thresholdMask(w, 0.3);
  m.forEach((k, i) => assert.equal(k, Math.abs(w[i]) < 0.3 ? 0 : 1));
  // sensitivity threshold = s * sample std
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / (w.length - 1));
  assert.ok(Math.abs(sensitivityThreshold(w, 0.5) - 0.5 * std) < 1e-9);
  assert.deepEqual(sensitivityMask(w, 0.5), thresholdMask(w, 0.5 * std));
});

test('global vs per-layer magnitude scope', () => {
  const a = randn(400, 3, 10); // large weights
  const b = randn(400, 4, 1); // small weights
  const g = globalMagnitudeMasks(new Map([['a', a], ['b', b]]), 0.5);
  const ga = zeros(g.get('a')!);
  const gb = zeros(g.get('b')!);
  assert.equal(ga + gb, 400); // exact total
  assert.ok(gb > 300 && ga < 100, `global prunes the small layer first (a ${ga}, b ${gb})`);
  // per-layer: each exactly half
  assert.equal(zeros(magnitudeMask(a, 0.5)), 200);
  assert.equal(zeros(magnitudeMask(b, 0.5)), 200);
  // normalised global scope treats the layers alike (same distribution up to scale)
  const n = globalMagnitudeMasks([{ name: 'a', values: a }, { name: 'b', values: b }], 0.5, { normalize: 'max' });
  const na = zeros(n.get('a')!);
  assert.equal(na + zeros(n.get('b')!), 400);
  assert.ok(na > 150 && na < 250, `normalised: ${na}`);
});

test('structured: weakest whole units by L1/L2', () => {
  // Dense [in=3, out=4]: unit norms (L1) 3, 0.3, 6, 1.5
  const w = new Float32Array([1, 0.1, 2, 0.5, 1, 0.1, 2, 0.5, -1, -0.1, -2, -0.5]);
  const r = structuredMask(w, [3, 4], { sparsity: 0.5 });
  assert.deepEqual(r.units, [1, 3]);
  assert.deepEqual([...r.unitMask], [1, 0, 1, 0]);
  assert.deepEqual([...r.mask], [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
  assert.deepEqual(structuredMask(w, [3, 4], { count: 1, norm: 'l2' }).units, [1]);
  assert.deepEqual(structuredMask(w, [3, 4], { sparsity: 0.99 }).units.length, 3); // one unit always kept
  // conv [h,w,in,out]: units along the last axis
  const c = randn(3 * 3 * 2 * 8, 5);
  for (let i = 0; i < c.length; i++) if (i % 8 === 6 || i % 8 === 2) c[i] *= 0.01;
  assert.deepEqual(structuredMask(c, [3, 3, 2, 8], { count: 2 }).units, [2, 6]);
});

test('n:m: every group of m consecutive inputs of each output keeps exactly n (the largest)', () => {
  const check = (shape: number[], n: number, m: number, seed: number) => {
    const w = randn(shape.reduce((a, b) => a * b, 1), seed);
    const mask = nmMask(w, shape, n, m);
    const axis = shape.length - 2;
    const len = shape[axis];
    const stride = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
    const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
    let groups = 0;
    for (let o = 0; o < outer; o++)
      for (let j = 0; j < stride; j++)
        for (let g = 0; g < len; g += m) {
          const ids: number[] = [];
          for (let i = g; i < Math.min(len, g + m); i++) ids.push(o * len * stride + i * stride + j);
          const kept = ids.filter((i) => mask[i]);
          assert.equal(kept.length, Math.min(n, ids.length));
          const minKept = Math.min(...kept.map((i) => Math.abs(w[i])));
          for (const i of ids) if (!mask[i]) assert.ok(Math.abs(w[i]) <= minKept);
          groups++;
        }
    return { mask, groups };
  };
  const d = check([16, 8], 2, 4, 6); // Dense
  assert.equal(d.groups, 8 * 4);
  assert.equal(zeros(d.mask), 16 * 8 / 2);
  check([3, 3, 8, 4], 2, 4, 7); // Conv2D along input channels
  check([6, 5], 1, 4, 8); // partial trailing group of 2 keeps 1
  check([8, 3], 2, 8, 9);
  // ties keep the lower input index
  assert.deepEqual([...nmMask(new Float32Array([1, 1, 1, 1]), [4, 1], 2, 4)], [1, 1, 0, 0]);
  assert.throws(() => nmMask(new Float32Array(9), [3, 3, 1, 1], 2, 4, { className: 'DepthwiseConv2D' }), /not defined for DepthwiseConv2D/);
  assert.throws(() => nmMask(new Float32Array(8), [4, 2], 5, 4), /n:m/);
});

test('MaskSet: zeros stay zero through weight updates, gradients are masked', () => {
  const model = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 11 });
  const ms = new MaskSet();
  for (const name of ['dense_1', 'dense_2']) ms.set(name, magnitudeMask(readKernel(model, name).values, 0.6));
  const d2 = readKernel(model, 'dense_2');
  ms.set('dense_2', magnitudeMask(d2.values, 0.6), { bias: new Uint8Array(32).map((_, i) => (i % 2 ? 0 : 1)) });
  const before = tf.memory().numTensors;
  ms.applyMasks(tf, model);
  const check = () => {
    for (const name of ['dense_1', 'dense_2']) {
      const k = readKernel(model, name);
      const m = ms.get(name)!.kernel;
      let z = 0;
      k.values.forEach((v, i) => {
        if (!m[i]) assert.equal(v, 0);
        if (v === 0) z++;
      });
      assert.equal(z, Math.round(0.6 * k.values.length));
    }
    const bias = model.getLayer('dense_2').getWeights()[1].dataSync();
    bias.forEach((v, i) => i % 2 && assert.equal(v, 0));
  };
  check();
  // a random update of every weight (what an optimizer step does), then re-apply
  for (const w of model.trainableWeights) {
    const v = w.read();
    const nv = tf.tidy(() => tf.add(v, tf.randomUniform(v.shape, -0.1, 0.1, 'float32', 5)));
    w.write(nv);
    nv.dispose();
  }
  ms.applyMasks(tf, model);
  check();
  assert.equal(tf.memory().numTensors, before + 3, 'only the 3 cached mask tensors stay alive');
  assert.deepEqual([...ms.sparsity().values()].map((s) => Math.round(s * 100) / 100), [0.6, 0.6]);

  // gradients
  const x = tf.randomUniform([4, 28, 28, 1], 0, 1, 'float32', 1);
  const y = tf.oneHot(tf.tensor1d([1, 2, 3, 4], 'int32'), 10);
  const { value, grads } = tf.variableGrads(() => tf.mean(tf.metrics.categoricalCrossentropy(y, model.predict(x) as never)) as never);
  const k1 = kernelVariable(model.getLayer('dense_1'))!;
  const raw = grads[k1.name].dataSync().slice();
  const masked = ms.maskGradients(grads);
  assert.ok(grads[k1.name].isDisposed, 'replaced gradient disposed');
  const mg = masked[k1.name].dataSync();
  const m1 = ms.get('dense_1')!.kernel;
  let nonzeroKept = 0;
  mg.forEach((g, i) => {
    if (!m1[i]) assert.equal(g, 0);
    else {
      assert.equal(g, raw[i]);
      if (g !== 0) nonzeroKept++;
    }
  });
  assert.ok(nonzeroKept > 0);
  // unmasked variables pass through untouched (same tensor)
  const k3 = kernelVariable(model.getLayer('dense_3'))!;
  assert.equal(masked[k3.name], grads[k3.name]);
  // list form
  const list = ms.maskGradients(Object.entries(masked).map(([name, tensor]) => ({ name, tensor })));
  assert.equal(list.length, Object.keys(masked).length);
  tf.dispose([value, x, y, ...list.map((e) => e.tensor)]);

  const z = MaskSet.fromZeros(model, ['dense_1']);
  assert.deepEqual(z.get('dense_1')!.kernel, ms.get('dense_1')!.kernel);
  assert.throws(() => new MaskSet().set('nope', new Uint8Array(3)).applyMasks(tf, model), /does not have/);
  assert.throws(() => new MaskSet().set('dense_1', new Uint8Array(3)).applyMasks(tf, model), /has 3 entries/);
  ms.dispose();
  model.dispose();
});

test('Taylor importance |w * dL/dw| summed over batches', () => {
  const model = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 3 });
  const xs = [0, 1].map((s) => tf.randomUniform([8, 28, 28, 1], 0, 1, 'float32', s));
  const ys = [tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], 'int32'), tf.oneHot(tf.tensor1d([9, 8, 7, 6, 5, 4, 3, 2], 'int32'), 10)];
  const imp = taylorImportance(tf, model, xs, ys);
  assert.deepEqual([...imp.keys()], ['dense_1', 'dense_2', 'dense_3']);
  // reference by hand for dense_2
  const k = kernelVariable(model.getLayer('dense_2'))!;
  const ref = new Float64Array(k.read().size);
  const w = k.read().dataSync();
  xs.forEach((x, b) => {
    const y = b === 0 ? tf.oneHot(ys[0] as never, 10) : ys[1];
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.metrics.categoricalCrossentropy(y, model.apply(x) as never)) as never, [k.read() as never]);
    const g = grads[k.name].dataSync();
    g.forEach((gv, i) => (ref[i] += Math.abs(w[i] * gv)));
    tf.dispose([value, ...Object.values(grads)]);
    if (b === 0) y.dispose();
  });
  const got = imp.get('dense_2')!;
  assert.equal(got.length, ref.length);
  let maxErr = 0;
  got.forEach((v, i) => (maxErr = Math.max(maxErr, Math.abs(v - ref[i]))));
  assert.ok(maxErr < 1e-6, `max err ${maxErr}`);
  assert.ok(got.some((v) => v > 0) && got.every((v) => v >= 0));
  tf.dispose([...xs, ...ys]);
  model.dispose();
});
