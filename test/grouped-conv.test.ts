import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { inferencePlan } from '../src/engine/inference.js';
import { exportModel, verifyExport } from '../src/export/index.js';
import { readTflite } from '../src/export/tflite/reader.js';
import { Op } from '../src/export/tflite/schema.js';
import { emptyMeta } from '../src/model/meta.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { importOnnx } from '../src/model/load/onnx.js';
import { checkImport, randomInputs } from '../src/model/load/onnx-verify.js';
import { layerStats } from '../src/prune/stats.js';
import { writeKeras2H5, writeKeras3 } from './fixtures/keras-writer.js';
import { ROOT } from './helpers.js';
import { encodeNpy } from '../src/data/npy.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe } from '../src/run/execute.js';

/**
 * Grouped convolutions (Keras Conv2D with groups > 1: keras.applications RegNet; ONNX Conv with 1 < group <
 * channels: torchvision ResNeXt / RegNet) as compress's GroupedConv2D: the kernel PyTorch and Keras store
 * ([kh, kw, C / groups, O]), not a block-diagonal [kh, kw, C, O] full of zeros.
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-grouped-'));
const ONNX = join(dir, 'resnext_mini-13.onnx');

before(async () => {
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/torch_export.py'), dir, 'resnext_mini:13:dynamic'], { timeout: 300_000 });
});

type LayerClass = new (config: object) => tfType.layers.Layer;
const registered = (name: string) => (tf.serialization.SerializationMap.getMap().classNameMap as unknown as Record<string, [LayerClass]>)[name][0];

/**
 * conv 3->C, grouped 3x3 C->1.5C in `groups` groups, ReLU, dense: a small model with one GroupedConv2D, seeded weights.
 * Narrow groups (8 channels in 4) run as a depthwise conv and a sum, wide ones (80 in 2) as a conv per group.
 */
function groupedModel(channels = 8, groups = 4): tfType.LayersModel {
  const input = tf.input({ shape: [7, 6, 3] });
  const stem = tf.layers.conv2d({ filters: channels, kernelSize: 1, name: 'stem' }).apply(input) as tfType.SymbolicTensor;
  const GroupedConv2D = registered('GroupedConv2D');
  const grouped = new GroupedConv2D({ filters: channels * 1.5, kernelSize: 3, padding: 'same', strides: 2, groups, name: 'grouped' });
  const y = tf.layers.reLU({ name: 'relu' }).apply(grouped.apply(stem)) as tfType.SymbolicTensor;
  const out = tf.layers.dense({ units: 5, name: 'head' }).apply(tf.layers.flatten().apply(y)) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: out });
  model.setWeights(model.getWeights().map((w, i) => tf.randomNormal(w.shape, 0, 0.5, 'float32', 11 + i)));
  return model;
}

/** The same grouped conv as an ordinary Conv2D whose kernel is block-diagonal over the groups (zeros across them). */
function blockDiagonal(kernel: tfType.Tensor, groups: number): tfType.Tensor4D {
  const [kh, kw, cg, O] = kernel.shape as number[];
  const C = cg * groups;
  const og = O / groups;
  const src = kernel.dataSync();
  const out = new Float32Array(kh * kw * C * O);
  for (let p = 0; p < kh * kw; p++) {
    for (let i = 0; i < cg; i++) {
      for (let o = 0; o < O; o++) out[(p * C + Math.floor(o / og) * cg + i) * O + o] = src[(p * cg + i) * O + o];
    }
  }
  return tf.tensor4d(out, [kh, kw, C, O]);
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst <= tol ? undefined : `max |diff| ${worst}`;
};

for (const [channels, groups] of [[8, 4], [80, 2]]) {
  test(`GroupedConv2D (${groups} groups of ${channels / groups} channels) computes the block-diagonal convolution, storing only each group's filters`, () => {
    const model = groupedModel(channels, groups);
    const layer = model.getLayer('grouped');
    const [kernel, bias] = layer.getWeights();
    assert.deepEqual(kernel.shape, [3, 3, channels / groups, channels * 1.5]);
    const x = tf.randomNormal([3, 7, 6, 3], 0, 1, 'float32', 3);
    const stem = (model.getLayer('stem').apply(x) as tfType.Tensor4D);
    const got = (layer.apply(stem) as tfType.Tensor).dataSync();
    const want = tf.add(tf.conv2d(stem, blockDiagonal(kernel, groups), 2, 'same'), bias).dataSync();
    assert.equal(close(got, want, 1e-4), undefined);
    const plan = inferencePlan(tf, model);
    try {
      assert.deepEqual(plan.fused.map((f) => [f.conv, f.activation]), [['grouped', 'relu']]);
      const predicted = (model.predict(x) as tfType.Tensor).dataSync();
      const scale = Math.max(...Array.from(predicted, Math.abs));
      assert.equal(close(plan.predict(x).dataSync(), predicted, 1e-5 * scale), undefined, 'the inference plan');
    } finally {
      plan.dispose();
    }
  });
}

