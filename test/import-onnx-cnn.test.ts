import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { initEngine } from '../src/engine/backend.js';
import { importOnnx } from '../src/model/load/onnx.js';
import { checkImport, randomInputs } from '../src/model/load/onnx-verify.js';
import { ROOT, cli } from './helpers.js';

/**
 * CNNs exported by PyTorch in this test run (random init, seeded, batch-norm statistics randomised,
 * small inputs): torchvision MobileNetV2 (13, 17), ResNet-18 (11), SqueezeNet 1.1 (11, 17) and MNASNet 0.5
 * (11, 13) at those opsets, and an 'op zoo' model (grouped and transposed convs, padding, PReLU,
 * Hardswish, GELU, SiLU, squeeze-excitation, clamp, ELU + padded max pool, crops, an NHWC-order
 * flatten) at all three. Each import must equal onnxruntime's outputs within 1e-4 of their scale.
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-onnx-cnn-'));
const SPECS = ['mobilenet_v2:13', 'mobilenet_v2:17:dynamic', 'resnet18:11:dynamic', 'squeezenet1_1:17', 'squeezenet1_1:11', 'mnasnet0_5:11', 'mnasnet0_5:13:dynamic', 'opzoo:11', 'opzoo:13:dynamic', 'opzoo:17'];

before(async () => {
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/torch_export.py'), dir, ...SPECS], { timeout: 300_000 });
});

async function importAndCheck(name: string) {
  const file = join(dir, `${name}.onnx`);
  const { model, reference, info } = await importOnnx(tf, file);
  const n = info.fixedBatch ?? 2;
  const shape = model.inputs[0].shape.slice(1) as number[];
  const check = await checkImport(tf, reference, info, file, randomInputs(shape, n, 5), n, { inputs: 'random' });
  const classes = new Set(model.layers.map((l) => l.getClassName()));
  model.dispose();
  return { check, classes };
}

const EXPECT: Record<string, string[]> = {
  'mobilenet_v2-13': ['DepthwiseConv2D', 'ReLU', 'Add', 'GlobalAveragePooling2D', 'Dense'],
  'mobilenet_v2-17': ['DepthwiseConv2D', 'ReLU', 'Add'],
  'resnet18-11': ['Conv2D', 'ZeroPadding2D', 'MaxPooling2D', 'Add', 'Dense'],
  'squeezenet1_1-17': ['Concatenate', 'MaxPooling2D', 'GlobalAveragePooling2D'],
  'squeezenet1_1-11': ['Concatenate', 'MaxPooling2D'],
  'mnasnet0_5-11': ['DepthwiseConv2D', 'Add', 'GlobalAveragePooling2D'],
  'mnasnet0_5-13': ['DepthwiseConv2D', 'Add'],
  'opzoo-11': ['Conv2DTranspose', 'Cropping2D', 'PReLU', 'LeakyReLU', 'Multiply', 'ZeroPadding2D', 'AveragePooling2D'],
  'opzoo-13': ['Conv2DTranspose', 'PReLU', 'DepthwiseConv2D'],
  'opzoo-17': ['Conv2DTranspose', 'PReLU', 'DepthwiseConv2D'],
};

for (const [name, layers] of Object.entries(EXPECT)) {
  test(`${name} imports with outputs equal to onnxruntime's`, async () => {
    const { check, classes } = await importAndCheck(name);
    assert.ok(check.passed, JSON.stringify(check));
    assert.ok(check.outputScale > 1e-3, `outputs are not all near zero: ${check.outputScale}`);
    for (const l of layers) assert.ok(classes.has(l), `${l} among ${[...classes].join(', ')}`);
  });
}

test('compress init on an ONNX image model writes a starter recipe for channels-first data', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-onnx-init-'));
  copyFileSync(join(dir, 'opzoo-11.onnx'), join(ws, 'model.onnx'));
  const r = await cli(['init', 'model.onnx'], ws);
  assert.equal(r.exitCode, 0, r.stderr);
  const text = readFileSync(join(ws, 'compress.config.yaml'), 'utf8');
  assert.match(text, /input is \[C, H, W\] = \[3,16,16\]/);
  assert.match(text, /layout: nchw, numClasses: 5/);
});
