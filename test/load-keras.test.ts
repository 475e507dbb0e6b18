import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { InputError } from '../src/errors/input-error.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { kerasConfigToTfjs } from '../src/model/load/keras.js';
import { writeZip } from '../src/model/load/zip.js';
import { buildH5File } from '../src/model/load/h5.js';
import { kerasModelConfig, writeKeras2H5, writeKeras3 } from './fixtures/keras-writer.js';

const { tf } = await initEngine('cpu');
const dir = mkdtempSync(join(tmpdir(), 'compress-load-keras-'));

/** Random non-default BN statistics, so a wrong weight order cannot go unnoticed. */
function randomiseBatchNorm(model: tfType.LayersModel, seed: number): void {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (const l of model.layers) {
    if (l.getClassName() !== 'BatchNormalization') continue;
    const ws = l.getWeights().map((w, i) => {
      const n = w.size;
      const v = new Float32Array(n).map(() => (i === 3 ? 0.5 + rnd() : rnd() * 2 - 1)); // gamma, beta, mean, var>0
      return tf.tensor(v, w.shape);
    });
    l.setWeights(ws);
  }
}

function inputs(shape: number[], n: number, seed: number): tfType.Tensor {
  let s = seed;
  const size = n * shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(size).map(() => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1);
  return tf.tensor(v, [n, ...shape]);
}

async function assertSameOutputs(a: tfType.LayersModel, b: tfType.LayersModel, shape: number[]): Promise<void> {
  const x = inputs(shape, 3, 7);
  const ya = (a.predict(x) as tfType.Tensor).dataSync();
  const yb = (b.predict(x) as tfType.Tensor).dataSync();
  assert.equal(ya.length, yb.length);
  let maxDiff = 0;
  for (let i = 0; i < ya.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ya[i] - yb[i]));
  assert.ok(maxDiff <= 1e-6, `outputs differ by ${maxDiff}`);
  x.dispose();
}

/** A functional model with every layer class the loader promises (besides those in lenet-5/dw-cnn). */
function zooModel(): tfType.LayersModel {
  const L = tf.layers;
  const inp = tf.input({ shape: [8, 8, 3], name: 'img' });
  const a = L.separableConv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'sep', activation: 'relu' }).apply(inp) as tfType.SymbolicTensor;
  const b = L.conv2d({ filters: 4, kernelSize: 1, name: 'proj' }).apply(inp) as tfType.SymbolicTensor;
  let x = L.add({ name: 'res_add' }).apply([a, b]) as tfType.SymbolicTensor;
  x = L.activation({ activation: 'tanh', name: 'act' }).apply(x) as tfType.SymbolicTensor;
  const p1 = L.averagePooling2d({ poolSize: 2, name: 'avg' }).apply(x) as tfType.SymbolicTensor;
  const p2 = L.maxPooling2d({ poolSize: 2, name: 'max' }).apply(x) as tfType.SymbolicTensor;
  x = L.concatenate({ axis: -1, name: 'cat' }).apply([p1, p2]) as tfType.SymbolicTensor;
  x = L.batchNormalization({ name: 'bn' }).apply(x) as tfType.SymbolicTensor;
  x = L.reLU({ name: 'relu' }).apply(x) as tfType.SymbolicTensor;
  x = L.flatten({ name: 'flat' }).apply(x) as tfType.SymbolicTensor;
  x = L.reshape({ targetShape: [16, 8], name: 'reshape' }).apply(x) as tfType.SymbolicTensor;
  x = L.flatten({ name: 'flat_2' }).apply(x) as tfType.SymbolicTensor;
  x = L.dropout({ rate: 0.3, name: 'drop' }).apply(x) as tfType.SymbolicTensor;
  x = L.dense({ units: 5, activation: 'softmax', name: 'out' }).apply(x) as tfType.SymbolicTensor;
  return tf.model({ inputs: inp, outputs: x, name: 'zoo' });
}

function sequentialModel(): tfType.Sequential {
  const m = tf.sequential({ name: 'seq' });
  m.add(tf.layers.dense({ units: 6, activation: 'relu', inputShape: [10], name: 'fc1' }));
  m.add(tf.layers.dropout({ rate: 0.5, name: 'do' }));
  m.add(tf.layers.dense({ units: 3, activation: 'softmax', name: 'fc2' }));
  return m;
}

