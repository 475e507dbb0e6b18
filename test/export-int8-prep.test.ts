import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { buildIr, type IrGraph } from '../src/export/ir.js';
import { correctBiases, decisionTensors, equalizationPairs, equalize, autoRanges, prepareInt8 } from '../src/export/int8-prep.js';
import { activationFakeQuant } from '../src/export/layer-error.js';
import { fakeQuantizedIr, forEachCalibrationBatch, outChannels, runIr, tensorRanges, type Range } from '../src/export/quant.js';
import { newRangeStat, observeHistogram, rangeFromStat, type CalibrationMethod } from '../src/compression/calibrate.js';
import { buildModel } from '../src/engine/models.js';
import { emptyMeta } from '../src/model/meta.js';
import { createRng } from '../src/util/rng.js';
import { buildMobileNetV2 } from '../bench/mobilenet.js';
import { cachedTrainedModel, engine, tempDir } from './fixtures/export/models.js';
import { exportLayerErrors, exportModel, verifyExport, worstLayer } from '../src/export/index.js';

/** MNIST-like inputs in [0, 1]: mostly dark with bright strokes. */
function images(n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n * 784 }, () => (rng() < 0.75 ? 0 : rng()));
}

function output(tf: typeof tfType, ir: IrGraph, x: Float32Array, n: number, fq?: Range[], qir?: IrGraph): Float32Array {
  const t = tf.tensor(x, [n, 28, 28, 1]);
  const y = runIr(tf, qir ?? ir, t, fq ? { after: activationFakeQuant(tf, fq) } : {});
  const d = Float32Array.from(y.dataSync() as Float32Array);
  y.dispose();
  t.dispose();
  return d;
}

/** A small MobileNetV2-style net (ReLU6, expansion, residual Add) with seeded, untrained weights. */
function smallMobileNet(tf: typeof tfType) {
  return buildMobileNetV2(tf, { alpha: 0.5, inputShape: [28, 28, 1], numClasses: 10, seed: 3, stages: [[1, 16, 1, 1], [6, 24, 2, 2]], lastChannels: 64 });
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

test('equalization keeps the function of dw-cnn (ReLU pairs) and balances each pair\'s channel weight ranges', async () => {
  const tf = await engine();
  const ir = buildIr(buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 5 }), 'tflite');
  const pairs = equalizationPairs(ir);
  assert.deepEqual(pairs.map(([p, c]) => `${p.kind}>${c.kind}`), ['conv2d>depthwise', 'depthwise>conv2d', 'conv2d>depthwise', 'depthwise>conv2d', 'conv2d>depthwise', 'depthwise>conv2d']);
  const x = images(32, 1);
  const eq = equalize(tf, ir, x, 1);
  assert.equal(eq.pairs, 6);
  const before = output(tf, ir, x, 32);
  const after = output(tf, eq.ir, x, 32);
  assert.ok(maxAbsDiff(before, after) < 1e-5, `outputs moved by ${maxAbsDiff(before, after)}`);
  // After one sweep the last pair (block_3 depthwise -> pointwise) has equal ranges per channel.
  const [p, c] = equalizationPairs(eq.ir).at(-1)!;
  const n = outChannels(p);
  const r1 = new Float64Array(n);
  const r2 = new Float64Array(n);
  p.kernel.forEach((v, i) => (r1[i % n] = Math.max(r1[i % n], Math.abs(v))));
  c.kernel.forEach((v, i) => (r2[Math.floor(i / c.kernelShape[3]) % n] = Math.max(r2[Math.floor(i / c.kernelShape[3]) % n], Math.abs(v))));
  for (let ch = 0; ch < n; ch++) assert.ok(Math.abs(r1[ch] - r2[ch]) <= 1e-4 * r1[ch], `channel ${ch}: ${r1[ch]} vs ${r2[ch]}`);
});

