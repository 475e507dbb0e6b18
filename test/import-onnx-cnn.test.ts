import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { exportModel, verifyExport } from '../src/export/index.js';
import { emptyMeta } from '../src/model/meta.js';
import { importOnnx } from '../src/model/load/onnx.js';
import { checkImport, randomInputs } from '../src/model/load/onnx-verify.js';
import { ROOT, cli } from './helpers.js';

/**
 * CNNs exported by PyTorch in this test run (random init, seeded, batch-norm statistics randomised,
 * small inputs): torchvision MobileNetV2 (13, 17), ResNet-18 (11), SqueezeNet 1.1 (11, 17) and MNASNet 0.5
 * (11, 13) at those opsets, and an 'op zoo' model (grouped and transposed convs, padding, PReLU,
 * Hardswish, GELU, SiLU, squeeze-excitation, clamp, ELU + padded max pool, crops, an NHWC-order
 * flatten) at all three, ShuffleNetV2 x0.5 (13) and a channel-plumbing model (torch.split, a channel slice,
 * a 3-group channel shuffle; 11, 13). Each import must equal onnxruntime's outputs within 1e-4 of their scale.
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-onnx-cnn-'));
const SPECS = ['mobilenet_v2:13', 'mobilenet_v2:17:dynamic', 'resnet18:11:dynamic', 'squeezenet1_1:17', 'squeezenet1_1:11', 'mnasnet0_5:11', 'mnasnet0_5:13:dynamic', 'opzoo:11', 'opzoo:13:dynamic', 'opzoo:17', 'shufflenet_v2_x0_5:13:dynamic', 'chanops:11', 'chanops:13:dynamic', 'unet:13'];

before(async () => {
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/torch_export.py'), dir, ...SPECS], { timeout: 300_000 });
});

async function importAndCheck(name: string, keep?: (model: tfType.LayersModel) => Promise<void>) {
  const file = join(dir, `${name}.onnx`);
  const { model, reference, info } = await importOnnx(tf, file);
  const n = info.fixedBatch ?? 2;
  const shape = model.inputs[0].shape.slice(1) as number[];
  const check = await checkImport(tf, reference, info, file, randomInputs(shape, n, 5), n, { inputs: 'random' });
  const classes = new Set(model.layers.map((l) => l.getClassName()));
  const permutes = model.layers.filter((l) => l.getClassName() === 'Permute').map((l) => (l.getConfig().dims as number[]).join());
  try {
    await keep?.(model);
  } finally {
    model.dispose();
  }
  return { check, classes, permutes };
}

const EXPECT: Record<string, string[]> = {
  'mobilenet_v2-13': ['DepthwiseConv2D', 'ReLU', 'Add', 'GlobalAveragePooling2D', 'Dense'],
  'mobilenet_v2-17': ['DepthwiseConv2D', 'ReLU', 'Add'],
  'resnet18-11': ['Conv2D', 'ZeroPadding2D', 'MaxPooling2D', 'Add', 'Dense'],
  'squeezenet1_1-17': ['Concatenate', 'MaxPooling2D', 'GlobalAveragePooling2D'],
  'squeezenet1_1-11': ['Concatenate', 'MaxPooling2D'],
  'mnasnet0_5-11': ['DepthwiseConv2D', 'Add', 'GlobalAveragePooling2D'],
  'mnasnet0_5-13': ['DepthwiseConv2D', 'Add'],
  'opzoo-11': ['Conv2DTranspose', 'Cropping2D', 'PReLU', 'LeakyReLU', 'Multiply', 'ZeroPadding2D', 'AveragePooling2D', 'GlobalMaxPooling2D', 'GroupedConv2D'],
  'opzoo-13': ['Conv2DTranspose', 'PReLU', 'DepthwiseConv2D', 'GlobalMaxPooling2D'],
  'opzoo-17': ['Conv2DTranspose', 'PReLU', 'DepthwiseConv2D'],
  'chanops-11': ['Cropping2D', 'Permute', 'Concatenate'],
  'chanops-13': ['Cropping2D', 'Permute', 'Concatenate'],
};

for (const [name, layers] of Object.entries(EXPECT)) {
  test(`${name} imports with outputs equal to onnxruntime's`, async () => {
    const { check, classes } = await importAndCheck(name);
    assert.ok(check.passed, JSON.stringify(check));
    assert.ok(check.outputScale > 1e-3, `outputs are not all near zero: ${check.outputScale}`);
    for (const l of layers) assert.ok(classes.has(l), `${l} among ${[...classes].join(', ')}`);
  });
}

test('a channel shuffle imports as one rank-5 Permute on the NHWC tensor (no transposes to NCHW and back)', async () => {
  const { check, permutes } = await importAndCheck('chanops-13');
  assert.ok(check.passed, JSON.stringify(check));
  assert.deepEqual(permutes, ['1,2,4,3']);
});

test('ShuffleNetV2 x0.5 imports (channel split + shuffle) and exports to TFLite int8 and ONNX, each agreeing in its runtime', async () => {
  const { check, classes, permutes } = await importAndCheck('shufflenet_v2_x0_5-13', async (model) => {
    const shape = model.inputs[0].shape.slice(1) as number[];
    const n = 32;
    const x = randomInputs(shape, n, 9);
    const probs = tf.tidy(() => model.predict(tf.tensor(x, [n, ...shape])) as tfType.Tensor);
    const y = Int32Array.from(probs.argMax(-1).dataSync());
    probs.dispose();
    const test = { x, y, n, sampleShape: shape, numClasses: 10 };
    for (const [target, precision] of [['tflite', 'int8'], ['onnx', 'float32']] as const) {
      const out = join(dir, `shufflenet-${target}-${precision}`);
      const res = await exportModel(tf, model, emptyMeta(), { target, precision, calibration: randomInputs(shape, 16, 3) }, out);
      const v = await verifyExport(tf, { target, precision, dir: out, files: res.files }, model, test);
      assert.ok(v.agreement >= 0.99, `${target} ${precision}: ${JSON.stringify(v)}`);
    }
  });
  assert.ok(check.passed, JSON.stringify(check));
  assert.ok(check.outputScale > 1e-3, `outputs are not all near zero: ${check.outputScale}`);
  for (const l of ['Cropping2D', 'Concatenate', 'DepthwiseConv2D']) assert.ok(classes.has(l), `${l} among ${[...classes].join(', ')}`);
  assert.equal(permutes.length, 16, 'one Permute per channel shuffle');
  assert.ok(permutes.every((p) => p === '1,2,4,3'), permutes.join(' '));
});

test('compress init on an ONNX image model writes a starter recipe for channels-first data', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-onnx-init-'));
  copyFileSync(join(dir, 'opzoo-11.onnx'), join(ws, 'model.onnx'));
  const r = await cli(['init', 'model.onnx'], ws);
  assert.equal(r.exitCode, 0, r.stderr);
  const text = readFileSync(join(ws, 'compress.config.yaml'), 'utf8');
  assert.match(text, /input is \[C, H, W\] = \[3,16,16\]/);
  assert.match(text, /layout: nchw, numClasses: 5/);
  assert.match(r.stdout, /samples of the model's input \[C, H, W\] = \[3,16,16\], layout: nchw/);
});

test('compress init on a model whose output is not class scores (a U-Net\'s per-pixel map) refuses, saying why', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-onnx-init-seg-'));
  copyFileSync(join(dir, 'unet-13.onnx'), join(ws, 'model.onnx'));
  const r = await cli(['init', 'model.onnx'], ws);
  assert.equal(r.exitCode, 2, r.stderr);
  assert.match(r.stderr, /the model's output \[\d+,\d+,\d+\] is not a vector of class scores/);
});