test('a Keras Conv2D with groups > 1 loads from .h5 and .keras as GroupedConv2D with the same outputs', async () => {
  const model = groupedModel();
  const x = tf.randomNormal([4, 7, 6, 3], 0, 1, 'float32', 5);
  const want = (model.predict(x) as tfType.Tensor).dataSync();
  for (const [file, bytes] of [['g.h5', await writeKeras2H5(model)], ['g.keras', await writeKeras3(model)]] as const) {
    writeFileSync(join(dir, file), bytes);
    const loaded = await loadModelFrom(tf, join(dir, file));
    assert.equal(loaded.getLayer('grouped').getClassName(), 'GroupedConv2D', file);
    assert.equal(loaded.getLayer('grouped').getConfig().groups, 4);
    assert.equal(close((loaded.predict(x) as tfType.Tensor).dataSync(), want, 1e-5), undefined, file);
  }
});

test('an ONNX ResNeXt block imports its grouped convs with the weights PyTorch counts and onnxruntime\'s outputs', async () => {
  const { model, reference, info } = await importOnnx(tf, ONNX);
  const { convWeights } = JSON.parse(readFileSync(ONNX.replace(/\.onnx$/, '.json'), 'utf8')) as { convWeights: number };
  const convs = model.layers.filter((l) => ['Conv2D', 'GroupedConv2D'].includes(l.getClassName()));
  const kernels = convs.reduce((a, l) => a + l.getWeights()[0].size, 0);
  assert.equal(kernels, convWeights);
  assert.equal(model.layers.filter((l) => l.getClassName() === 'GroupedConv2D').length, 2);
  const shape = model.inputs[0].shape.slice(1) as number[];
  const check = await checkImport(tf, reference, info, ONNX, randomInputs(shape, 2, 5), 2, { inputs: 'random' });
  assert.ok(check.passed, JSON.stringify(check));
  assert.ok(check.outputScale > 1e-3, `outputs are not all near zero: ${check.outputScale}`);
  model.dispose();
});

test("a grouped conv's multiply-adds count each group's filters only", async () => {
  const model = groupedModel();
  const s = layerStats(model.getLayer('grouped'));
  // 4x3 output positions, 12 filters of 3x3x2.
  assert.equal(s.macs, 4 * 3 * 12 * 3 * 3 * 2);
});

test('the inference plan runs a grouped conv fused with its ReLU as model.predict does', async () => {
  const { model } = await importOnnx(tf, ONNX);
  const shape = model.inputs[0].shape.slice(1) as number[];
  const x = tf.tensor(randomInputs(shape, 3, 7), [3, ...shape]);
  const plan = inferencePlan(tf, model);
  try {
    const fusedGrouped = plan.fused.filter((f) => model.getLayer(f.conv).getClassName() === 'GroupedConv2D' && f.activation);
    assert.equal(fusedGrouped.length, 2, JSON.stringify(plan.fused));
    const want = (model.predict(x) as tfType.Tensor).dataSync();
    const got = plan.predict(x).dataSync();
    const scale = Math.max(...Array.from(want, Math.abs));
    assert.equal(close(got, want, 1e-5 * scale), undefined);
  } finally {
    plan.dispose();
    model.dispose();
  }
});

test('a grouped conv trains: a gradient step changes its kernel', async () => {
  const model = groupedModel();
  const before = model.getLayer('grouped').getWeights()[0].dataSync().slice();
  model.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
  await model.fit(tf.randomNormal([8, 7, 6, 3], 0, 1, 'float32', 1), tf.randomNormal([8, 5], 0, 1, 'float32', 2), { epochs: 1, batchSize: 8, verbose: 0 });
  const after = model.getLayer('grouped').getWeights()[0].dataSync();
  assert.ok(after.some((v, i) => v !== before[i]), 'the kernel did not change');
});

for (const [target, precision] of [['tflite', 'float32'], ['tflite', 'int8'], ['tflite', 'dynamic-int8'], ['onnx', 'float32'], ['onnx', 'int8'], ['tfjs', 'float32']] as const) {
  test(`an imported ResNeXt block exports to ${target} ${precision} and agrees in its runtime`, async () => {
    const { model } = await importOnnx(tf, ONNX);
    try {
      const shape = model.inputs[0].shape.slice(1) as number[];
      const n = 48;
      const x = randomInputs(shape, n, 9);
      const y = Int32Array.from((tf.tidy(() => (model.predict(tf.tensor(x, [n, ...shape])) as tfType.Tensor).argMax(-1)) as tfType.Tensor).dataSync());
      const out = join(dir, `resnext-${target}-${precision}`);
      const res = await exportModel(tf, model, emptyMeta(), { target, precision, calibration: randomInputs(shape, 32, 3) }, out);
      const v = await verifyExport(tf, { target, precision, dir: out, files: res.files }, model, { x, y, n, sampleShape: shape, numClasses: 10 });
      assert.ok(v.agreement >= 0.95, JSON.stringify(v));
      if (target === 'tflite') {
        const file = readTflite(readFileSync(join(out, res.files[0])));
        const conv = file.operators.filter((o) => o.code === Op.CONV_2D).map((o) => o.version);
        assert.ok(conv.includes(6), `CONV_2D versions ${conv.join(', ')}: a grouped conv is version 6`);
      }
    } finally {
      model.dispose();
    }
  });
}