const cases: Array<{ name: string; shape: number[]; make: () => tfType.LayersModel }> = [
  { name: 'lenet-5', shape: [28, 28, 1], make: () => buildModel(tf, 'lenet-5', { inputShape: [28, 28, 1], numClasses: 10, seed: 3 }) },
  { name: 'dw-cnn', shape: [28, 28, 1], make: () => buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 5 }) },
  { name: 'zoo', shape: [8, 8, 3], make: zooModel },
  { name: 'sequential', shape: [10], make: sequentialModel },
];

for (const c of cases) {
  test(`keras .h5 and .keras round trip: ${c.name}`, async () => {
    const model = c.make();
    randomiseBatchNorm(model, 11);
    const h5 = join(dir, `${c.name}.h5`);
    writeFileSync(h5, await writeKeras2H5(model));
    const fromH5 = await loadModelFrom(tf, h5);
    await assertSameOutputs(model, fromH5, c.shape);

    const k3 = join(dir, `${c.name}.keras`);
    writeFileSync(k3, await writeKeras3(model, { deflate: c.name === 'dw-cnn' }));
    const fromK3 = await loadModelFrom(tf, k3);
    await assertSameOutputs(model, fromK3, c.shape);
    assert.deepEqual(fromK3.layers.filter((l) => l.weights.length).map((l) => l.name), model.layers.filter((l) => l.weights.length).map((l) => l.name));
  });
}

test('.keras with weights keyed by layer name also loads', async () => {
  const model = cases[1].make();
  randomiseBatchNorm(model, 2);
  const p = join(dir, 'byname.keras');
  writeFileSync(p, await writeKeras3(model, { keyByName: true }));
  await assertSameOutputs(model, await loadModelFrom(tf, p), [28, 28, 1]);
});

test('corrupt and truncated .h5 give InputError naming the file', async () => {
  const model = cases[0].make();
  const bytes = await writeKeras2H5(model);
  const truncated = join(dir, 'trunc.h5');
  writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await assert.rejects(loadModelFrom(tf, truncated), (e: unknown) => e instanceof InputError && e.file === truncated && e.message.includes(truncated));
  const junk = join(dir, 'junk.h5');
  writeFileSync(junk, Buffer.from('this is not hdf5 at all'));
  await assert.rejects(loadModelFrom(tf, junk), (e: unknown) => e instanceof InputError && /not an HDF5 file/.test(e.message) && e.message.includes(junk));
  const scrambled = new Uint8Array(bytes);
  for (let i = 200; i < scrambled.length; i += 3) scrambled[i] ^= 0x5a;
  const scr = join(dir, 'scrambled.h5');
  writeFileSync(scr, scrambled);
  await assert.rejects(loadModelFrom(tf, scr), (e: unknown) => e instanceof InputError && e.message.includes(scr));
  // h5wasm still works afterwards
  const ok = join(dir, 'ok.h5');
  writeFileSync(ok, bytes);
  (await loadModelFrom(tf, ok)).dispose();
});

test('corrupt .keras zip gives InputError naming the file', async () => {
  const bytes = await writeKeras3(cases[3].make());
  const p = join(dir, 'trunc.keras');
  writeFileSync(p, bytes.subarray(0, bytes.length - 40));
  await assert.rejects(loadModelFrom(tf, p), (e: unknown) => e instanceof InputError && e.message.includes(p));
  const noCfg = join(dir, 'nocfg.keras');
  writeFileSync(noCfg, writeZip([{ name: 'x.txt', data: new Uint8Array([1]) }]));
  await assert.rejects(loadModelFrom(tf, noCfg), /config\.json/);
});

test('unsupported layer class names the layer and class', async () => {
  const config = kerasModelConfig(cases[3].make(), false);
  config.config.layers[1].class_name = 'LSTM';
  assert.throws(() => kerasConfigToTfjs(config, 'm.h5'), (e: unknown) => e instanceof InputError && e.layer === 'fc1' && /'LSTM'/.test(e.message) && e.message.includes('m.h5'));
  // and through a file
  const bytes = await buildH5File((f) => {
    f.create_attribute('model_config', JSON.stringify(config), null, `A${JSON.stringify(config).length}`);
    f.create_group('model_weights');
  });
  const p = join(dir, 'lstm.h5');
  writeFileSync(p, bytes);
  await assert.rejects(loadModelFrom(tf, p), (e: unknown) => e instanceof InputError && e.layer === 'fc1');
});

