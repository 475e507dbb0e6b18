import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { inferencePlan } from '../src/engine/inference.js';
import { importOnnx } from '../src/model/load/onnx.js';
import { checkImport, randomInputs } from '../src/model/load/onnx-verify.js';
import { ROOT, cli } from './helpers.js';

/**
 * torchvision's ConvNeXt (small widths, exported by PyTorch in this test run): its blocks apply Linear
 * layers to every pixel of a channels-last tensor (MatMul on rank 4), which import as Dense layers on a
 * rank-4 input. The engine's inference plan runs those as the 1x1 convs they equal, and every export
 * target writes them as such.
 */

const { tf } = await initEngine('wasm');
const fixtures = mkdtempSync(join(tmpdir(), 'compress-convnext-'));
const MODEL = join(fixtures, 'convnext_mini-13.onnx');

before(async () => {
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/torch_export.py'), fixtures, 'convnext_mini:13:dynamic', 'npy:3x32x32:48'], { timeout: 240_000 });
});

const perPixelDense = (model: { layers: Array<{ name: string; getClassName(): string; input: unknown }> }) =>
  model.layers.filter((l) => l.getClassName() === 'Dense' && (l.input as { shape: unknown[] }).shape.length === 4).map((l) => l.name);

test('ConvNeXt imports with outputs equal to onnxruntime\'s, its per-pixel Linear layers as Dense on rank-4 inputs', async () => {
  const { model, reference, info } = await importOnnx(tf, MODEL);
  const shape = model.inputs[0].shape.slice(1) as number[];
  const check = await checkImport(tf, reference, info, MODEL, randomInputs(shape, 2, 5), 2, { inputs: 'random' });
  const dense = perPixelDense(model);
  model.dispose();
  assert.ok(check.passed, JSON.stringify(check));
  assert.ok(check.outputScale > 1e-3, `outputs are not all near zero: ${check.outputScale}`);
  assert.equal(dense.length, 6, `two Linear layers in each of 3 blocks: ${dense.join(', ')}`);
});

test('the inference plan runs a Dense on a rank-4 input as a fused 1x1 conv and computes what model.predict does', async () => {
  const { model } = await importOnnx(tf, MODEL);
  const dense = perPixelDense(model);
  // Applied once more (as an NCHW-input export wraps it): its layers then have two inbound nodes.
  const wrapperInput = tf.input({ shape: [32, 32, 3] });
  tf.model({ inputs: wrapperInput, outputs: model.apply(wrapperInput) as tfType.SymbolicTensor });
  const plan = inferencePlan(tf, model);
  const x = tf.randomNormal([3, 32, 32, 3], 0, 1, 'float32', 9);
  const [want, got] = [model.predict(x) as typeof x, plan.predict(x)];
  const diff = tf.max(tf.abs(tf.sub(want, got))).dataSync()[0];
  const scale = tf.max(tf.abs(want)).dataSync()[0];
  const fusedConvs = new Set(plan.fused.map((f) => f.conv));
  tf.dispose([x, want, got]);
  plan.dispose();
  model.dispose();
  for (const name of dense) assert.ok(fusedConvs.has(name), `${name} runs as a fused conv step`);
  assert.ok(diff <= 1e-5 * scale, `max |plan - predict| ${diff} of ${scale}`);
});

test('ConvNeXt from PyTorch: int8 TFLite, int8 ONNX and float32 TF.js exports verified in their runtimes', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-convnext-ws-'));
  mkdirSync(join(ws, 'models'));
  for (const f of ['convnext_mini-13.onnx', 'npy-3x32x32-features.npy', 'npy-3x32x32-labels.npy']) copyFileSync(join(fixtures, f), join(ws, 'models', f));
  writeFileSync(join(ws, 'compress.config.yaml'), `version: 1
name: torch-convnext
seed: 4
data:
  imgs: { source: files, features: models/npy-3x32x32-features.npy, labels: models/npy-3x32x32-labels.npy, numClasses: 10, layout: nchw, split: { train: 0.5, validation: 0.1, test: 0.4 } }
stages:
  model: { uses: load, with: { path: models/convnext_mini-13.onnx, verify: { samples: 4 } } }
  int8: { uses: quantize, needs: [model], with: { default: { method: linear, bits: 8, symmetric: true, perChannel: true } } }
  float: { uses: export, needs: [model], with: { targets: [ { target: tfjs, precision: float32 }, { target: onnx, precision: float32 } ] } }
  quantized: { uses: export, needs: [int8], with: { targets: [ { target: tflite, precision: int8 }, { target: onnx, precision: int8 } ] } }
`);
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  const dir = join(ws, '.compress/reports');
  const rep = JSON.parse(readFileSync(join(dir, readdirSync(dir).sort().at(-1)!, 'report.json'), 'utf8')) as { stages: Array<{ id: string; metrics: Record<string, any> }> };
  type Check = { target: string; precision: string; agreement: number; confidentAgreement: number; confidentSamples: number; samples: number };
  const exports = rep.stages.filter((s) => s.id === 'float' || s.id === 'quantized').flatMap((s) => s.metrics.exports as Check[]);
  assert.equal(exports.length, 4);
  for (const e of exports) {
    const what = `${e.target} ${e.precision}: ${JSON.stringify(e).slice(0, 400)}`;
    // A random ConvNeXt's top-1 margins are small: int8 exports are held to agreement where the float
    // margin exceeds the quantization noise (the export check's own rule), float ones to every sample.
    if (e.precision === 'float32') assert.equal(e.agreement, 1, what);
    else assert.ok(e.confidentSamples >= 3 && e.confidentAgreement === 1, what);
  }
});
