import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { execa } from 'execa';
import { initEngine } from '../src/engine/backend.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { importOnnx } from '../src/model/load/onnx.js';
import { removalBlockers, removeUnits, StructuredRemovalError } from '../src/prune/index.js';
import { writeKeras2H5Config } from './fixtures/keras-writer.js';
import { mnv3Keras2, mnv3Weights } from './fixtures/keras-mnv3.js';
import { maxAbsDiff, randomBatchNorms, zeroEntries, zeroOut } from './fixtures/unit-removal.js';
import { ROOT, cli } from './helpers.js';

/**
 * Structured removal through squeeze-and-excitation blocks (MobileNetV3, EfficientNet): removed
 * channels pass global pooling and the Reshape to [1, 1, C], the squeeze conv absorbs them, and at
 * the Multiply the excitation conv loses the same units. Keras-style blocks built here and loaded
 * from a tf.keras MobileNetV3 .h5, torchvision blocks exported by PyTorch and imported from ONNX.
 */

const { tf } = await initEngine('cpu');
const fixtures = mkdtempSync(join(tmpdir(), 'compress-se-'));

before(async () => {
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/torch_export.py'), fixtures, 'mobilenet_v3_mini:13', 'efficientnet_mini:13', 'npy:3x32x32:64'], { timeout: 240_000 });
});

type ST = tfType.SymbolicTensor;

/**
 * keras.applications EfficientNet's MBConv block at small widths: expand conv + BN + swish,
 * depthwise conv + BN + swish, GlobalAveragePooling2D -> Reshape((1, 1, C)) -> Conv2D(swish) ->
 * Conv2D(sigmoid) -> multiply([x, se]), project conv. `seAlsoFeedsHead`: the gate also reaches the classifier.
 */
function efficientNetBlock(seAlsoFeedsHead = false): tfType.LayersModel {
  const conv = (name: string, filters: number, kernelSize: number, extra: Record<string, unknown> = {}) =>
    tf.layers.conv2d({ name, filters, kernelSize, padding: 'same', useBias: false, ...extra });
  const bnAct = (name: string, t: ST) => tf.layers.activation({ name: `${name}_act`, activation: 'swish' }).apply(tf.layers.batchNormalization({ name: `${name}_bn` }).apply(t)) as ST;
  const input = tf.input({ shape: [8, 8, 3] });
  let x = bnAct('stem', conv('stem', 8, 3).apply(input) as ST);
  x = bnAct('expand', conv('expand', 16, 1).apply(x) as ST);
  x = bnAct('dw', tf.layers.depthwiseConv2d({ name: 'dw', kernelSize: 3, padding: 'same', useBias: false }).apply(x) as ST);
  let se = tf.layers.globalAveragePooling2d({ name: 'se_squeeze' }).apply(x) as ST;
  se = tf.layers.reshape({ name: 'se_reshape', targetShape: [1, 1, 16] }).apply(se) as ST;
  se = conv('se_reduce', 4, 1, { activation: 'swish', useBias: true, biasInitializer: 'randomNormal' }).apply(se) as ST;
  se = conv('se_expand', 16, 1, { activation: 'sigmoid', useBias: true, biasInitializer: 'randomNormal' }).apply(se) as ST;
  x = tf.layers.multiply({ name: 'se_excite' }).apply([x, se]) as ST;
  x = tf.layers.batchNormalization({ name: 'project_bn' }).apply(conv('project', 8, 1).apply(x)) as ST;
  let features = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as ST;
  if (seAlsoFeedsHead) features = tf.layers.concatenate({ name: 'features' }).apply([features, tf.layers.flatten({ name: 'se_flat' }).apply(se) as ST]) as ST;
  const out = tf.layers.dense({ name: 'head', units: 3, activation: 'softmax' }).apply(features) as ST;
  return tf.model({ inputs: input, outputs: out });
}

/** The test can fail: removing the units before they are zeroed changes the outputs well above the tolerance of 1e-5. */
function assertRemovalChanges(model: tfType.LayersModel, spec: Record<string, number[]>, x: tfType.Tensor): void {
  const unmasked = removeUnits(tf, model, spec).model;
  const d = maxAbsDiff(tf, model, unmasked, x);
  unmasked.dispose();
  assert.ok(d > 1e-4, `removing units that are not zero changes the outputs by ${d}`);
}

