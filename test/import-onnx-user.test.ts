import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { initEngine } from '../src/engine/backend.js';
import { InputError } from '../src/errors/input-error.js';
import { importOnnx } from '../src/model/load/onnx.js';
import { checkImport, randomInputs } from '../src/model/load/onnx-verify.js';
import { cli, workspace } from './helpers.js';

/**
 * ONNX graphs as torch.onnx.export (PyTorch 1.13) writes them for modules users reasonably expect to
 * import, hand-made with onnx-proto in the exporter's exact node layout: nn.Upsample /
 * F.interpolate (Resize at opsets 10-17 with scales or sizes, Upsample at opset 9), and models
 * exported in training mode (BatchNormalization with its running-statistics outputs, Dropout with
 * training_mode true), which must be refused with what to do instead of failing the import check.
 */

const { tf } = await initEngine('wasm');
const { onnx } = onnxProto;
const dir = mkdtempSync(join(tmpdir(), 'compress-onnx-user-'));

const f32 = (name: string, dims: number[], values: number[]) => ({ name, dataType: 1, dims, floatData: values });
const i64 = (name: string, values: number[]) => ({ name, dataType: 7, dims: [values.length], int64Data: values });

function writeModel(name: string, nodes: onnxProto.onnx.INodeProto[], o: { opset: number; input: Array<number | string>; output: Array<number | string>; inits?: onnxProto.onnx.ITensorProto[]; initializersAsInputs?: boolean }): string {
  const dim = (d: number | string) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d });
  const vi = (n: string, dims: Array<number | string>) => ({ name: n, type: { tensorType: { elemType: 1, shape: { dim: dims.map(dim) } } } });
  const bytes = onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: o.opset >= 13 ? 7 : 6,
      producerName: 'pytorch',
      producerVersion: '1.13.0',
      opsetImport: [{ domain: '', version: o.opset }],
      graph: { name: 'torch_jit', node: nodes, input: [vi('input', o.input), ...(o.initializersAsInputs ? (o.inits ?? []).map((t) => vi(t.name!, t.dims as number[])) : [])], output: [vi('output', o.output)], initializer: o.inits ?? [] },
    }),
  ).finish();
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

async function importAndCheck(path: string) {
  const { model, reference, info } = await importOnnx(tf, path, { softmax: false });
  const shape = model.inputs[0].shape.slice(1) as number[];
  const check = await checkImport(tf, reference, info, path, randomInputs(shape, 2, 11), 2, { inputs: 'random' });
  const classes = model.layers.map((l) => l.getClassName());
  const configs = model.layers.map((l) => l.getConfig());
  model.dispose();
  return { check, classes, configs };
}

async function rejects(path: string, re: RegExp): Promise<void> {
  await assert.rejects(importOnnx(tf, path), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, re);
    return true;
  });
}

const interpolate = (opset: number, attrs: onnxProto.onnx.IAttributeProto[], inputs: string[], inits: onnxProto.onnx.ITensorProto[], out = [2, 2, 6, 8], batch: number | string = 'batch') =>
  writeModel(`resize-${opset}-${inputs.length}-${attrs.map((a) => a.s ?? '').join('-')}.onnx`, [{ name: '/up/Resize', opType: opset === 9 ? 'Upsample' : 'Resize', input: ['input', ...inputs], output: ['output'], attribute: attrs }], {
    opset,
    input: [batch, 2, 3, 4],
    output: [batch, ...out.slice(1)],
    inits,
  });
const str = (name: string, v: string) => ({ name, type: 3, s: new TextEncoder().encode(v) });
const NEAREST_13 = [str('coordinate_transformation_mode', 'asymmetric'), str('mode', 'nearest'), str('nearest_mode', 'floor')];

test('F.interpolate(scale_factor=2) at opset 13 (Resize with scales) imports as UpSampling2D, equal to onnxruntime', async () => {
  const path = interpolate(13, NEAREST_13, ['', 'scales'], [f32('scales', [4], [1, 1, 2, 2])]);
  const { check, classes, configs } = await importAndCheck(path);
  assert.ok(check.passed, JSON.stringify(check));
  assert.ok(check.outputScale > 0.5);
  assert.ok(classes.includes('UpSampling2D'), classes.join(', '));
  assert.deepEqual(configs.find((c) => 'size' in c)?.size, [2, 2]);
});

