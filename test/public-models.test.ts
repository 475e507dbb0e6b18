/**
 * Public model files made elsewhere, as an npm package ships them (nsfwjs 4.3.0, MIT; a devDependency): its
 * three image classifiers (5 classes) are TF.js models converted by tensorflowjs from Keras / TF-Hub, each
 * model.json and weight shard wrapped in a UMD .min.js module (base64 shards), unwrapped here into the files
 * tensorflowjs_converter wrote:
 * - mobilenet_v2: keras.applications MobileNetV2 (alpha 1.0, 224x224) + a Dense head, Keras 2.2.4, TF.js layers
 *   format with uint8-quantized weights;
 * - mobilenet_v2_mid: TF-Hub's MobileNetV2 1.4 feature vector + head, a TF.js graph model (converter v1.7.4);
 * - inception_v3: keras.applications InceptionV3 (299x299), layers format: every batch norm has scale=False,
 *   and the base is frozen (trainable false), as transfer learning leaves it.
 * The data are seeded smooth random images (the checks compare each result with the model it came from, so
 * the labels do not matter).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, cli } from './helpers.js';
import { encodeNpy } from '../src/data/npy.js';
import { createRng } from '../src/util/rng.js';

const require = createRequire(join(ROOT, 'package.json'));
const MODELS = join(ROOT, 'node_modules/nsfwjs/dist/models');

interface Manifest {
  modelTopology: unknown;
  format?: string;
  weightsManifest: Array<{ paths: string[]; weights: Array<{ shape: number[] }> }>;
}

/** nsfwjs's model `name` as the converter's files in `<ws>/model/`; returns its manifest. */
function unwrapModel(name: string, ws: string): Manifest {
  const src = join(MODELS, name);
  const dir = join(ws, 'model');
  mkdirSync(dir, { recursive: true });
  const model = require(join(src, 'model.min.js')) as Manifest;
  for (const f of readdirSync(src).filter((n) => n.startsWith('group'))) {
    writeFileSync(join(dir, f.replace('.min.js', '')), Buffer.from(require(join(src, f)) as string, 'base64'));
  }
  for (const group of model.weightsManifest) group.paths = group.paths.map((p) => p.replace('.min.js', ''));
  writeFileSync(join(dir, 'model.json'), JSON.stringify(model));
  return model;
}

/** `n` seeded smooth images [n, size, size, 3] in 0..1 and labels 0..4 as .npy files in `<ws>/data/`. */
function writeImages(ws: string, n: number, size: number): void {
  const rng = createRng(3);
  const cell = 16;
  const cells = Math.ceil(size / cell);
  const x = new Float32Array(n * size * size * 3);
  for (let i = 0; i < n; i++) {
    const low = Float32Array.from({ length: cells * cells * 3 }, () => rng());
    for (let h = 0; h < size; h++)
      for (let w = 0; w < size; w++)
        for (let c = 0; c < 3; c++) x[((i * size + h) * size + w) * 3 + c] = low[(Math.floor(h / cell) * cells + Math.floor(w / cell)) * 3 + c];
  }
  mkdirSync(join(ws, 'data'), { recursive: true });
  writeFileSync(join(ws, 'data/x.npy'), encodeNpy(x, [n, size, size, 3], 'f4'));
  writeFileSync(join(ws, 'data/y.npy'), encodeNpy(Int32Array.from({ length: n }, (_, i) => i % 5), [n], 'i4'));
}

function workspace(name: string, n: number, size: number, stages: string): { ws: string; manifest: Manifest } {
  const ws = mkdtempSync(join(tmpdir(), `compress-public-${name}-`));
  const manifest = unwrapModel(name, ws);
  writeImages(ws, n, size);
  writeFileSync(join(ws, 'compress.config.yaml'), `version: 1
seed: 5
data:
  imgs: { source: files, features: data/x.npy, labels: data/y.npy, numClasses: 5, split: { train: 0.5, validation: 0.25, test: 0.25 } }
stages:
  model: { uses: load, with: { path: model/model.json } }
${stages}`);
  return { ws, manifest };
}

function report(ws: string): { stages: Array<{ id: string; status: string; metrics: Record<string, any> }> } {
  const dir = join(ws, '.compress/reports');
  return JSON.parse(readFileSync(join(dir, readdirSync(dir).sort().at(-1)!, 'report.json'), 'utf8'));
}

const declaredWeights = (m: Manifest) => m.weightsManifest.flatMap((g) => g.weights).reduce((a, w) => a + w.shape.reduce((p, d) => p * d, 1), 0);

test('nsfwjs MobileNetV2 (Keras 2.2.4, TF.js layers, uint8 weights): loads every weight, int8-quantizes, and its TFLite / ONNX int8 files pass in LiteRT and onnxruntime', async () => {
  const { ws, manifest } = workspace('mobilenet_v2', 48, 224, `  int8: { uses: quantize, needs: [model], with: { default: { method: linear, bits: 8, perChannel: true } } }
  ship: { uses: export, needs: [int8], with: { targets: [ { target: tflite, precision: int8 }, { target: onnx, precision: int8 } ] } }
`);
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  const rep = report(ws);
  const m = (id: string) => rep.stages.find((s) => s.id === id)!.metrics;
  assert.equal(m('model').params, declaredWeights(manifest), 'every weight of the file is in the loaded model');
  for (const e of m('ship').exports as Array<{ target: string; agreement: number }>) assert.ok(e.agreement >= 0.9, `${e.target}: agreement ${e.agreement}`);
});

test('nsfwjs MobileNetV2 1.4 (TF-Hub, TF.js graph model): imports as checked against tfjs graph executor, and prunes with fine-tuning', async () => {
  const { ws } = workspace('mobilenet_v2_mid', 16, 224, `  pruned: { uses: prune, needs: [model], with: { method: magnitude, sparsity: 0.5, train: { epochs: 1, batchSize: 4 } } }
`);
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  const rep = report(ws);
  const m = (id: string) => rep.stages.find((s) => s.id === id)!.metrics;
  assert.equal(m('model').importCheck?.passed, true, JSON.stringify(m('model').importCheck));
  assert.ok(Math.abs(m('pruned').sparsity - 0.5) < 0.02, `sparsity ${m('pruned').sparsity}`);
});

test('nsfwjs InceptionV3 (Keras, batch norms with scale=False, frozen base): prunes with fine-tuning', async () => {
  const { ws } = workspace('inception_v3', 8, 299, `  pruned: { uses: prune, needs: [model], with: { method: magnitude, sparsity: 0.5, train: { epochs: 1, batchSize: 4 } } }
`);
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  assert.ok(Math.abs(report(ws).stages.find((s) => s.id === 'pruned')!.metrics.sparsity - 0.5) < 0.02);
});
