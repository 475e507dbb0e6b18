import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { InputError } from '../src/errors/input-error.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { kerasConfigToTfjs } from '../src/model/load/keras.js';
import { writeKeras2H5Config, writeKeras3Config } from './fixtures/keras-writer.js';
import { mnv3Keras2, mnv3Keras3, mnv3Reference, mnv3Weights } from './fixtures/keras-mnv3.js';
import { cli, workspace } from './helpers.js';
import { loadMnist } from '../src/data/mnist.js';

const { tf } = await initEngine('cpu');
const dir = mkdtempSync(join(tmpdir(), 'compress-keras-ops-'));
const digits = loadMnist();
/** MNIST digits [n, 28, 28, 1] from `from`. */
const images = (from: number, n: number) => tf.tensor4d(digits.x.slice(from * 784, (from + n) * 784), [n, 28, 28, 1]);
const weights = mnv3Weights(tf, 3, images(1000, 200));

async function writeH5(): Promise<string> {
  const { config, layers } = mnv3Keras2(weights);
  const p = join(dir, 'mnv3.h5');
  writeFileSync(p, await writeKeras2H5Config(config, layers));
  return p;
}

async function writeKeras(): Promise<string> {
  const { config, weights: w } = mnv3Keras3(weights);
  const p = join(dir, 'mnv3.keras');
  writeFileSync(p, await writeKeras3Config(config, w));
  return p;
}

function assertComputesReference(model: tfType.LayersModel): void {
  const x = images(0, 32);
  const got = (model.predict(x) as tfType.Tensor).dataSync();
  const ref = mnv3Reference(tf, x, weights);
  const want = ref.dataSync();
  assert.equal(got.length, want.length);
  let maxDiff = 0;
  for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));
  assert.ok(maxDiff < 1e-5, `max |loaded - reference| = ${maxDiff}`);
  // Not a degenerate network: the reference predicts several classes.
  const classes = new Set(tf.argMax(ref, 1).dataSync());
  assert.ok(classes.size >= 4, `reference predicts ${classes.size} classes`);
}

const classOf = (m: tfType.LayersModel, name: string) => m.getLayer(name).getClassName();

test('tf.keras 2 MobileNetV3-style .h5 (TFOpLambda hard-sigmoid/hard-swish, GAP keepdims, names with /) computes the network', async () => {
  assertComputesReference(await loadModelFrom(tf, await writeH5()));
});

test('tf.keras 2 TFOpLambda ops become Rescaling, ReLU(6) and Multiply; GAP keepdims a pooling plus a Reshape keeping its name', async () => {
  const m = await loadModelFrom(tf, await writeH5());
  const cfg = (n: string) => m.getLayer(n).getConfig();
  assert.equal(classOf(m, 'tf.__operators__.add'), 'Rescaling');
  assert.deepEqual([cfg('tf.__operators__.add').scale, cfg('tf.__operators__.add').offset], [1, 3]);
  assert.deepEqual([cfg('tf.math.multiply').scale, cfg('tf.math.multiply').offset], [1 / 6, 0]);
  assert.deepEqual([cfg('tf.math.truediv').scale, cfg('tf.math.truediv').offset], [1 / 6, 0]);
  assert.equal(classOf(m, 'tf.math.multiply_1'), 'Multiply');
  assert.deepEqual([classOf(m, 'tf.nn.relu6'), cfg('tf.nn.relu6').maxValue], ['ReLU', 6]);
  assert.equal(classOf(m, 'expanded_conv/squeeze_excite/AvgPool'), 'Reshape');
  assert.equal(classOf(m, 'expanded_conv/squeeze_excite/AvgPool_pool'), 'GlobalAveragePooling2D');
  assert.deepEqual(m.getLayer('expanded_conv/squeeze_excite/AvgPool').outputShape, [null, 1, 1, 8]);
});

test('Keras 3 MobileNetV3-style .keras (keras.src.ops Add/Multiply/TrueDivide/Relu6, GAP keepdims) computes the network', async () => {
  const m = await loadModelFrom(tf, await writeKeras());
  assertComputesReference(m);
  assert.deepEqual([classOf(m, 'add'), classOf(m, 'multiply_1'), classOf(m, 'relu6'), classOf(m, 'true_divide')], ['Rescaling', 'Multiply', 'ReLU', 'Rescaling']);
});

test('tensor ⊕ number converts to Rescaling(scale, offset) whichever side the constant is on', () => {
  const op = (fn: string, node: unknown[]) => ({ class_name: 'TFOpLambda', config: { name: 'op', function: fn }, name: 'op', inbound_nodes: [node] });
  const model = (layer: object) => ({
    class_name: 'Functional',
    config: { name: 'm', layers: [{ class_name: 'InputLayer', config: { batch_input_shape: [null, 3], name: 'x' }, name: 'x', inbound_nodes: [] }, layer], input_layers: [['x', 0, 0]], output_layers: [['op', 0, 0]] },
  });
  const rescaling = (layer: object) => {
    const l = ((kerasConfigToTfjs(model(layer), 'm.h5').config as { layers: Array<{ class_name: string; config: Record<string, unknown> }> }).layers)[1];
    return [l.class_name, l.config.scale, l.config.offset];
  };
  assert.deepEqual(rescaling(op('math.subtract', ['x', 0, 0, { y: 2.5, name: null }])), ['Rescaling', 1, -2.5]);
  // 3 - x: tf.keras writes a constant first argument as ["_CONSTANT_VALUE", -1, value, kwargs].
  assert.deepEqual(rescaling(op('math.subtract', ['_CONSTANT_VALUE', -1, 3, { y: ['x', 0, 0], name: null }])), ['Rescaling', -1, 3]);
  assert.deepEqual(rescaling(op('math.truediv', ['x', 0, 0, { y: 4, name: null }])), ['Rescaling', 0.25, 0]);
  assert.deepEqual(rescaling(op('math.multiply', ['_CONSTANT_VALUE', -1, 2, { y: ['x', 0, 0], name: null }])), ['Rescaling', 2, 0]);
});

