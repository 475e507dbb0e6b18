/**
 * The CLI-level contract for bad models and data (the library-level errors are tested in
 * load-tfjs, load-keras and data-* tests): `compress run` on a recipe whose `load` stage or `data:`
 * entry points at a broken file exits 1 (a stage failed), names the file (and the layer where one
 * is at fault) and prints no stack trace unless --verbose.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { saveModelDir } from '../src/model/io.js';
import { emptyMeta } from '../src/model/meta.js';
import { encodeNpy } from '../src/data/npy.js';
import { EXIT } from '../src/exit-codes.js';
import { cli } from './helpers.js';

const { tf } = await initEngine('cpu');
const fixture = mkdtempSync(join(tmpdir(), 'compress-reliability-'));
// Four features, three classes: small enough that every run is quick.
const model = buildModel(tf, 'mlp-small', { inputShape: [4], numClasses: 3, seed: 5 });
await saveModelDir(tf, model, emptyMeta(), join(fixture, 'm'));
const modelJson = readFileSync(join(fixture, 'm', 'model.json'), 'utf8');
const weights = readFileSync(join(fixture, 'm', 'weights.bin'));
// One cache for all cases: the intact model's load stage runs once, later data cases reuse it.
const cache = join(fixture, 'cache');

const rows = Array.from({ length: 30 }, (_, i) => `${i % 5},${i % 3},${i % 7},${i % 2},${i % 3}`);
const csv = (body: string[]) => ['a,b,c,d,label', ...body].join('\n') + '\n';

const recipe = (data: string, path = 'm/model.json') => `version: 1
data:
  d: ${data}
stages:
  model: { uses: load, with: { path: ${path} } }
  eval: { uses: evaluate, needs: [model], with: { latencySamples: 0 } }
`;
const CSV_DATA = '{ source: files, features: data.csv, numClasses: 3 }';

/** Runs the recipe in a fresh workspace holding the intact model and data.csv, after `files` are written over them. */
async function run(files: Record<string, string | Uint8Array>, text = recipe(CSV_DATA), flags: string[] = []) {
  const ws = mkdtempSync(join(tmpdir(), 'compress-reliability-ws-'));
  cpSync(join(fixture, 'm'), join(ws, 'm'), { recursive: true });
  writeFileSync(join(ws, 'data.csv'), csv(rows));
  writeFileSync(join(ws, 'compress.config.yaml'), text);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(ws, name), content);
  return cli(['run', '--backend', 'cpu', '--cache-dir', cache, ...flags], ws);
}

type Result = Awaited<ReturnType<typeof run>>;

/** Exit code, the names the message must hold (file, layer), and no stack trace. */
function expectFailure(r: Result, code: number, ...names: Array<string | RegExp>): void {
  if (process.env.SHOW) console.log(r.stderr);
  const out = `exit ${r.exitCode}\n--- stderr\n${r.stderr}\n--- stdout\n${r.stdout}`;
  assert.equal(r.exitCode, code, out);
  for (const n of names) {
    if (typeof n === 'string') assert.ok(r.stderr.includes(n), `stderr does not name ${n}\n${out}`);
    else assert.match(r.stderr, n, out);
  }
  assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at /, out);
}

/** `weights` with NaN written into the first value of the named weight. */
function withNaN(weightName: string): Uint8Array {
  const manifest = JSON.parse(modelJson).weightsManifest[0].weights as Array<{ name: string; shape: number[] }>;
  let offset = 0;
  for (const w of manifest) {
    if (w.name === weightName) {
      const copy = new Uint8Array(weights);
      new DataView(copy.buffer).setFloat32(offset, NaN, true);
      return copy;
    }
    offset += 4 * w.shape.reduce((a, b) => a * b, 1);
  }
  throw new Error(`no weight ${weightName}`);
}

test('the intact model and data run (the cases below each break one thing)', async () => {
  const r = await run({});
  assert.equal(r.exitCode, EXIT.ok, r.stderr);
});

test('model.json truncated or not a model: names the file', async () => {
  expectFailure(await run({ 'm/model.json': modelJson.slice(0, modelJson.length >> 1) }), EXIT.stageFailed, 'model.json');
  const notModel = JSON.stringify({ format: 'layers-model', modelTopology: { class_name: 'Model', config: { layers: 'oops' } }, weightsManifest: [] });
  expectFailure(await run({ 'm/model.json': notModel }), EXIT.stageFailed, 'model.json');
});

test('a short weights shard names the shard', async () => {
  expectFailure(await run({ 'm/weights.bin': weights.subarray(0, weights.length - 100) }), EXIT.stageFailed, 'weights.bin');
});

test('NaN weights name the file and the layer', async () => {
  expectFailure(await run({ 'm/weights.bin': withNaN('dense_2/kernel') }), EXIT.stageFailed, 'model.json', "layer 'dense_2'");
});

test('a corrupt .h5 names the file', async () => {
  const junk = new Uint8Array(4096).map((_, i) => (i * 131 + 7) & 0xff);
  expectFailure(await run({ 'model.h5': junk }, recipe(CSV_DATA, 'model.h5')), EXIT.stageFailed, 'model.h5');
});

test('a truncated .npy names the file', async () => {
  const x = encodeNpy(new Float32Array(30 * 4).fill(1), [30, 4], 'f4');
  const y = encodeNpy(Int32Array.from({ length: 30 }, (_, i) => i % 3), [30], 'i4');
  const npy = '{ source: files, format: npy, features: x.npy, labels: y.npy, numClasses: 3 }';
  expectFailure(await run({ 'x.npy': x.subarray(0, x.length - 10), 'y.npy': y }, recipe(npy)), EXIT.stageFailed, 'x.npy');
});

test('CSV: a ragged row and a non-numeric cell are named file:line:col', async () => {
  expectFailure(await run({ 'data.csv': csv([...rows.slice(0, 5), '1,2,3', ...rows.slice(5)]) }), EXIT.stageFailed, /data\.csv:7\b/);
  expectFailure(await run({ 'data.csv': csv([...rows.slice(0, 3), '1,two,3,4,0', ...rows.slice(3)]) }), EXIT.stageFailed, 'data.csv:5:3');
});

test('NaN inputs, an empty dataset and labels out of range name the file', async () => {
  expectFailure(await run({ 'data.csv': csv([...rows.slice(0, 9), 'nan,1,1,1,1', ...rows.slice(9)]) }), EXIT.stageFailed, 'data.csv:11:1', /NaN/);
  expectFailure(await run({ 'data.csv': csv([]) }), EXIT.stageFailed, 'data.csv', /empty/);
  expectFailure(await run({ 'data.csv': csv([...rows.slice(0, 2), '1,1,1,1,7', ...rows.slice(2)]) }), EXIT.stageFailed, 'data.csv:4:9', /label .* 7/);
});

test("samples of the wrong shape for the model name the file, the input layer and both shapes", async () => {
  const wide = csv(rows.map((r) => `9,${r}`)).replace('a,b,c,d,label', 'z,a,b,c,d,label');
  expectFailure(await run({ 'data.csv': wide }), EXIT.stageFailed, 'data.csv', '[5]', '[4]');
});

test('--verbose adds the stack trace of an unexpected failure, and only then', async () => {
  const bad = { 'm/model.json': JSON.stringify({ format: 'layers-model', modelTopology: { class_name: 'Model', config: { layers: 'oops' } }, weightsManifest: [] }) };
  const r = await run(bad, undefined, ['--verbose']);
  assert.equal(r.exitCode, EXIT.stageFailed, r.stderr);
  assert.ok(r.stderr.includes('model.json'), r.stderr);
});