test('F.interpolate(size=...) at opset 11, batch 1 (Resize with empty scales and sizes; default half_pixel / round_prefer_floor) imports', async () => {
  const path = interpolate(11, [str('mode', 'nearest')], ['roi', 'scales', 'sizes'], [f32('roi', [0], []), f32('scales', [0], []), i64('sizes', [1, 2, 9, 12])], [1, 2, 9, 12], 1);
  const { check, configs } = await importAndCheck(path);
  assert.ok(check.passed, JSON.stringify(check));
  assert.deepEqual(configs.find((c) => 'size' in c)?.size, [3, 3]);
});

test('nn.Upsample at opset 9 (Upsample) and opset 10 (Resize with scales as input 1) import', async () => {
  for (const opset of [9, 10]) {
    const { check, classes } = await importAndCheck(interpolate(opset, [str('mode', 'nearest')], ['scales'], [f32('scales', [4], [1, 1, 2, 2])]));
    assert.ok(check.passed, `opset ${opset}: ${JSON.stringify(check)}`);
    assert.ok(classes.includes('UpSampling2D'));
  }
});

test('bilinear interpolation and nearest sampling that does not repeat pixels are errors saying what to use', async () => {
  await rejects(interpolate(13, [str('coordinate_transformation_mode', 'pytorch_half_pixel'), str('mode', 'linear')], ['', 'scales'], [f32('scales', [4], [1, 1, 2, 2])]), /node '\/up\/Resize' \(Resize, opset 13\): linear interpolation is not supported[\s\S]*hint: use nearest upsampling/);
  await rejects(interpolate(13, [str('coordinate_transformation_mode', 'asymmetric'), str('mode', 'nearest'), str('nearest_mode', 'round_prefer_ceil')], ['', 'scales'], [f32('scales', [4], [1, 1, 2, 2])]), /coordinate_transformation_mode 'asymmetric' and nearest_mode 'round_prefer_ceil' does not repeat pixels/);
  await rejects(interpolate(13, NEAREST_13, ['', 'scales'], [f32('scales', [4], [1, 1, 1.5, 1.5])], [2, 2, 4, 6]), /only upsampling by whole-number factors/);
});

test('a model exported in training mode is refused at the first BatchNormalization or Dropout, saying to export in eval mode', async () => {
  const bnInits = ['bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var'].map((n, i) => f32(n, [2], [1 + i, 0.5])); // var: [4, 0.5]
  const bn = writeModel('bn-train.onnx', [{ name: '/bn/BatchNormalization', opType: 'BatchNormalization', input: ['input', ...bnInits.map((t) => t.name)], output: ['output', 'rm', 'rv', 'sm', 'sv'], attribute: [{ name: 'epsilon', type: 1, f: 1e-5 }] }], {
    opset: 13,
    input: [1, 2, 3, 4],
    output: [1, 2, 3, 4],
    inits: bnInits,
  });
  await rejects(bn, /node '\/bn\/BatchNormalization' \(BatchNormalization, opset 13\): exported in training mode[\s\S]*hint: export the model in eval mode: call model\.eval\(\)/);
  const dropout = writeModel('dropout-train.onnx', [
    { name: '/drop/Constant', opType: 'Constant', output: ['ratio'], attribute: [{ name: 'value', type: 4, t: f32('', [], [0.5]) }] },
    { name: '/drop/Constant_1', opType: 'Constant', output: ['mode'], attribute: [{ name: 'value', type: 4, t: { dataType: 9, dims: [], int32Data: [1] } }] },
    { name: '/drop/Dropout', opType: 'Dropout', input: ['input', 'ratio', 'mode'], output: ['output', 'mask'] },
  ], { opset: 13, input: [1, 8], output: [1, 8] });
  await rejects(dropout, /node '\/drop\/Dropout' \(Dropout, opset 13\): exported in training mode[\s\S]*hint: export the model in eval mode/);
});