test('an unsupported TFOpLambda function fails naming the layer and the function', async () => {
  const { config, layers } = mnv3Keras2(weights);
  const gap = config.config.layers.find((l: { name: string }) => l.name === 'global_average_pooling2d');
  // tf.math.reduce_mean(x, axis=[1, 2], keepdims=True) instead of the pooling layer.
  Object.assign(gap, { class_name: 'TFOpLambda', config: { name: 'global_average_pooling2d', trainable: true, dtype: 'float32', function: 'math.reduce_mean' } });
  gap.inbound_nodes = [['multiply', 0, 0, { axis: [1, 2], keepdims: true }]];
  const p = join(dir, 'reduce-mean.h5');
  writeFileSync(p, await writeKeras2H5Config(config, layers));
  await assert.rejects(loadModelFrom(tf, p), (e: unknown) =>
    e instanceof InputError && e.layer === 'global_average_pooling2d' && /TFOpLambda function 'math\.reduce_mean' is not supported/.test(e.message) && e.message.includes(p));
});

test('a supported TFOpLambda function with arguments it does not convert fails naming them', () => {
  const { config } = mnv3Keras2(weights);
  const add = config.config.layers.find((l: { name: string }) => l.name === 'tf.__operators__.add');
  add.inbound_nodes = [['Conv/BatchNorm', 0, 0, { y: [[1, 2], [3, 4]], name: null }]];
  assert.throws(() => kerasConfigToTfjs(config, 'm.h5'), (e: unknown) =>
    e instanceof InputError && e.layer === 'tf.__operators__.add' && /'__operators__\.add': operand \[\[1,2\],\[3,4\]\] is not a number/.test(e.message));
});

test('an unsupported Keras 3 op fails naming the layer and the op', () => {
  const { config } = mnv3Keras3(weights);
  const div = config.config.layers.find((l: { name: string }) => l.name === 'true_divide');
  Object.assign(div, { class_name: 'Power', registered_name: 'Power' });
  assert.throws(() => kerasConfigToTfjs(config, 'm.keras'), (e: unknown) => e instanceof InputError && e.layer === 'true_divide' && /Keras op 'numpy\.Power' is not supported/.test(e.message));
});

test('the Reshape of GAP keepdims keeps the name; the pooling gets a name no other layer has', () => {
  const { config } = mnv3Keras2(weights);
  const layers = config.config.layers as Array<{ name: string; config: { name: string } }>;
  const relu = layers.find((l) => l.name === 're_lu_1')!;
  relu.name = relu.config.name = 'global_average_pooling2d_pool';
  for (const l of layers as unknown as Array<{ inbound_nodes: unknown[] }>) {
    l.inbound_nodes = JSON.parse(JSON.stringify(l.inbound_nodes).replaceAll('"re_lu_1"', '"global_average_pooling2d_pool"'));
  }
  const names = ((kerasConfigToTfjs(config, 'm.h5').config as { layers: Array<{ name: string; class_name: string }> }).layers).map((l) => `${l.name}:${l.class_name}`);
  assert.ok(names.includes('global_average_pooling2d_pool:ReLU'));
  assert.ok(names.includes('global_average_pooling2d_pool_1:GlobalAveragePooling2D'));
  assert.ok(names.includes('global_average_pooling2d:Reshape'));
});

test('recipe: tf.keras 2 MobileNetV3-style .h5 -> int8 -> TFLite and ONNX (int8 and float32), each verified in its runtime', async () => {
  const { dir: ws } = workspace(`version: 1
name: keras-mnv3
seed: 3
data:
  digits: { source: mnist, limit: 300 }
stages:
  model: { uses: load, with: { path: mnv3.h5 } }
  int8: { uses: quantize, needs: [model], with: { default: { method: linear, bits: 8 } } }
  ship:
    uses: export
    needs: [int8]
    with: { targets: [ { target: tflite, precision: int8 }, { target: onnx, precision: int8 } ] }
  float:
    uses: export
    needs: [model]
    with: { targets: [ { target: tflite, precision: float32 }, { target: onnx, precision: float32 } ] }
`);
  const { config, layers } = mnv3Keras2(weights);
  writeFileSync(join(ws, 'mnv3.h5'), await writeKeras2H5Config(config, layers));
  const r = await cli(['run', 'compress.config.yaml'], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  const reports = join(ws, '.compress/reports');
  const rep = JSON.parse(readFileSync(join(reports, readdirSync(reports).sort().at(-1)!, 'report.json'), 'utf8'));
  const exportsOf = (id: string) => {
    const st = rep.stages.find((s: { id: string }) => s.id === id);
    assert.equal(st.status, 'ran', JSON.stringify(st));
    return st.metrics.exports as Array<{ target: string; runtime: string; confidentSamples: number; confidentAgreement: number; maxAbsDiff: number }>;
  };
  // int8: both agree with the float model, in their runtimes, on the samples whose margin exceeds the quantization noise.
  assert.deepEqual(exportsOf('ship').map((e) => e.target).sort(), ['onnx', 'tflite']);
  for (const e of exportsOf('ship')) assert.ok(e.runtime && e.confidentSamples >= 10 && e.confidentAgreement === 1, JSON.stringify(e));
  // float32: the converted ops (Rescaling, ReLU(6), Multiply, pooling + Reshape) compute what tfjs computes.
  for (const e of exportsOf('float')) assert.ok(e.maxAbsDiff < 1e-4, JSON.stringify(e));
});
