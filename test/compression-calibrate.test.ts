import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import {
  calibrateActivations,
  applyWeightQuant,
  predictWithActivationQuant,
  layerErrorReport,
  cloneModel,
  modelGraph,
  runLayerByLayer,
  fakeQuantTensor,
  accuracyOf,
  quantizedOutputLayers,
  INPUT_KEY,
  logitsKey,
  mseClipRange,
  histogramQuantMse,
} from '../src/compression/index.js';
import { initEngine } from '../src/engine/backend.js';
import { inferencePlan } from '../src/engine/inference.js';
import { buildModel } from '../src/engine/models.js';
import { createRng } from '../src/util/rng.js';

type Tensor = tfType.Tensor;

function samples(n: number, seed: number) {
  const rng = createRng(seed);
  // MNIST-like: mostly 0 with some bright pixels
  const x = Float32Array.from({ length: n * 784 }, () => (rng() < 0.8 ? 0 : rng()));
  return { x, n, sampleShape: [28, 28, 1] };
}

/** Every layer's output on the samples, via a multi-output model (independent of the walker). */
function observed(tf: typeof tfType, model: tfType.LayersModel, x: Tensor): Map<string, Float32Array> {
  const layers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  const probe = tf.model({ inputs: model.inputs, outputs: layers.map((l) => l.output as tfType.SymbolicTensor) });
  const outs = probe.predict(x) as Tensor[];
  const m = new Map<string, Float32Array>();
  layers.forEach((l, i) => m.set(l.name, outs[i].dataSync() as Float32Array));
  outs.forEach((o) => o.dispose());
  return m;
}

/**
 * Every output of the model's inference graph (engine/inference.ts: conv blocks fused, batch norm
 * folded) on all the samples at once, kept in memory: what calibration must see, batch by batch.
 */
function observedSteps(tf: typeof tfType, model: tfType.LayersModel, x: Tensor): Map<string, Float32Array> {
  const plan = inferencePlan(tf, model);
  const m = new Map<string, Float32Array>();
  const walk = plan.walk(x);
  for (let r = walk.next(); !r.done; r = walk.next()) m.set(r.value.layer, Float32Array.from(r.value.outputs[0].dataSync()));
  plan.dispose();
  return m;
}

/** The keys calibration gives: a softmax classifier's logits (the tensor its softmax reads) before its own. */
function withLogits(keys: string[]): string[] {
  return keys.flatMap((k) => (k === 'classifier' ? [logitsKey(k), k] : [k]));
}

function minmax(a: Float32Array): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < a.length; i++) (min = Math.min(min, a[i])), (max = Math.max(max, a[i]));
  return { min, max };
}

test('calibration: minmax ranges contain every activation of the inference graph; percentile / mse lie inside them', async () => {
  const { tf } = await initEngine('wasm');
  const model = buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 3 });
  const s = samples(48, 1);
  const x = tf.tensor(s.x, [48, 28, 28, 1]);
  const steps = observedSteps(tf, model, x);
  const mm = await calibrateActivations(tf, model, s, { method: 'minmax', batchSize: 20 });
  // One range per tensor of the inference graph: a conv block (conv, batch norm, ReLU) has its ReLU's.
  assert.deepEqual(Object.keys(mm), withLogits([INPUT_KEY, ...steps.keys()]));
  assert.ok(mm.stem_relu && !mm.stem_conv && !mm.stem_bn, Object.keys(mm).join());
  // Each one holds the layer's own output computed layer by layer too (batch norm not folded; float32 rounding apart).
  const obs = observed(tf, model, x);
  for (const name of steps.keys()) {
    const o = minmax(obs.get(name)!);
    const r = mm[name];
    const tol = 1e-5 * Math.max(1, Math.abs(o.min), Math.abs(o.max));
    assert.ok(r.min <= 0 && r.max >= 0 && r.max > r.min);
    assert.ok(r.min <= o.min + tol && r.max >= o.max - tol, `${name}: [${r.min}, ${r.max}] misses [${o.min}, ${o.max}]`);
    assert.ok(Math.abs(Math.min(0, o.min) - r.min) < tol && Math.abs(Math.max(0, o.max) - r.max) < tol, `${name} not tight`);
  }
  assert.equal(mm[INPUT_KEY].min, 0);
  assert.ok(mm[INPUT_KEY].max > 0.99 && mm[INPUT_KEY].max <= 1);
  // also from a tensor, and restricted to some layers
  const some = await calibrateActivations(tf, model, x, { layers: ['classifier'] });
  assert.deepEqual(Object.keys(some).sort(), [INPUT_KEY, 'classifier']);
  assert.deepEqual(some.classifier, mm.classifier);

  for (const method of ['percentile', 'mse'] as const) {
    const r = await calibrateActivations(tf, model, s, { method, percentile: 99.9, batchSize: 48 });
    for (const [name, values] of steps) {
      const o = { min: Math.min(0, minmax(values).min), max: Math.max(0, minmax(values).max) };
      const width = (o.max - o.min) / 2048 + 1e-6;
      assert.ok(r[name].min >= o.min - width && r[name].max <= o.max + width, `${method} ${name} outside minmax`);
      if (method === 'percentile') {
        let inside = 0;
        for (let i = 0; i < values.length; i++) if (values[i] >= r[name].min - width && values[i] <= r[name].max + width) inside++;
        assert.ok(inside >= 0.998 * values.length, `${method} ${name}: only ${inside}/${values.length} inside`);
      }
    }
  }
  x.dispose();
  model.dispose();
});