test('equalization across ReLU6 keeps the function on the calibration samples and leaves saturating channels alone', async () => {
  const tf = await engine();
  const ir = buildIr(smallMobileNet(tf), 'tflite');
  // Bright inputs (x 20) drive some channels of the seeded net past 6.
  const x = images(48, 2).map((v) => v * 20);
  const eq = equalize(tf, ir, x);
  assert.ok(eq.pairs > 0 && equalizationPairs(ir).some(([p]) => p.activation === 'relu6'));
  const before = output(tf, ir, x, 48);
  const after = output(tf, eq.ir, x, 48);
  assert.ok(maxAbsDiff(before, after) < 1e-4, `outputs moved by ${maxAbsDiff(before, after)}`);
  // Channels that reach 6 keep scale 1: their kernels are bit-identical.
  const relu6 = equalizationPairs(ir).filter(([q]) => q.activation === 'relu6').map(([p]) => p);
  const maxima = new Map<number, Float32Array>();
  forEachCalibrationBatch(tf, ir, x, (id, t) => {
    if (relu6.some((p) => p.output === id)) maxima.set(id, tf.max(t, [0, 1, 2]).dataSync() as Float32Array);
  });
  let saturated = 0;
  for (const p of relu6) {
    const m = maxima.get(p.output)!;
    const q = eq.ir.ops.find((o) => o.output === p.output)! as typeof p;
    const n = m.length;
    for (let ch = 0; ch < n; ch++) {
      if (m[ch] < 6) continue;
      saturated++;
      for (let i = ch; i < p.kernel.length; i += n) assert.equal(q.kernel[i], p.kernel[i]);
    }
  }
  assert.ok(saturated > 0, 'the seeded net has channels that saturate ReLU6');
});

test('bias correction removes most of the mean int8 error of the logits', async () => {
  const tf = await engine();
  // Per-tensor weights on a trained dw-cnn: a coarse grid whose rounding errors do not average out per channel.
  const t = await cachedTrainedModel(tf, 'dw-cnn');
  const ir = buildIr(t.model, 'tflite');
  const calib = t.calibration.subarray(0, 64 * 784);
  const x = t.test.x.subarray(0, 128 * 784); // held-out samples
  const meta = emptyMeta();
  const ranges = tensorRanges(tf, ir, meta, 'tflite', calib);
  const logits = ir.ops.find((op) => op.kind === 'dense')!;
  const sub: IrGraph = { ...ir, ops: ir.ops.slice(0, ir.ops.indexOf(logits) + 1), output: logits.output };
  const meanError = (g: IrGraph) => {
    const f = output(tf, sub, x, 128);
    const q = output(tf, sub, x, 128, ranges, fakeQuantizedIr({ ...g, ops: g.ops.slice(0, sub.ops.length), output: logits.output }, meta, false));
    const k = 10;
    let worst = 0;
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let i = 0; i < 128; i++) s += q[i * k + c] - f[i * k + c];
      worst = Math.max(worst, Math.abs(s / 128));
    }
    return worst;
  };
  const before = meanError(ir);
  const after = meanError(correctBiases(tf, ir, meta, ranges, calib, { perChannel: false, weightQmax: () => 127 }));
  assert.ok(before > 1e-3, `the uncorrected int8 logits carry a mean error (${before})`);
  assert.ok(after < before / 2, `mean logit error ${before} -> ${after}`);
});

/** Samples of a known distribution as a RangeStat with its histogram. */
function statOf(values: Float32Array) {
  const s = newRangeStat();
  for (const v of values) (s.min = Math.min(s.min, v)), (s.max = Math.max(s.max, v));
  observeHistogram(s, values);
  return s;
}

function normal(n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(rng() || 1e-12)) * Math.cos(2 * Math.PI * rng()));
}

test('calibration methods on a standard normal: minmax covers it, percentile 99.99 is the 3.7-sigma quantile, mse and kl clip near 4 sigma', () => {
  const s = statOf(normal(200_000, 1));
  const r = (m: CalibrationMethod) => rangeFromStat(s, m);
  assert.ok(r('minmax').max >= 4.2 && r('minmax').min <= -4.2);
  // Two-sided 99.99%: 0.01% in each tail, z = 3.719.
  assert.ok(Math.abs(r('percentile').max - 3.72) < 0.1 && Math.abs(r('percentile').min + 3.72) < 0.1, JSON.stringify(r('percentile')));
  for (const m of ['mse', 'kl'] as const) {
    const { min, max } = r(m);
    assert.ok(max > 3.3 && max < r('minmax').max && min < -3.3 && min > r('minmax').min, `${m}: [${min}, ${max}]`);
  }
});