test('weights-only .h5 and NaN weights', async () => {
  const model = cases[3].make();
  const w = model.getLayer('fc2').getWeights();
  const k = w[0].dataSync().slice();
  k[4] = NaN;
  model.getLayer('fc2').setWeights([tf.tensor(k, w[0].shape), w[1]]);
  const p = join(dir, 'nan.h5');
  writeFileSync(p, await writeKeras2H5(model));
  await assert.rejects(loadModelFrom(tf, p), (e: unknown) => e instanceof InputError && e.layer === 'fc2' && /fc2\/kernel:0/.test(e.message));
  const wo = join(dir, 'weights-only.h5');
  writeFileSync(wo, await buildH5File((f) => f.create_attribute('layer_names', ['a'], [1], 'A1')));
  await assert.rejects(loadModelFrom(tf, wo), /only weights/);
});

test('Keras Normalization (mean/variance weights) loads from .h5 and .keras and computes (x - mean) / sqrt(variance)', async () => {
  const Normalization = tf.serialization.SerializationMap.getMap().classNameMap.Normalization[0] as unknown as new (a: object) => tfType.layers.Layer;
  const mean = [0.5, -1, 2, 0];
  const variance = [4, 0.25, 1, 9];
  const input = tf.input({ shape: [4], name: 'input' });
  const y = new Normalization({ mean, variance, name: 'normalization' }).apply(input) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.glorotUniform({ seed: 4 }), name: 'fc' }).apply(y) as tfType.SymbolicTensor });
  const h5 = join(dir, 'normalization.h5');
  writeFileSync(h5, await writeKeras2H5(model));
  const k3 = join(dir, 'normalization.keras');
  writeFileSync(k3, await writeKeras3(model));
  for (const file of [h5, k3]) {
    const loaded = await loadModelFrom(tf, file);
    const norm = loaded.layers.find((l) => l.name === 'normalization')!;
    assert.equal(norm.getClassName(), 'Normalization', file);
    const x = tf.tensor2d([[1, 2, 3, 4]]);
    const got = (tf.model({ inputs: loaded.inputs, outputs: norm.output as tfType.SymbolicTensor }).predict(x) as tfType.Tensor).dataSync();
    const want = [1, 2, 3, 4].map((v, i) => (v - mean[i]) / Math.sqrt(variance[i]));
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `${file}: ${i}: ${got[i]} vs ${want[i]}`);
    await assertSameOutputs(model, loaded, [4]);
  }
});

test("hard_sigmoid means what the Keras version that wrote the file meant: clip(0.2x + 0.5) in Keras 2, relu6(x + 3) / 6 in Keras 3", async () => {
  const input = tf.input({ shape: [1] });
  const dense = tf.layers.dense({ units: 1, activation: 'hardSigmoid', name: 'gate' });
  const model = tf.model({ inputs: input, outputs: dense.apply(input) as tfType.SymbolicTensor });
  dense.setWeights([tf.tensor2d([[1]]), tf.tensor1d([0])]);
  const z = [-4, -2, -1, 0, 1, 2, 4];
  const x = tf.tensor2d(z, [z.length, 1]);
  const run = async (file: string, bytes: Uint8Array) => {
    writeFileSync(join(dir, file), bytes);
    const m = await loadModelFrom(tf, join(dir, file));
    return Array.from((m.predict(x) as tfType.Tensor).dataSync());
  };
  const keras2 = await run('hs2.h5', await writeKeras2H5(model, { kerasVersion: '2.15.0' }));
  const keras3 = await run('hs3.keras', await writeKeras3(model, { kerasVersion: '3.3.3' }));
  const close = (a: number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]) < 1e-6);
  assert.ok(close(keras2, z.map((v) => Math.min(1, Math.max(0, 0.2 * v + 0.5)))), `Keras 2: ${keras2}`);
  assert.ok(close(keras3, z.map((v) => Math.min(6, Math.max(0, v + 3)) / 6)), `Keras 3: ${keras3}`);
});
