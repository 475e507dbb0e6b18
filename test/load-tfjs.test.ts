import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, unlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { InputError } from '../src/errors/input-error.js';
import { saveModelDir } from '../src/model/io.js';
import { emptyMeta } from '../src/model/meta.js';
import { loadModelFrom } from '../src/model/load/index.js';

const { tf } = await initEngine('cpu');
const root = mkdtempSync(join(tmpdir(), 'compress-load-tfjs-'));
let n = 0;

const model = buildModel(tf, 'mlp-small', { inputShape: [6, 6, 1], numClasses: 4, seed: 9 });

async function freshDir(): Promise<string> {
  const dir = join(root, `m${n++}`);
  await saveModelDir(tf, model, emptyMeta(), dir);
  return dir;
}

function readJson(dir: string): any {
  return JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
}

function assertSame(a: tfType.LayersModel, b: tfType.LayersModel): void {
  const x = tf.randomUniform([3, 6, 6, 1], -1, 1, 'float32', 4);
  const ya = (a.predict(x) as tfType.Tensor).dataSync();
  const yb = (b.predict(x) as tfType.Tensor).dataSync();
  for (let i = 0; i < ya.length; i++) assert.ok(Math.abs(ya[i] - yb[i]) <= 1e-6);
}

function isInputError(file: string, re?: RegExp, layer?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof InputError, `not an InputError: ${e}`);
    assert.ok(e.message.includes(file), `message does not name ${file}: ${e.message}`);
    if (re) assert.match(e.message, re);
    if (layer) assert.equal(e.layer, layer);
    return true;
  };
}

/** The byte offset of weight `name` in the concatenated shards. */
function offsetOf(json: any, name: string): number {
  let off = 0;
  for (const w of json.weightsManifest[0].weights) {
    if (w.name === name) return off;
    off += 4 * w.shape.reduce((a: number, b: number) => a * b, 1);
  }
  throw new Error(name);
}

test('tfjs dir and model.json round trip, including several shards', async () => {
  const dir = await freshDir();
  assertSame(model, await loadModelFrom(tf, dir));
  assertSame(model, await loadModelFrom(tf, join(dir, 'model.json')));
  // split weights.bin into three shards
  const bin = readFileSync(join(dir, 'weights.bin'));
  const shard = Math.ceil(bin.length / 3);
  const names = ['group1-shard1of3.bin', 'group1-shard2of3.bin', 'group1-shard3of3.bin'];
  names.forEach((s, i) => writeFileSync(join(dir, s), bin.subarray(i * shard, (i + 1) * shard)));
  unlinkSync(join(dir, 'weights.bin'));
  const json = readJson(dir);
  json.weightsManifest[0].paths = names;
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  assertSame(model, await loadModelFrom(tf, dir));
  // the middle shard short: named, with expected vs actual bytes
  writeFileSync(join(dir, names[1]), bin.subarray(shard, 2 * shard - 10));
  await assert.rejects(loadModelFrom(tf, dir), isInputError(names[1], new RegExp(`${shard - 10} bytes, expected ${shard}`)));
  unlinkSync(join(dir, names[2]));
  await assert.rejects(loadModelFrom(tf, dir), isInputError(names[2], /missing/));
});

test('truncated, corrupt or topology-less model.json', async () => {
  const dir = await freshDir();
  const file = join(dir, 'model.json');
  const text = readFileSync(file, 'utf8');
  writeFileSync(file, text.slice(0, text.length / 2));
  await assert.rejects(loadModelFrom(tf, dir), isInputError(file, /not valid JSON/));
  writeFileSync(file, '');
  await assert.rejects(loadModelFrom(tf, dir), isInputError(file, /empty/));
  const json = JSON.parse(text);
  delete json.modelTopology;
  writeFileSync(file, JSON.stringify(json));
  await assert.rejects(loadModelFrom(tf, file), isInputError(file, /modelTopology/));
  writeFileSync(file, JSON.stringify({ ...JSON.parse(text), modelTopology: { class_name: 'Model', config: { layers: [{ class_name: 'Nope', config: {} }] } } }));
  await assert.rejects(loadModelFrom(tf, file), isInputError(file));
});

test('short single shard names the shard with expected vs actual bytes', async () => {
  const dir = await freshDir();
  const bin = join(dir, 'weights.bin');
  const bytes = readFileSync(bin);
  writeFileSync(bin, bytes.subarray(0, bytes.length - 100));
  await assert.rejects(loadModelFrom(tf, dir), isInputError(bin, new RegExp(`${bytes.length - 100} bytes, expected ${bytes.length}`)));
});

test('weight shape and count mismatches name the layer', async () => {
  const dir = await freshDir();
  const file = join(dir, 'model.json');
  const json = readJson(dir);
  const specs = json.weightsManifest[0].weights;
  const k = specs.find((w: any) => w.name === 'dense_2/kernel');
  k.shape = [k.shape[1], k.shape[0]];
  writeFileSync(file, JSON.stringify(json));
  await assert.rejects(loadModelFrom(tf, dir), isInputError(file, /dense_2\/kernel.*shape/, 'dense_2'));
  k.shape = [k.shape[1], k.shape[0]];
  // drop the last weight (dense_3/bias) and its bytes
  const last = specs.pop();
  assert.equal(last.name, 'dense_3/bias');
  writeFileSync(file, JSON.stringify(json));
  const bin = join(dir, 'weights.bin');
  const bytes = readFileSync(bin);
  writeFileSync(bin, bytes.subarray(0, bytes.length - 4 * last.shape[0]));
  await assert.rejects(loadModelFrom(tf, dir), isInputError(file, /dense_3\/bias/, 'dense_3'));
});

test('NaN and Inf weights are named by layer and weight', async () => {
  const dir = await freshDir();
  const json = readJson(dir);
  const bin = join(dir, 'weights.bin');
  const bytes = Buffer.from(readFileSync(bin));
  bytes.writeFloatLE(NaN, offsetOf(json, 'dense_2/kernel') + 4 * 7);
  writeFileSync(bin, bytes);
  await assert.rejects(loadModelFrom(tf, dir), isInputError(join(dir, 'model.json'), /dense_2\/kernel.*non-finite.*index 7/, 'dense_2'));
  bytes.writeFloatLE(3, offsetOf(json, 'dense_2/kernel') + 4 * 7);
  bytes.writeFloatLE(-Infinity, offsetOf(json, 'dense_3/bias'));
  writeFileSync(bin, bytes);
  await assert.rejects(loadModelFrom(tf, dir), isInputError(join(dir, 'model.json'), /dense_3\/bias/, 'dense_3'));
});

test('missing paths, empty dirs and unknown extensions', async () => {
  const missing = join(root, 'nope.h5');
  await assert.rejects(loadModelFrom(tf, missing), isInputError(missing, /no such file/));
  const empty = join(root, 'empty-dir');
  mkdirSync(empty);
  await assert.rejects(loadModelFrom(tf, empty), isInputError(empty, /no model.json/));
  const pt = join(root, 'model.pt');
  writeFileSync(pt, 'x');
  await assert.rejects(loadModelFrom(tf, pt), isInputError(pt, /unknown model file type '\.pt'/));
});