test('calibration methods on a uniform distribution keep (almost) the whole range; on ReLU outputs they start at 0', () => {
  const rng = createRng(2);
  const u = statOf(Float32Array.from({ length: 100_000 }, () => 2 * rng() - 1));
  for (const m of ['minmax', 'percentile', 'mse', 'kl'] as const) {
    const { min, max } = rangeFromStat(u, m);
    assert.ok(max > 0.98 && min < -0.98, `${m}: [${min}, ${max}]`);
  }
  const relu = statOf(normal(100_000, 3).map((v) => Math.max(0, v)));
  for (const m of ['minmax', 'percentile', 'mse', 'kl'] as const) {
    const { min, max } = rangeFromStat(relu, m);
    assert.equal(min, 0, m);
    assert.ok(max > 3 && max <= relu.max, `${m}: ${max}`);
  }
});

test('auto calibration picks per tensor the range with the least int8 error and keeps the logits and output at minmax', async () => {
  const tf = await engine();
  const ir = buildIr(buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 5 }), 'tflite');
  const calib = images(64, 6);
  const { ranges, picked } = autoRanges(tf, ir, emptyMeta(), 'tflite', calib, undefined, new Set(), 99.99);
  const minmax = tensorRanges(tf, ir, emptyMeta(), 'tflite', calib);
  const decision = decisionTensors(ir);
  assert.deepEqual([...decision].map((t) => ir.tensors[t].layer).sort(), ['classifier', 'classifier#dense']);
  for (const t of decision) assert.deepEqual(ranges[t], minmax[t]);
  assert.ok(Object.values(picked).reduce((a, b) => a + b, 0) === ir.tensors.length - 2, JSON.stringify(picked));
  // Some hidden ReLU output is clipped below its observed max (its histogram has a long tail).
  assert.ok(ir.ops.some((op) => ranges[op.output].max < minmax[op.output].max * 0.999 && !decision.has(op.output)));
});

test('prepareInt8 leaves the float graph unchanged when every step is off', async () => {
  const tf = await engine();
  const ir = buildIr(buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 5 }), 'tflite');
  const calib = images(32, 7);
  const p = prepareInt8(tf, ir, emptyMeta(), 'tflite', { calibration: calib, perChannel: true, weightQmax: () => 127, int8: { calibration: { method: 'minmax' }, equalization: false, biasCorrection: false } });
  assert.equal(p.ir, ir);
  assert.deepEqual(p.steps, ['calibration: minmax']);
  assert.deepEqual(p.ranges, tensorRanges(tf, ir, emptyMeta(), 'tflite', calib));
});

test('an int8 export damaged by a wrong activation range fails the default gate, and the message names the worst layer', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'dw-cnn');
  const meta = emptyMeta();
  // A calibrated range 100x too narrow for one hidden layer: its outputs clip in the file.
  meta.activationRanges.block_2_pw_relu = { min: 0, max: 0.05 };
  const opts = { target: 'tflite' as const, precision: 'int8' as const, calibration: t.calibration };
  const dir = tempDir('int8-damaged');
  const res = await exportModel(tf, t.model, meta, opts, dir);
  const errors = (await exportLayerErrors(tf, t.model, meta, opts, t.test.x, 64))!.layers;
  // The named layer is the damaged one (where the SNR drops), not the last layer the damage reaches.
  const worst = worstLayer(errors)!;
  assert.equal(worst.layer, 'block_2_pw_relu', JSON.stringify(errors));
  assert.ok(worst.snrDb < 10, JSON.stringify(worst));
  await assert.rejects(
    verifyExport(tf, { target: 'tflite', precision: 'int8', dir, files: res.files }, t.model, t.test, { layerErrors: errors }),
    (e: Error) => e.message.includes(`worst layer in the simulated int8 run: '${worst.layer}'`) && /fails its check/.test(e.message),
  );
});
