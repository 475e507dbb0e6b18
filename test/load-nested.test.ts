import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { InputError } from '../src/errors/input-error.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { loadKerasJsonWithWeights } from '../src/model/load/keras.js';
import { teachableMachine, transferLearning, weightsByPath } from './fixtures/nested-models.js';
import { writeKeras2H5, writeKeras2Weights, writeKeras3 } from './fixtures/keras-writer.js';

const { tf } = await initEngine('wasm');

/** The files tfjs-layers (4.22) `model.save()` writes: model.json + weights.bin (as Teachable Machine's download holds). */
async function saveTfjs(model: tfType.LayersModel): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'compress-nested-'));
  await model.save(tf.io.withSaveHandler(async (a) => {
    const { weightData, ...rest } = a;
    const json = { modelTopology: rest.modelTopology, format: 'layers-model', generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`, convertedBy: null, weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }] };
    writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
    writeFileSync(join(dir, 'weights.bin'), new Uint8Array(weightData as ArrayBuffer));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  return dir;
}

/** Flat, path-named, bit-identical and computing the same function as the nested source. */
function assertFlattened(source: tfType.LayersModel, loaded: tfType.LayersModel, expectNames: string[]): void {
  assert.ok(!loaded.layers.some((l) => Array.isArray((l as unknown as { layers?: unknown }).layers)), 'a nested model is left');
  const names = loaded.layers.map((l) => l.name);
  for (const n of expectNames) assert.ok(names.includes(n), `no layer ${n} in ${names.join(', ')}`);
  const want = weightsByPath(source);
  const got = weightsByPath(loaded);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [k, ws] of want) {
    const g = got.get(k)!;
    assert.equal(g.length, ws.length, k);
    ws.forEach((w, i) => assert.ok(Buffer.from(w.buffer).equals(Buffer.from(g[i].buffer)), `${k} weight ${i} differs`));
  }
  const x = tf.randomUniform([3, 28, 28, 1], 0, 1, 'float32', 2);
  const a = (source.predict(x) as tfType.Tensor).dataSync();
  const b = (loaded.predict(x) as tfType.Tensor).dataSync();
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-6, `output ${i}: ${a[i]} vs ${b[i]}`);
}

const TM_NAMES = ['sequential_1/model1/Conv1', 'sequential_1/model1/block_2_add', 'sequential_1/global_average_pooling2d_GlobalAveragePooling2D1', 'sequential_3/dense_Dense2'];

test('a Teachable-Machine-style TF.js model (Sequential[Sequential[Functional]] + Sequential[Dense]) loads as one flat graph', async () => {
  const source = teachableMachine(tf);
  const loaded = await loadModelFrom(tf, await saveTfjs(source));
  assertFlattened(source, loaded, TM_NAMES);
});

test('the Teachable Machine model as Keras 2 .h5 and Keras 3 .keras loads as one flat graph', async () => {
  const source = teachableMachine(tf);
  const dir = mkdtempSync(join(tmpdir(), 'compress-nested-'));
  writeFileSync(join(dir, 'keras_model.h5'), await writeKeras2H5(source, { kerasVersion: '2.15.0' }));
  writeFileSync(join(dir, 'model.keras'), await writeKeras3(source));
  for (const f of ['keras_model.h5', 'model.keras']) assertFlattened(source, await loadModelFrom(tf, join(dir, f)), TM_NAMES);
});

test('a transfer-learning Functional model on a keras.applications-style base loads flat as .h5, .keras and TF.js', async () => {
  const source = transferLearning(tf);
  const dir = mkdtempSync(join(tmpdir(), 'compress-nested-'));
  writeFileSync(join(dir, 'model.h5'), await writeKeras2H5(source));
  writeFileSync(join(dir, 'model.keras'), await writeKeras3(source));
  const names = ['mobilenetv2_0.35/Conv1', 'mobilenetv2_0.35/block_1_pad', 'mobilenetv2_0.35/out_relu', 'dense'];
  for (const f of ['model.h5', 'model.keras']) assertFlattened(source, await loadModelFrom(tf, join(dir, f)), names);
  assertFlattened(source, await loadModelFrom(tf, await saveTfjs(source)), names);
});

test('a .keras saved by Keras 2.13-2.15 on Windows (backslash weight paths: layers\\dense/vars/0) loads', async () => {
  const source = transferLearning(tf);
  const dir = mkdtempSync(join(tmpdir(), 'compress-nested-'));
  writeFileSync(join(dir, 'win.keras'), await writeKeras3(source, { kerasVersion: '2.15.0', windows: true }));
  assertFlattened(source, await loadModelFrom(tf, join(dir, 'win.keras')), ['mobilenetv2_0.35/Conv1', 'dense']);
});

test("Keras's to_json() + save_weights() pair loads with with.weights; the JSON alone is named as Keras architecture JSON", async () => {
  const source = teachableMachine(tf);
  const dir = mkdtempSync(join(tmpdir(), 'compress-nested-'));
  const { json, weights } = await writeKeras2Weights(source);
  writeFileSync(join(dir, 'model.json'), json);
  writeFileSync(join(dir, 'weights.h5'), weights);
  assertFlattened(source, await loadKerasJsonWithWeights(tf, join(dir, 'model.json'), join(dir, 'weights.h5')), TM_NAMES);
  await assert.rejects(loadModelFrom(tf, join(dir, 'model.json')), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /this is Keras architecture JSON \(model\.to_json\(\)\) without its weights/);
    assert.match(e.message, /load: \{ path: model\.json, weights: weights\.h5 \}/);
    return true;
  });
});

test('compress layers and compress init work on a nested (Teachable Machine) model: path-named layers, a recipe that validates', async () => {
  const { cli } = await import('./helpers.js');
  const dir = await saveTfjs(teachableMachine(tf));
  const layers = await cli(['layers', join(dir, 'model.json'), '--json'], dir);
  assert.equal(layers.exitCode, 0, layers.stderr);
  const names = (JSON.parse(layers.stdout) as { layers?: Array<{ name: string }> } | Array<{ name: string }>);
  const list = Array.isArray(names) ? names : names.layers ?? [];
  for (const n of TM_NAMES) assert.ok(list.some((l) => l.name === n), `${n} not in ${layers.stdout.slice(0, 300)}`);
  const init = await cli(['init', 'model.json'], dir);
  assert.equal(init.exitCode, 0, init.stderr);
  const validate = await cli(['validate'], dir);
  assert.equal(validate.exitCode, 0, validate.stderr + validate.stdout);
});
