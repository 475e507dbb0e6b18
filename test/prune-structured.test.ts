import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { removeUnits, zeroUnits, countParams, StructuredRemovalError, MaskSet, modelStats, magnitudeMask, readKernel, pruningMeta } from '../src/prune/index.js';
import { maxAbsDiff as maxAbsDiffOf, randomBatchNorms, zeroOut as zeroOutUnits } from './fixtures/unit-removal.js';

const { tf } = await initEngine('cpu');
const opts = { inputShape: [28, 28, 1], numClasses: 10, seed: 7 };

const zeroOut = (model: tfType.LayersModel, spec: Record<string, number[]>) => zeroOutUnits(tf, model, spec);
const maxAbsDiff = (a: tfType.LayersModel, b: tfType.LayersModel, x: tfType.Tensor) => maxAbsDiffOf(tf, a, b, x);

const input = (seed: number) => tf.randomUniform([3, 28, 28, 1], 0, 1, 'float32', seed);

test('lenet-5: removing zeroed conv_1/conv_2 filters and dense_1 neurons keeps outputs and drops params', () => {
  const model = buildModel(tf, 'lenet-5', opts);
  // make biases non-zero so bias slicing is exercised
  for (const name of ['conv_1', 'conv_2', 'dense_1', 'dense_2']) {
    const b = model.getLayer(name).weights[1];
    const nb = tf.randomUniform(b.shape as number[], -0.1, 0.1, 'float32', 3);
    b.write(nb);
    nb.dispose();
  }
  const dense1Removed = Array.from({ length: 100 }, (_, i) => i * 5 + 2);
  const spec = { conv_1: [0, 3, 7], conv_2: [1, 2, 10, 49], dense_1: dense1Removed };
  zeroOut(model, spec);
  assert.deepEqual(zeroUnits(model), spec);
  const x = input(1);
  const before = countParams(model);
  assert.equal(before, 25 * 20 + 20 + 25 * 20 * 50 + 50 + 800 * 500 + 500 + 500 * 10 + 10);
  const r = removeUnits(tf, model, spec);
  const expected = 25 * 17 + 17 + 25 * 17 * 46 + 46 + 16 * 46 * 400 + 400 + 400 * 10 + 10;
  assert.equal(r.paramsBefore, before);
  assert.equal(r.paramsAfter, expected);
  assert.equal(countParams(r.model), expected);
  assert.deepEqual(r.model.getLayer('flatten').outputShape, [null, 736]);
  assert.equal(r.model.getLayer('dense_1').outputShape.at(-1), 400);
  const d = maxAbsDiff(model, r.model, x);
  assert.ok(d < 1e-5, `max |diff| ${d}`);
  // removing NON-zero units changes the output (sanity check of the test itself)
  const changed = removeUnits(tf, model, { dense_1: [0, 1] });
  assert.ok(maxAbsDiff(model, changed.model, x) > 1e-5);
  // original left untouched
  assert.equal(countParams(model), before);
  x.dispose();
});

test('dw-cnn: removal through BatchNorm, ReLU, depthwise conv and global pooling', () => {
  const model = buildModel(tf, 'dw-cnn', opts);
  const spec = { stem_conv: [1, 5], block_1_pw: [0, 31], block_3_pw: [3] };
  const removedBn: Record<string, number[]> = {
    stem_bn: [1, 5],
    block_1_dw_bn: [1, 5],
    block_1_pw_bn: [0, 31],
    block_2_dw_bn: [0, 31],
    block_3_pw_bn: [3],
  };
  // random BatchNorm statistics; the removed channels map 0 -> 0 (beta = mean = 0)
  randomBatchNorms(tf, model, 5, removedBn);
  zeroOut(model, spec);
  const x = input(2);
  const r = removeUnits(tf, model, spec);
  assert.equal(r.paramsBefore - r.paramsAfter, 384);
  assert.equal(r.model.getLayer('block_1_dw').outputShape.at(-1), 14);
  assert.equal(r.model.getLayer('block_2_dw').outputShape.at(-1), 30);
  assert.equal(r.model.getLayer('gap').outputShape.at(-1), 63);
  const d = maxAbsDiff(model, r.model, x);
  assert.ok(d < 1e-5, `max |diff| ${d}`);
  x.dispose();
});