test('calibration, fuse: false: every layer gets its own range, computed layer by layer; a fused-away layer is refused by name', async () => {
  const { tf } = await initEngine('wasm');
  const model = buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 3 });
  const s = samples(24, 4);
  const x = tf.tensor(s.x, [24, 28, 28, 1]);
  const obs = observed(tf, model, x);
  const every = await calibrateActivations(tf, model, s, { fuse: false, batchSize: 10 });
  assert.deepEqual(Object.keys(every), withLogits([INPUT_KEY, ...obs.keys()]));
  for (const [name, values] of obs) {
    const o = minmax(values);
    assert.deepEqual(every[name], { min: Math.min(0, o.min), max: Math.max(0, o.max) }, name);
  }
  await assert.rejects(calibrateActivations(tf, model, s, { layers: ['stem_bn'] }), /'stem_bn' is fused into a conv block/);
  await assert.rejects(calibrateActivations(tf, model, s, { layers: ['nope'] }), /'nope' is not in the model/);
  x.dispose();
  model.dispose();
});

test('calibration gives every tensor the int8 exporters quantize a range, equal to the one the IR walk computes (float32 rounding apart)', async () => {
  const { tf } = await initEngine('wasm');
  const { buildIr } = await import('../src/export/ir.js');
  const { tensorRanges } = await import('../src/export/quant.js');
  const { emptyMeta } = await import('../src/model/meta.js');
  const model = buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 7 });
  const s = samples(32, 8);
  const ranges = await calibrateActivations(tf, model, s, { batchSize: 12 });
  const ir = buildIr(model, 'tflite');
  // The IR's own calibration (BatchNorm folded, activations fused as written), from no meta ranges.
  const irRanges = tensorRanges(tf, ir, emptyMeta(), 'tflite', s.x);
  let compared = 0;
  for (const t of ir.tensors) {
    // Constants have no range to calibrate; of the intermediates inside one layer (`layer#op`) only the
    // logits a softmax reads have one (the exporter calibrates any other itself).
    if (t.data || (t.layer.includes('#') && t.layer !== logitsKey('classifier'))) continue;
    const r = ranges[t.layer];
    assert.ok(r, `no calibrated range for IR tensor '${t.layer}'`);
    const o = irRanges[t.id];
    const tol = 1e-5 * Math.max(1, Math.abs(o.min), Math.abs(o.max));
    assert.ok(Math.abs(r.min - Math.min(0, o.min)) <= tol && Math.abs(r.max - Math.max(0, o.max)) <= tol, `${t.layer}: [${r.min}, ${r.max}] vs IR [${o.min}, ${o.max}]`);
    compared++;
  }
  assert.ok(ir.tensors.some((t) => t.layer === logitsKey('classifier')), 'the IR labels the logits as calibration keys them');
  // The logits keep their full (minmax) range whatever the method, as the exporters keep decision tensors.
  const pct = await calibrateActivations(tf, model, s, { method: 'percentile', percentile: 99, batchSize: 12 });
  assert.deepEqual(pct[logitsKey('classifier')], ranges[logitsKey('classifier')]);
  assert.ok(pct.gap.max < ranges.gap.max, 'percentile clips the other tensors');
  assert.ok(compared >= 8, `${compared} tensors`);
  model.dispose();
});