const bias = (m: tfType.LayersModel, layer: string) => Array.from(m.getLayer(layer).getWeights()[1].dataSync());
const kernelShape = (m: tfType.LayersModel, layer: string) => m.getLayer(layer).getWeights()[0].shape;

test('Keras EfficientNet SE block: removing expand-conv filters removes the same excitation units and keeps the masked outputs', () => {
  const model = efficientNetBlock();
  const drop = [1, 6, 11];
  randomBatchNorms(tf, model, 3, { expand_bn: drop, dw_bn: drop });
  const x = tf.randomUniform([4, 8, 8, 3], -1, 1, 'float32', 2);
  assertRemovalChanges(model, { expand: drop }, x);
  zeroOut(tf, model, { expand: drop });
  const r = removeUnits(tf, model, { expand: drop });
  assert.deepEqual(r.removed, { expand: drop, se_expand: drop });
  assert.deepEqual(r.model.getLayer('se_reshape').outputShape, [null, 1, 1, 13]);
  assert.deepEqual(kernelShape(r.model, 'se_reduce'), [1, 1, 13, 4]);
  assert.deepEqual(kernelShape(r.model, 'se_expand'), [1, 1, 4, 13]);
  assert.deepEqual(bias(r.model, 'se_expand'), bias(model, 'se_expand').filter((_, j) => !drop.includes(j)));
  const d = maxAbsDiff(tf, model, r.model, x);
  assert.ok(d < 1e-5, `max |masked - rebuilt| ${d}`);
  x.dispose();
});

test('tf.keras MobileNetV3 .h5 (GAP keepdims, hard-sigmoid as Rescaling/ReLU6/Rescaling): stem filters removed through its SE block', async () => {
  const w = mnv3Weights(tf, 3, tf.randomUniform([50, 28, 28, 1], 0, 1, 'float32', 1) as tfType.Tensor4D);
  const { config, layers } = mnv3Keras2(w);
  const file = join(fixtures, 'mnv3.h5');
  writeFileSync(file, await writeKeras2H5Config(config, layers));
  const model = await loadModelFrom(tf, file);
  const drop = [2, 5];
  zeroEntries(tf, model, 'Conv/BatchNorm', 1, drop); // beta
  zeroEntries(tf, model, 'Conv/BatchNorm', 2, drop); // moving mean: BN maps 0 to 0, hard-swish too
  const x = tf.randomUniform([4, 28, 28, 1], 0, 1, 'float32', 2);
  assertRemovalChanges(model, { Conv: drop }, x);
  zeroOut(tf, model, { Conv: drop });
  const r = removeUnits(tf, model, { Conv: drop });
  assert.deepEqual(r.removed, { Conv: drop, 'expanded_conv/squeeze_excite/Conv_1': drop });
  assert.deepEqual(r.model.getLayer('expanded_conv/squeeze_excite/Mul').outputShape, [null, 14, 14, 6]);
  const d = maxAbsDiff(tf, model, r.model, x);
  assert.ok(d < 1e-5, `max |masked - rebuilt| ${d}`);
  x.dispose();
});

/** Imported torchvision models: the filters removed, the depthwise conv each reaches (its bias, BN folded in, zeroed there), the excitation convs. */
const TORCH: Array<{ file: string; remove: Record<string, number[]>; depthwise: Record<string, number[]>; gates: Record<string, number[]> }> = [
  {
    file: 'mobilenet_v3_mini-13',
    remove: { 'features.0.0': [0, 9], 'features.2.block.0.0': [3, 4, 40], 'features.3.block.0.0': [70] },
    depthwise: { 'features.1.block.0.0': [0, 9], 'features.2.block.1.0': [3, 4, 40], 'features.3.block.1.0': [70] },
    gates: { 'features.1.block.1.fc2': [0, 9], 'features.2.block.2.fc2': [3, 4, 40], 'features.3.block.2.fc2': [70] },
  },
  {
    file: 'efficientnet_mini-13',
    remove: { 'features.2.0.block.0.0': [1, 63], 'features.2.1.block.0.0': [5, 6, 7] },
    depthwise: { 'features.2.0.block.1.0': [1, 63], 'features.2.1.block.1.0': [5, 6, 7] },
    gates: { 'features.2.0.block.2.fc2': [1, 63], 'features.2.1.block.2.fc2': [5, 6, 7] },
  },
];