test('Dropout exported in eval mode (training_mode false) is the identity', async () => {
  const path = writeModel('dropout-eval.onnx', [
    { name: '/drop/Constant', opType: 'Constant', output: ['ratio'], attribute: [{ name: 'value', type: 4, t: f32('', [], [0.5]) }] },
    { name: '/drop/Constant_1', opType: 'Constant', output: ['mode'], attribute: [{ name: 'value', type: 4, t: { dataType: 9, dims: [], int32Data: [0] } }] },
    { name: '/drop/Dropout', opType: 'Dropout', input: ['input', 'ratio', 'mode'], output: ['d'] },
    { name: '/act/Relu', opType: 'Relu', input: ['d'], output: ['output'] },
  ], { opset: 13, input: ['batch', 8], output: ['batch', 8] });
  const { check } = await importAndCheck(path);
  assert.ok(check.passed && check.outputScale > 0.5, JSON.stringify(check));
});

test("a model with its initializers also listed as graph inputs (keep_initializers_as_inputs=True) loads without onnxruntime's warnings on the terminal", async () => {
  const inits = [f32('fc.weight', [3, 4], [0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1, 1.1, -1.2]), f32('fc.bias', [3], [0.1, 0.2, -0.3])];
  const path = writeModel('init-inputs.onnx', [{ name: '/fc/Gemm', opType: 'Gemm', input: ['input', 'fc.weight', 'fc.bias'], output: ['output'], attribute: [{ name: 'transB', type: 2, i: 1 }] }], {
    opset: 11,
    input: ['batch', 4],
    output: ['batch', 3],
    inits,
    initializersAsInputs: true,
  });
  const { dir: ws } = workspace('version: 1\nname: init-inputs\nstages:\n  model: { uses: load, with: { path: model.onnx } }\n');
  copyFileSync(path, join(ws, 'model.onnx'));
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /import check vs onnxruntime-node/);
  assert.doesNotMatch(r.stderr, /onnxruntime:|graph inputs/);
});

/** x.permute(0, 3, 1, 2) first (a PyTorch model fed channels-last images; tf2onnx's Keras conversions), then a conv. */
/** A conv on an input the model transposes to NCHW itself; `classifier`: then global pooling to 3 class scores. */
function channelsLastModel(classifier = false): string {
  const w = Array.from({ length: 3 * 2 * 3 * 3 }, (_, i) => Math.sin(i + 1));
  const head = classifier
    ? [
        { name: '/gap', opType: 'GlobalAveragePool', input: ['conv'], output: ['pooled'] },
        { name: '/flat', opType: 'Flatten', input: ['pooled'], output: ['output'], attribute: [{ name: 'axis', type: 2, i: 1 }] },
      ]
    : [];
  return writeModel(classifier ? 'nhwc-input-classifier.onnx' : 'nhwc-input.onnx', [
    { name: '/Transpose', opType: 'Transpose', input: ['input'], output: ['t'], attribute: [{ name: 'perm', type: 7, ints: [0, 3, 1, 2] }] },
    { name: '/c/Conv', opType: 'Conv', input: ['t', 'c.weight', 'c.bias'], output: [classifier ? 'conv' : 'output'], attribute: [{ name: 'kernel_shape', type: 7, ints: [3, 3] }] },
    ...head,
  ], { opset: 13, input: ['batch', 5, 6, 2], output: classifier ? ['batch', 3] : ['batch', 3, 3, 4], inits: [f32('c.weight', [3, 2, 3, 3], w), f32('c.bias', [3], [0.1, -0.1, 0.2])] });
}

test('an input the model transposes to NCHW itself is channels-last: the imported model takes it as it is, no permute', async () => {
  const { model, reference, info } = await importOnnx(tf, channelsLastModel(), { softmax: false });
  assert.deepEqual(model.inputs[0].shape, [null, 5, 6, 2]);
  assert.equal(info.inputLayout, 'plain');
  assert.deepEqual(model.layers.map((l) => l.getClassName()), ['InputLayer', 'Conv2D']);
  const check = await checkImport(tf, reference, info, channelsLastModel(), randomInputs([5, 6, 2], 2, 4), 2, { inputs: 'random' });
  assert.ok(check.passed && check.outputScale > 0.5, JSON.stringify(check));
  model.dispose();
});