test('mse calibration: the chosen range minimizes the histogram MSE and clips long tails', () => {
  // a ReLU-like histogram with a long thin tail
  const bins = 512;
  const hist = Float64Array.from({ length: bins }, (_, i) => Math.round(10000 * Math.exp(-i / 20)) + (i === bins - 1 ? 1 : 0));
  const r = mseClipRange(hist, 0, 10, 8);
  assert.equal(r.min, 0);
  assert.ok(r.max < 10 && r.max > 1, `max ${r.max}`);
  const best = histogramQuantMse(hist, 0, 10, r.min, r.max, 8);
  for (let j = 1; j <= 128; j++) assert.ok(best <= histogramQuantMse(hist, 0, 10, 0, (10 * j) / 128, 8) * (1 + 1e-9));
  // two-sided
  const two = Float64Array.from({ length: bins }, (_, i) => Math.round(5000 * Math.exp(-Math.abs(i - 100) / 10)));
  const t = mseClipRange(two, -2, 8, 4);
  assert.ok(t.min < 0 && t.max > 0 && t.max < 8);
});

test('layer-by-layer run reproduces predict; fake-quant of weights in place; int8 activation simulation', async () => {
  const { tf } = await initEngine('wasm');
  const model = buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 5 });
  // non-trivial batch-norm statistics so inference mode matters
  const bn = model.getLayer('block_1_dw_bn');
  bn.setWeights(bn.getWeights().map((w, i) => (i === 2 ? tf.fill(w.shape, 0.01) : i === 3 ? tf.fill(w.shape, 0.25) : w)));
  // a random-init classifier gives near-uniform softmax; sharpen it so predictions mean something
  const cls = model.getLayer('classifier');
  cls.setWeights([tf.mul(cls.getWeights()[0], 200), cls.getWeights()[1]]);
  const s = samples(32, 2);
  const x = tf.tensor(s.x, [32, 28, 28, 1]);
  const graph = modelGraph(model);
  const [walked] = runLayerByLayer(tf, graph, x);
  const direct = model.predict(x) as Tensor;
  assert.ok(tf.max(tf.abs(tf.sub(walked, direct))).dataSync()[0] < 1e-6);
  // converter-style fusion: no quantization between conv and its batch norm, nor after pure reshapes
  const q = quantizedOutputLayers(graph);
  assert.ok(!q.has('stem_conv') && !q.has('stem_bn') && q.has('stem_relu') && q.has('classifier'));

  const reference = await cloneModel(tf, model);
  const ranges = await calibrateActivations(tf, model, s);
  const applied = applyWeightQuant(tf, model, {
    stem_conv: { method: 'linear', bits: 8 },
    block_1_dw: { method: 'linear', bits: 8, symmetric: false },
    block_1_pw: { method: 'kmeans', bits: 4 },
    classifier: { method: 'float16' },
  });
  const dw = applied.weightQuant.block_1_dw;
  assert.ok(dw.method === 'linear' && dw.axis === 2 && dw.scales.length === 16 && !dw.symmetric);
  const stem = applied.weightQuant.stem_conv;
  assert.ok(stem.method === 'linear' && stem.axis === 3 && stem.scales.length === 16 && stem.symmetric);
  const pw = applied.weightQuant.block_1_pw;
  assert.ok(pw.method === 'kmeans' && pw.codebook.length <= 16);
  assert.equal(new Set(model.getLayer('block_1_pw').getWeights()[0].dataSync()).size, pw.codebook.length);
  assert.deepEqual(applied.weightQuant.classifier, { method: 'float16', bits: 16 });
  // the model now computes with the codes' values
  const kernel = model.getLayer('stem_conv').getWeights()[0].dataSync();
  const codes = applied.codes.stem_conv;
  for (let i = 0; i < kernel.length; i++) assert.equal(kernel[i], Math.fround(codes[i] * stem.scales[i % 16]));
  assert.ok(applied.errors.stem_conv.sqnrDb > 35 && applied.errors.block_1_pw.sqnrDb > 15);

  const yRef = reference.predict(x) as Tensor;
  const yW = model.predict(x) as Tensor;
  const y8 = await predictWithActivationQuant(tf, model, s, ranges, { batchSize: 16 });
  const y3 = await predictWithActivationQuant(tf, model, s, ranges, { bits: 3 });
  assert.deepEqual(y8.shape, [32, 10]);
  const err = (a: Tensor) => tf.norm(tf.sub(a, yRef)).dataSync()[0] / tf.norm(yRef).dataSync()[0];
  assert.ok(err(yW) < 0.1, `weights-only error ${err(yW)}`);
  assert.ok(err(y8) < 0.1, `int8 error ${err(y8)}`);
  assert.ok(err(y3) > err(y8), 'fewer activation bits should hurt');
  const labels = Int32Array.from(yRef.argMax(-1).dataSync());
  assert.ok(accuracyOf(y8, labels) >= 0.8);
  // fakeQuantTensor keeps 0 exact and snaps to the grid
  const fq = fakeQuantTensor(tf, tf.tensor([-1, 0, 0.3, 5]), { min: -1, max: 2 }).dataSync();
  assert.equal(fq[1], 0);
  assert.ok(Math.abs(fq[0] + 1) < 1e-6 && Math.abs(fq[3] - 2) < 0.01 && Math.abs(fq[2] - 0.3) <= 3 / 255 / 2 + 1e-6);

  const report = await layerErrorReport(tf, reference, model, s, { activationRanges: ranges, maxSamples: 16 });
  const byName = new Map(report.map((r) => [r.layer, r]));
  assert.ok(byName.get('stem_conv')!.weight!.sqnrDb > 35);
  assert.ok(byName.get('classifier')!.weight!.sqnrDb > 50);
  assert.equal(byName.get('block_2_dw')!.weight!.relL2, 0);
  for (const r of report) assert.ok(Number.isFinite(r.output.relL2) && r.output.relL2 < 0.5, `${r.layer}: ${r.output.relL2}`);
  const weightsOnly = await layerErrorReport(tf, reference, model, s, { maxSamples: 16 });
  assert.ok(weightsOnly.find((r) => r.layer === 'gap')!.output.sqnrDb > byName.get('gap')!.output.sqnrDb);
  x.dispose();
});