test('refusals name the layer', () => {
  const lenet = buildModel(tf, 'lenet-5', opts);
  const refuse = (m: tfType.LayersModel, spec: Record<string, number[]>, re: RegExp, layer?: string) =>
    assert.throws(() => removeUnits(tf, m, spec), (e: unknown) => {
      assert.ok(e instanceof StructuredRemovalError, String(e));
      assert.match(e.message, re);
      if (layer) assert.equal(e.layer, layer);
      return true;
    });
  refuse(lenet, { dense_2: [0] }, /dense_2.*softmax/, 'dense_2');
  refuse(lenet, { conv_9: [0] }, /no layer named conv_9/);
  refuse(lenet, { conv_1: Array.from({ length: 20 }, (_, i) => i) }, /cannot remove all 20 units of conv_1/);
  refuse(lenet, { conv_1: [20] }, /out of range/);
  const dw = buildModel(tf, 'dw-cnn', opts);
  refuse(dw, { block_1_dw: [0] }, /DepthwiseConv2D.*producing its input/, 'block_1_dw');
  // a linear output layer: removal would change the model output
  const inp = tf.input({ shape: [4] });
  const a = tf.layers.dense({ units: 6, name: 'a' }).apply(inp) as tfType.SymbolicTensor;
  const b = tf.layers.dense({ units: 6, name: 'b' }).apply(inp) as tfType.SymbolicTensor;
  const out = tf.layers.add({ name: 'sum' }).apply([a, b]) as tfType.SymbolicTensor;
  const res = tf.layers.reshape({ targetShape: [2, 3], name: 'reshape' }).apply(out) as tfType.SymbolicTensor;
  const m1 = tf.model({ inputs: inp, outputs: tf.layers.dense({ units: 2, name: 'head' }).apply(out) as tfType.SymbolicTensor });
  refuse(m1, { a: [1] }, /removal of a reaches layer sum \(Add\): its inputs would lose different channels/, 'sum');
  refuse(m1, { head: [1] }, /would change the model output \(reaches output layer head\)/, 'head');
  // the same channels removed from both branches of the Add is fine
  const ok = removeUnits(tf, m1, { a: [1], b: [1] });
  assert.equal(ok.model.getLayer('sum').outputShape.at(-1), 5);
  const m2 = tf.model({ inputs: inp, outputs: tf.layers.flatten().apply(res) as tfType.SymbolicTensor });
  refuse(m2, { a: [1], b: [1] }, /reaches layer reshape \(Reshape\)/, 'reshape');
});

test('stats: params, non-zeros, dense and effective MACs', () => {
  const model = buildModel(tf, 'lenet-5', opts);
  const s0 = modelStats(model);
  const byName = Object.fromEntries(s0.layers.map((l) => [l.name, l]));
  assert.equal(byName.conv_1.macs, 25 * 20 * 24 * 24);
  assert.equal(byName.conv_2.macs, 25 * 20 * 50 * 8 * 8);
  assert.equal(byName.dense_1.macs, 800 * 500);
  assert.equal(s0.macs, 288000 + 1600000 + 400000 + 5000);
  assert.equal(s0.params, countParams(model));
  assert.equal(s0.kernelSparsity, 0);
  const ms = new MaskSet().set('dense_1', magnitudeMask(readKernel(model, 'dense_1').values, 0.5));
  ms.applyMasks(tf, model);
  ms.dispose();
  const s1 = modelStats(model);
  const d1 = s1.layers.find((l) => l.name === 'dense_1')!;
  assert.equal(d1.kernelNonZero, 200000);
  assert.equal(d1.sparsity, 0.5);
  assert.equal(s1.effectiveMacs, s0.effectiveMacs - 200000);
  assert.equal(s1.kernelParams - s1.kernelNonZero, 200000);
  assert.deepEqual(pruningMeta(model, { dense_1: 'magnitude', conv_1: 'structured' }, { conv_1: [1, 2] }), {
    dense_1: { method: 'magnitude', sparsity: 0.5 },
    conv_1: { method: 'structured', sparsity: 0, removed: 2 },
  });
  const dw = modelStats(buildModel(tf, 'dw-cnn', opts));
  const l = Object.fromEntries(dw.layers.map((x) => [x.name, x]));
  assert.equal(l.stem_conv.macs, 9 * 16 * 14 * 14);
  assert.equal(l.block_1_dw.macs, 9 * 16 * 14 * 14);
  assert.equal(l.block_2_pw.macs, 32 * 64 * 7 * 7);
  assert.equal(l.classifier.macs, 640);
  assert.equal(l.stem_bn.macs, 0);
});