test('compress init on a channels-last ONNX model does not tell the user to give channels-first data', async () => {
  const { dir: ws } = workspace('', 'unused.yaml');
  copyFileSync(channelsLastModel(true), join(ws, 'model.onnx'));
  const r = await cli(['init', 'model.onnx'], ws);
  assert.equal(r.exitCode, 0, r.stderr);
  const text = readFileSync(join(ws, 'compress.config.yaml'), 'utf8');
  assert.doesNotMatch(text, /layout: nchw|\[C, H, W\]/);
  assert.match(text, /input is \[5,6,2\]/);
});

/** nn.LayerNorm(6) on [N, 6] as torch.onnx.export writes it: the op at opset 17, the mean/variance chain below. */
function layerNormModel(opset: number, affine: boolean): string {
  const gamma = f32('ln.weight', [6], [1.5, 0.5, 1, 2, 0.8, 1.2]);
  const beta = f32('ln.bias', [6], [0.1, -0.2, 0.3, 0, 0.5, -0.1]);
  const scalar = (name: string, v: number) => ({ name, opType: 'Constant', output: [name], attribute: [{ name: 'value', type: 4, t: f32('', [], [v]) }] });
  const mean = (name: string, x: string, out: string) => ({ name, opType: 'ReduceMean', input: [x], output: [out], attribute: [{ name: 'axes', type: 7, ints: [-1] }] });
  const last = affine ? 'div' : 'output';
  const nodes: onnxProto.onnx.INodeProto[] =
    opset >= 17
      ? [{ name: '/ln/LayerNormalization', opType: 'LayerNormalization', input: ['input', 'ln.weight', 'ln.bias'], output: ['output'], attribute: [{ name: 'axis', type: 2, i: -1 }, { name: 'epsilon', type: 1, f: 1e-5 }] }]
      : [
          mean('/ln/ReduceMean', 'input', 'mu'),
          { name: '/ln/Sub', opType: 'Sub', input: ['input', 'mu'], output: ['d'] },
          scalar('/ln/Constant', 2),
          { name: '/ln/Pow', opType: 'Pow', input: ['d', '/ln/Constant'], output: ['sq'] },
          mean('/ln/ReduceMean_1', 'sq', 'var'),
          scalar('/ln/Constant_1', 1e-5),
          { name: '/ln/Add', opType: 'Add', input: ['var', '/ln/Constant_1'], output: ['ve'] },
          { name: '/ln/Sqrt', opType: 'Sqrt', input: ['ve'], output: ['sd'] },
          { name: '/ln/Div', opType: 'Div', input: ['d', 'sd'], output: [last] },
          ...(affine
            ? [
                { name: '/ln/Mul', opType: 'Mul', input: ['div', 'ln.weight'], output: ['scaled'] },
                { name: '/ln/Add_1', opType: 'Add', input: ['scaled', 'ln.bias'], output: ['output'] },
              ]
            : []),
        ];
  return writeModel(`ln-${opset}-${affine}.onnx`, nodes, { opset, input: ['batch', 6], output: ['batch', 6], inits: affine ? [gamma, beta] : [] });
}

for (const [opset, affine] of [[17, true], [13, true], [13, false]] as const) {
  test(`nn.LayerNorm${affine ? '' : '(elementwise_affine=False)'} at opset ${opset} imports as one LayerNormalization layer, equal to onnxruntime`, async () => {
    const { check, classes, configs } = await importAndCheck(layerNormModel(opset, affine));
    assert.ok(check.passed && check.outputScale > 0.5, JSON.stringify(check));
    assert.deepEqual(classes, ['InputLayer', 'LayerNormalization']);
    assert.ok(Math.abs((configs[1].epsilon as number) - 1e-5) < 1e-9);
  });
}