for (const t of TORCH) {
  test(`torchvision ${t.file} from ONNX: expand-conv filters removed through SE blocks, excitation convs lose the same units, outputs kept`, async () => {
    const { model } = await importOnnx(tf, join(fixtures, `${t.file}.onnx`));
    const x = tf.randomNormal([4, 32, 32, 3], 0, 1, 'float32', 4);
    assertRemovalChanges(model, t.remove, x);
    for (const [dw, channels] of Object.entries(t.depthwise)) zeroEntries(tf, model, dw, 1, channels);
    zeroOut(tf, model, t.remove);
    const r = removeUnits(tf, model, t.remove);
    assert.deepEqual(r.removed, { ...t.remove, ...t.gates });
    for (const [gate, units] of Object.entries(t.gates)) assert.equal(r.model.getLayer(gate).outputShape.at(-1), (model.getLayer(gate).outputShape.at(-1) as number) - units.length);
    const d = maxAbsDiff(tf, model, r.model, x);
    assert.ok(d < 1e-5, `max |masked - rebuilt| ${d}`);
    x.dispose();
  });
}

test('an excitation conv whose output also reaches another layer stops the removal, naming the Multiply and that layer', () => {
  const model = efficientNetBlock(true);
  assert.throws(() => removeUnits(tf, model, { expand: [1] }), (e: unknown) => {
    assert.ok(e instanceof StructuredRemovalError, String(e));
    assert.equal(e.layer, 'se_excite');
    assert.deepEqual(e.sources, ['expand']);
    assert.match(e.message, /removal of expand reaches layer se_excite \(Multiply\): its inputs would lose different channels, and the gate se_expand cannot lose the same units: se_expand also reaches se_flat/);
    return true;
  });
});

test('an excitation conv selected itself is the only blocker: the convs feeding its block still lose filters', () => {
  const model = efficientNetBlock();
  const blocked = removalBlockers(tf, model, ['stem', 'expand', 'se_reduce', 'se_expand', 'project']);
  assert.deepEqual(blocked.map((b) => b.layers), [['se_expand']]);
  assert.match(blocked[0].why, /the gate se_expand \(squeeze-excitation\) can only lose the channels its other input dw_act loses/);
});

test('prune stage, method structured, on torchvision MobileNetV3 from ONNX: the stem and expansion convs lose filters through their SE blocks', async () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-se-ws-'));
  mkdirSync(join(ws, 'models'));
  for (const f of ['mobilenet_v3_mini-13.onnx', 'npy-3x32x32-features.npy', 'npy-3x32x32-labels.npy']) copyFileSync(join(fixtures, f), join(ws, 'models', f));
  writeFileSync(join(ws, 'compress.config.yaml'), `version: 1
name: torch-mnv3-se
seed: 4
data:
  imgs: { source: files, features: models/npy-3x32x32-features.npy, labels: models/npy-3x32x32-labels.npy, numClasses: 10, layout: nchw }
stages:
  model: { uses: load, with: { path: models/mobilenet_v3_mini-13.onnx, verify: { samples: 4 } } }
  pruned:
    uses: prune
    needs: [model]
    with: { method: structured, sparsity: 0.25, layers: [ { match: "re:^features\\\\.(0\\\\.0|[23]\\\\.block\\\\.0\\\\.0)$" } ] }
`);
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  const dir = join(ws, '.compress/reports');
  const report = JSON.parse(readFileSync(join(dir, readdirSync(dir).sort().at(-1)!, 'report.json'), 'utf8')) as { stages: Array<{ id: string; metrics: Record<string, any> }> };
  const m = report.stages.find((s) => s.id === 'pruned')!.metrics;
  const selected = (m.layers as Array<{ name: string; removed: number }>).map((l) => [l.name, l.removed]);
  // a quarter of 16, 48 and 72 filters; each block's excitation conv loses as many
  assert.deepEqual(Object.fromEntries(selected), { 'features.0.0': 4, 'features.2.block.0.0': 12, 'features.3.block.0.0': 18 });
  assert.equal(m.removedUnits, 2 * (4 + 12 + 18));
  assert.ok(m.params < m.paramsBefore, `${m.params} < ${m.paramsBefore}`);
});