test('calibration streams: every method gives the same ranges in batches of 7 as over all samples at once', async () => {
  const { tf } = await initEngine('wasm');
  const model = buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 5 });
  const s = samples(40, 9);
  const x = tf.tensor(s.x, [40, 28, 28, 1]);
  // In memory: every activation of the inference graph for all samples at once, min / max over them.
  const obs = observedSteps(tf, model, x);
  const streamed = await calibrateActivations(tf, model, s, { method: 'minmax', batchSize: 7 });
  assert.deepEqual(Object.keys(streamed), withLogits([INPUT_KEY, ...obs.keys()]));
  for (const [name, values] of obs) {
    const o = minmax(values);
    assert.deepEqual(streamed[name], { min: Math.min(0, o.min), max: Math.max(0, o.max) }, name);
  }
  for (const method of ['percentile', 'mse'] as const) {
    const whole = await calibrateActivations(tf, model, s, { method, batchSize: 40 });
    const inBatches = await calibrateActivations(tf, model, s, { method, batchSize: 7 });
    assert.deepEqual(inBatches, whole, method);
  }
  x.dispose();
  model.dispose();
});

test('calibration: ReLU / relu6 / relu / linear activation layers get the exact observed range, derived from their input without reducing their output', async () => {
  const { tf } = await initEngine('wasm');
  const { derivedRanges } = await import('../src/compression/calibrate.js');
  const init = (seed: number) => tf.initializers.heNormal({ seed });
  const input = tf.input({ shape: [12, 12, 3] });
  let h = tf.layers.conv2d({ filters: 8, kernelSize: 3, name: 'conv', kernelInitializer: init(1) }).apply(input) as tfType.SymbolicTensor;
  h = tf.layers.batchNormalization({ name: 'bn', betaInitializer: 'ones' }).apply(h) as tfType.SymbolicTensor;
  h = tf.layers.reLU({ maxValue: 0.7, name: 'relu_capped' }).apply(h) as tfType.SymbolicTensor;
  h = tf.layers.conv2d({ filters: 8, kernelSize: 3, name: 'conv2', kernelInitializer: init(2) }).apply(h) as tfType.SymbolicTensor;
  h = tf.layers.activation({ activation: 'relu6', name: 'act_relu6' }).apply(h) as tfType.SymbolicTensor;
  h = tf.layers.activation({ activation: 'linear', name: 'act_linear' }).apply(h) as tfType.SymbolicTensor;
  h = tf.layers.flatten({ name: 'flat' }).apply(h) as tfType.SymbolicTensor;
  h = tf.layers.dense({ units: 4, name: 'fc', kernelInitializer: init(3) }).apply(h) as tfType.SymbolicTensor;
  h = tf.layers.activation({ activation: 'relu', name: 'act_relu' }).apply(h) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: h });
  assert.deepEqual([...derivedRanges(modelGraph(model), null).keys()], ['relu_capped', 'act_relu6', 'act_linear', 'act_relu']);
  const rng = createRng(6);
  const s = { x: Float32Array.from({ length: 30 * 12 * 12 * 3 }, () => rng() * 4 - 2), n: 30, sampleShape: [12, 12, 3] };
  const x = tf.tensor(s.x, [30, 12, 12, 3]);
  const obs = observedSteps(tf, model, x);
  const ranges = await calibrateActivations(tf, model, s, { method: 'minmax', batchSize: 8 });
  // conv2 + act_relu6 run fused (one kernel): its range is reduced; the others follow from their inputs'.
  assert.ok(!obs.has('conv2') && obs.has('act_relu6') && obs.has('relu_capped') && obs.has('act_linear') && obs.has('act_relu'));
  for (const [name, values] of obs) {
    const o = minmax(values);
    assert.deepEqual(ranges[name], { min: Math.min(0, o.min), max: Math.max(0, o.max) }, name);
  }
  // Some observed ranges are strictly inside the cap / above 0, so a derivation that ignored them would differ.
  assert.ok(minmax(obs.get('relu_capped')!).max === Math.fround(0.7) && minmax(obs.get('act_relu6')!).max < 6, JSON.stringify(ranges));
  x.dispose();
  model.dispose();
});