test('a model exported with a fixed batch of 8 imports and is checked on fewer test samples (repeated to one batch), then evaluates at any batch', async () => {
  const inits = [f32('fc.weight', [3, 4], [0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1, 1.1, -1.2]), f32('fc.bias', [3], [0.1, 0.2, -0.3])];
  const path = writeModel('batch8.onnx', [{ name: '/fc/Gemm', opType: 'Gemm', input: ['input', 'fc.weight', 'fc.bias'], output: ['output'], attribute: [{ name: 'transB', type: 2, i: 1 }] }], {
    opset: 13,
    input: [8, 4],
    output: [8, 3],
    inits,
  });
  const x = Array.from({ length: 10 * 4 }, (_, i) => Math.cos(i)).join(',');
  const { dir: ws } = workspace(`version: 1
name: batch8
data: { d: { source: files, features: d.csv, labelColumn: y, numClasses: 3, split: { train: 0.2, validation: 0.2, test: 0.6 } } }
stages:
  model: { uses: load, with: { path: model.onnx, data: d } }
  ev: { uses: evaluate, needs: [model], with: { data: d, latencySamples: 0 } }
`);
  copyFileSync(path, join(ws, 'model.onnx'));
  const rows = x.split(',').map(Number);
  writeFileSync(join(ws, 'd.csv'), ['a,b,c,d,y', ...Array.from({ length: 10 }, (_, i) => `${rows.slice(i * 4, i * 4 + 4).join(',')},${i % 3}`)].join('\n'));
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /import check vs onnxruntime-node.*repeated to the model's fixed batch of 8/);
  // The unchanged model: the summary's estimate (fp32 bytes / estimated bytes), not the .onnx file's bytes (its overhead).
  assert.match(r.stdout, /ev\s+ran\s+.*estimated ratio 1\.0x/);
});

test("x.view(x.size(0), -1) in a model exported with a fixed batch of 8 (the constant Reshape [8, -1]) keeps the batch axis and imports, equal to onnxruntime", async () => {
  const w = Array.from({ length: 3 * 6 }, (_, i) => Math.sin(i + 1) / 2);
  const path = writeModel('view8.onnx', [
    { name: '/Reshape', opType: 'Reshape', input: ['input', 'shape'], output: ['flat'] },
    { name: '/fc/Gemm', opType: 'Gemm', input: ['flat', 'fc.weight', 'fc.bias'], output: ['output'], attribute: [{ name: 'transB', type: 2, i: 1 }] },
  ], { opset: 13, input: [8, 2, 3], output: [8, 3], inits: [i64('shape', [8, -1]), f32('fc.weight', [3, 6], w), f32('fc.bias', [3], [0.1, 0, -0.1])] });
  const { model, reference, info } = await importOnnx(tf, path, { softmax: false });
  const check = await checkImport(tf, reference, info, path, randomInputs([2, 3], 8, 11), 8, { inputs: 'random' });
  assert.ok(check.passed && check.outputScale > 0.1, JSON.stringify(check));
  assert.deepEqual(model.layers.map((l) => l.getClassName()).slice(-1), ['Dense']);
  model.dispose();
});

test('a classifier ending in LogSoftmax (F.log_softmax, PyTorch\'s MNIST example) gets its softmax on the logits: no LogSoftmax layer left for the exporters, same probabilities', async () => {
  const w = Array.from({ length: 3 * 4 }, (_, i) => Math.cos(i) / 2);
  const path = writeModel('logsoftmax.onnx', [
    { name: '/fc/Gemm', opType: 'Gemm', input: ['input', 'fc.weight', 'fc.bias'], output: ['logits'], attribute: [{ name: 'transB', type: 2, i: 1 }] },
    { name: '/LogSoftmax', opType: 'LogSoftmax', input: ['logits'], output: ['output'], attribute: [{ name: 'axis', type: 2, i: 1 }] },
  ], { opset: 13, input: ['batch', 4], output: ['batch', 3], inits: [f32('fc.weight', [3, 4], w), f32('fc.bias', [3], [0.2, 0, -0.2])] });
  const { model, reference } = await importOnnx(tf, path);
  assert.deepEqual(model.layers.map((l) => (l.getConfig() as { activation?: string }).activation ?? l.getClassName()), ['InputLayer', 'linear', 'softmax']);
  const x = tf.tensor2d([[0.5, -1, 2, 0.25]]);
  const probs = (model.predict(x) as import('@tensorflow/tfjs').Tensor).dataSync();
  const logProbs = (reference.predict(x) as import('@tensorflow/tfjs').Tensor).dataSync();
  logProbs.forEach((v, i) => assert.ok(Math.abs(Math.exp(v) - probs[i]) < 1e-6, `${Math.exp(v)} vs ${probs[i]}`));
  model.dispose();
});