test('a narrow grouped conv trains as a conv per group (no depthwise intermediate on the tape) and infers as one depthwise conv, computing the same', async () => {
  const layer = groupedModel(8, 4).getLayer('grouped');
  const x = tf.randomNormal([2, 7, 6, 8], 0, 1, 'float32', 4);
  const kernels = async (training: boolean) => {
    let out: Float32Array | undefined;
    const info = await tf.profile(() => {
      out = (layer.apply(x, { training }) as tfType.Tensor).dataSync() as Float32Array;
    });
    return { names: new Set(info.kernelNames), out: out! };
  };
  const train = await kernels(true);
  const infer = await kernels(false);
  assert.ok(!train.names.has('DepthwiseConv2dNative') && train.names.has('Conv2D'), [...train.names].join(', '));
  assert.ok(infer.names.has('DepthwiseConv2dNative'), [...infer.names].join(', '));
  assert.equal(close(train.out, infer.out, 1e-4), undefined);
});

test("a plain TF.js app loads a grouped-conv model's TF.js export after registerCustomLayers from '@compress-ml/compress/tfjs-layers', and not before", async () => {
  const model = groupedModel();
  const out = join(dir, 'app-tfjs');
  await exportModel(tf, model, emptyMeta(), { target: 'tfjs', precision: 'float32' }, out);
  // A separate process with only @tensorflow/tfjs (cpu backend) and, when asked, compress's registration entry point.
  const app = `
    import * as tf from '@tensorflow/tfjs';
    import { readFileSync } from 'node:fs';
    const dir = process.argv[2];
    if (process.argv[3] === 'register') (await import('@compress-ml/compress/tfjs-layers')).registerCustomLayers(tf);
    const json = JSON.parse(readFileSync(dir + '/model.json', 'utf8'));
    const weights = readFileSync(dir + '/' + json.weightsManifest[0].paths[0]);
    const m = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights, weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.length) }));
    console.log(m.getLayer('grouped').getClassName(), m.predict(tf.ones([1, 7, 6, 3])).shape.join('x'));`;
  // The app's own directory, with compress and tfjs installed (linked) in its node_modules, as a user's app has them.
  const appDir = join(dir, 'app');
  mkdirSync(join(appDir, 'node_modules', '@compress-ml'), { recursive: true });
  symlinkSync(ROOT, join(appDir, 'node_modules', '@compress-ml', 'compress'));
  symlinkSync(join(ROOT, 'node_modules', '@tensorflow'), join(appDir, 'node_modules', '@tensorflow'));
  writeFileSync(join(appDir, 'app.mjs'), app);
  const run = (mode: string) => execa('node', ['app.mjs', out, mode], { cwd: appDir, reject: false });
  const registered = await run('register');
  assert.equal(registered.exitCode, 0, registered.stderr);
  assert.match(registered.stdout, /GroupedConv2D 1x5/);
  const plain = await run('plain');
  assert.notEqual(plain.exitCode, 0);
  assert.match(plain.stderr, /Unknown layer: GroupedConv2D/);
});

test('structured pruning stops before any training at a grouped conv and its producers, saying why', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-grouped-structured-'));
  const n = 24;
  writeFileSync(join(ws, 'model.onnx'), readFileSync(ONNX));
  writeFileSync(join(ws, 'x.npy'), encodeNpy(Float32Array.from(randomInputs([3, 24, 24], n, 2)), [n, 3, 24, 24], 'f4'));
  writeFileSync(join(ws, 'y.npy'), encodeNpy(Int32Array.from({ length: n }, (_, i) => i % 10), [n], 'i4'));
  writeFileSync(join(ws, 'compress.config.yaml'), `version: 1
data:
  mine: { source: files, features: x.npy, labels: y.npy, layout: nchw, numClasses: 10, split: { train: 0.5, validation: 0.25, test: 0.25 } }
stages:
  model: { uses: load, with: { path: model.onnx } }
  pruned: { uses: prune, needs: [model], with: { method: structured, sparsity: 0.25, train: { epochs: 1 } } }
`);
  const s = await runRecipe(loadRecipe(join(ws, 'compress.config.yaml')));
  const pruned = s.stages.find((x) => x.id === 'pruned')!;
  assert.equal(pruned.status, 'failed');
  assert.match(pruned.reason, /cannot remove units of 3\.conv2 \(GroupedConv2D\)/);
  assert.match(pruned.reason, /a grouped conv \(GroupedConv2D\) keeps equal channel groups, so neither its filters nor its input channels can go/);
  assert.match(pruned.reason, /nothing was pruned or trained/);
});