test('inference batches are bounded by activation memory: a 224x224 MobileNet-like layer gets a small batch, LeNet the requested one', async () => {
  const { tf } = await initEngine('wasm');
  const { boundedBatchSize, activationBytesPerSample } = await import('../src/engine/batching.js');
  const input = tf.input({ shape: [224, 224, 3] });
  const wide = tf.layers.conv2d({ filters: 96, kernelSize: 1 }).apply(input) as tfType.SymbolicTensor;
  const big = tf.model({ inputs: input, outputs: wide });
  // (224*224*3 + 224*224*96) floats in and out of the conv, 4 bytes each, times 3 for headroom
  assert.equal(activationBytesPerSample(big), 224 * 224 * 99 * 4 * 3);
  const b = boundedBatchSize(big, 256, 256 * 1024 * 1024);
  assert.ok(b >= 1 && b * activationBytesPerSample(big) <= 256 * 1024 * 1024 && (b + 1) * activationBytesPerSample(big) > 256 * 1024 * 1024, `batch ${b}`);
  const lenet = buildModel(tf, 'lenet-5', { inputShape: [28, 28, 1], numClasses: 10, seed: 1 });
  assert.equal(boundedBatchSize(lenet, 256), 256);
  big.dispose();
  lenet.dispose();
});
