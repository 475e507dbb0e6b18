import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, ROOT } from './helpers.js';

// pipelines/fashion-mnist-lenet-5.yaml as CI runs it: the real recipe reading the real Fashion-MNIST
// from /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist, which .ci/run installs), cut
// down with --set to 600 training and 300 test images and one epoch per training stage. Its accuracy gate
// is widened and the int8 exports' agreement threshold lowered (one epoch on 540 images; 300 test images).
const PIPELINE = 'fashion-mnist-lenet-5.yaml';
const DATASET = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';
const CUT = [
  'data.fashion.limit.train=600',
  'data.fashion.limit.test=300',
  'stages.baseline.with.epochs=1',
  'stages.retrain.with.train.epochs=1',
  'stages.report.with.gates.1=accuracy >= stages.baseline-eval.accuracy - 0.3',
  'stages.tflite.with.threshold=0.9',
  'stages.onnx.with.threshold=0.9',
  'stages.tfjs.with.threshold=0.9',
  'stages.baseline-eval.with.latencySamples=2',
  'stages.report.with.latencySamples=2',
].flatMap((s) => ['--set', s]);

test('fashion-mnist-lenet-5 runs from a clone on the installed dataset: structured prune + int8, exported to tflite, onnx and tfjs', async () => {
  assert.ok(existsSync(DATASET), `${DATASET} is missing: install Debian's dataset-fashion-mnist (.ci/run does)`);
  const ws = mkdtempSync(join(tmpdir(), 'compress-fashion-'));
  copyFileSync(join(ROOT, 'pipelines', PIPELINE), join(ws, PIPELINE));
  const r = await cli(['run', PIPELINE, ...CUT], ws);
  assert.equal(r.exitCode, 0, r.stderr);
  const [run] = readdirSync(join(ws, '.compress', 'reports'));
  const report = JSON.parse(readFileSync(join(ws, '.compress', 'reports', run, 'report.json'), 'utf8'));
  const stage = (id: string) => report.stages.find((s: { id: string }) => s.id === id);
  const base = stage('baseline-eval').metrics;
  assert.equal(base.samples, 300, 'scored on the 300 test images the limit picks');
  assert.deepEqual(base.classes, ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']);
  assert.ok(base.accuracy > 0.4, `one epoch on 540 images learns more than chance (0.1): ${base.accuracy}`);
  assert.ok(stage('report').metrics.params <= base.params * 0.5, 'structured pruning removed half of the units');
  for (const [id, target, precision] of [['tflite', 'tflite', 'int8'], ['onnx', 'onnx', 'int8'], ['tfjs', 'tfjs', 'uint8']]) {
    const m = stage(id).metrics;
    assert.equal(stage(id).status, 'ran');
    assert.deepEqual([m.target, m.precision], [target, precision]);
    assert.ok(m.fileBytes > 0 && m.fileBytes < base.params * 4 * 0.5, `${id}: ${m.fileBytes} bytes, under half the baseline's fp32 weights`);
    assert.ok(m.agreement >= 0.9, `${id} agrees with the model in its runtime: ${m.agreement}`);
  }
});
