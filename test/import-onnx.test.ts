import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import onnxProto from 'onnx-proto';
import { initEngine } from '../src/engine/backend.js';
import { InputError } from '../src/errors/input-error.js';
import { importOnnx } from '../src/model/load/onnx.js';
import { checkImport, randomInputs } from '../src/model/load/onnx-verify.js';
import { ROOT, cli } from './helpers.js';

/**
 * ONNX import of models exported by PyTorch in this test run (test/fixtures/torch_export.py, run
 * once for the file): an MLP (BatchNorm1d, a hand-written SiLU, LogSoftmax) and LeNet-5
 * (x.view(x.size(0), -1): a Shape/Gather/Unsqueeze/Concat chain) at opsets 11, 13 and 17, with
 * float16 initializers and with external data; per-channel scale / shift parameters after convs; hand-made graphs
 * for the errors.
 */

const { tf } = await initEngine('wasm');
const dir = mkdtempSync(join(tmpdir(), 'compress-onnx-'));
const SPECS = ['mlp:11', 'mlp:17:dynamic', 'lenet5:11', 'lenet5:13:dynamic', 'lenet5:17', 'mlp_f16:13', 'mlp_ext:13', 'scaleshift:13:dynamic'];

before(async () => {
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/torch_export.py'), dir, ...SPECS], { timeout: 240_000 });
});

const fixture = (name: string): string => join(dir, `${name}.onnx`);

/** Imports `file` and compares it with onnxruntime on seeded random inputs. */
async function importAndCheck(file: string) {
  const { model, reference, info } = await importOnnx(tf, file);
  const n = info.fixedBatch ?? 4;
  const shape = model.inputs[0].shape.slice(1) as number[];
  const check = await checkImport(tf, reference, info, file, randomInputs(shape, n, 3), n, { inputs: 'random' });
  const classes = model.layers.map((l) => l.getClassName());
  const activations = model.layers.map((l) => (l.getConfig() as { activation?: string }).activation).filter(Boolean);
  return { model, reference, info, check, classes, activations };
}

for (const opset of [11, 17]) {
  test(`MLP at opset ${opset} imports with outputs equal to onnxruntime's`, async () => {
    const { model, reference, check, classes, activations } = await importAndCheck(fixture(`mlp-${opset}`));
    assert.ok(check.passed && check.relativeDiff < 1e-5, JSON.stringify(check));
    assert.ok(check.outputScale > 0.01, 'outputs are not all near zero');
    assert.deepEqual(classes.filter((c) => c === 'Dense').length, 3);
    assert.ok(classes.includes('BatchNormalization'));
    assert.ok(activations.includes('swish'), `Mul(x, Sigmoid(x)) fused into swish: ${activations}`);
    // softmax(log_softmax(z)) = softmax(z): the model's softmax takes the logits; the LogSoftmax stays in the reference only.
    assert.deepEqual([activations.includes('logSoftmax'), activations[activations.length - 1]], [false, 'softmax']);
    assert.ok(reference.layers.some((l) => (l.getConfig() as { activation?: string }).activation === 'logSoftmax'));
    model.dispose();
  });
}

for (const opset of [11, 13, 17]) {
  test(`LeNet-5 at opset ${opset} imports with outputs equal to onnxruntime's`, async () => {
    const { model, info, check, classes } = await importAndCheck(fixture(`lenet5-${opset}`));
    assert.ok(check.passed && check.relativeDiff < 1e-5, JSON.stringify(check));
    assert.equal(info.inputLayout, 'nchw');
    assert.deepEqual(model.inputs[0].shape, [null, 28, 28, 1], 'NCHW [1, 28, 28] becomes NHWC [28, 28, 1]');
    assert.deepEqual(classes.filter((c) => c === 'Conv2D').length, 2);
    assert.deepEqual(classes.filter((c) => c === 'MaxPooling2D').length, 2);
    assert.ok(!classes.includes('Permute'), 'the flatten is absorbed into the first Dense kernel (rows permuted)');
    model.dispose();
  });
}

test('conv(x) * s + b with per-channel parameters [1, C, 1, 1] folds into the conv\'s kernel and bias (not when the conv output is read twice)', async () => {
  const { model, check, classes } = await importAndCheck(fixture('scaleshift-13'));
  assert.ok(check.passed && check.relativeDiff < 1e-5, JSON.stringify(check));
  assert.ok(check.outputScale > 0.01, 'outputs are not all near zero');
  assert.deepEqual(classes.filter((c) => c !== 'InputLayer'), ['Conv2D', 'Activation', 'ZeroPadding2D', 'DepthwiseConv2D', 'Activation', 'Conv2D', 'Conv2D', 'BatchNormalization', 'Add', 'GlobalAveragePooling2D', 'Dense', 'Activation']);
  const { params } = JSON.parse(readFileSync(join(dir, 'scaleshift-13.json'), 'utf8')) as { params: number };
  // PyTorch's 730 less s1 and s3 (8 + 12, folded into kernels); b1 and b2 are the bias-free convs' biases; y * s4 + y
  // keeps s4 as a per-channel affine (4 x 12 for 12). Without the folding: 890.
  assert.equal(params, 730);
  assert.equal(model.countParams(), params - 20 + 48 - 12);
  model.dispose();
});

test('dynamic batch axis: the imported model takes any batch size', async () => {
  const { model, info, check } = await importAndCheck(fixture('lenet5-13'));
  assert.equal(info.fixedBatch, null);
  assert.equal(check.samples, 4);
  assert.ok(check.passed);
  model.dispose();
});

test('float16 initializers (with Cast nodes) import', async () => {
  const { model, check } = await importAndCheck(fixture('mlp_f16-13'));
  assert.ok(check.passed && check.relativeDiff < 1e-5, JSON.stringify(check));
  model.dispose();
});

test('external data next to the model is read', async () => {
  assert.ok(existsSync(`${fixture('mlp_ext-13')}.data`));
  const { model, check } = await importAndCheck(fixture('mlp_ext-13'));
  assert.ok(check.passed, JSON.stringify(check));
  model.dispose();
});

test('a classifier ending in logits gets a Softmax (training sees probabilities); softmax: false keeps the exported output', async () => {
  const { model, reference, info } = await importOnnx(tf, fixture('lenet5-11'));
  assert.equal(info.appendedSoftmax, true);
  assert.equal(model.layers.at(-1)!.name, 'softmax');
  const x = tf.tensor(randomInputs([28, 28, 1], 2, 9), [2, 28, 28, 1]);
  const probs = (model.predict(x) as import('@tensorflow/tfjs').Tensor).arraySync() as number[][];
  const logits = (reference.predict(x) as import('@tensorflow/tfjs').Tensor).arraySync() as number[][];
  for (let i = 0; i < 2; i++) {
    assert.ok(Math.abs(probs[i].reduce((a, b) => a + b, 0) - 1) < 1e-5);
    const e = logits[i].map((v) => Math.exp(v));
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((v, j) => assert.ok(Math.abs(v / z - probs[i][j]) < 1e-6));
  }
  model.dispose();
  const plain = await importOnnx(tf, fixture('lenet5-11'), { softmax: false });
  assert.equal(plain.info.appendedSoftmax, false);
  assert.equal(plain.model, plain.reference);
  assert.equal(plain.model.layers.at(-1)!.name, 'fc3');
  plain.model.dispose();
});

test('the import check fails when the imported model computes something else', async () => {
  const { model, reference, info } = await importOnnx(tf, fixture('lenet5-13'));
  const dense = reference.layers.find((l) => l.getClassName() === 'Dense')!;
  const [k, b] = dense.getWeights();
  dense.setWeights([tf.mul(k, 1.01), b]);
  const check = await checkImport(tf, reference, info, fixture('lenet5-13'), randomInputs([28, 28, 1], 4, 3), 4, { inputs: 'random' });
  assert.equal(check.passed, false);
  assert.ok(check.relativeDiff > 1e-4);
  model.dispose();
});

// ---------------------------------------------------------------------------------------------
// Errors: hand-made graphs written with onnx-proto

const { onnx } = onnxProto;
function writeModel(name: string, nodes: onnxProto.onnx.INodeProto[], opts: { inputDims?: Array<number | string>; opset?: number; inits?: onnxProto.onnx.ITensorProto[] } = {}): string {
  const dim = (d: number | string) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d });
  const vi = (n: string, dims: Array<number | string>) => ({ name: n, type: { tensorType: { elemType: 1, shape: { dim: dims.map(dim) } } } });
  const bytes = onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: opts.opset ?? 13 }],
      graph: { name: 'g', node: nodes, input: [vi('x', opts.inputDims ?? ['N', 4])], output: [vi('y', ['N', 4])], initializer: opts.inits ?? [] },
    }),
  ).finish();
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

async function rejects(path: string, re: RegExp): Promise<void> {
  await assert.rejects(importOnnx(tf, path), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, re);
    assert.ok(e.message.includes(path));
    return true;
  });
}

test('an unsupported op is an error naming the node, its op type, the opset and what to do', async () => {
  const path = writeModel('sin.onnx', [{ name: 'wave', opType: 'Sin', input: ['x'], output: ['y'] }], { opset: 17 });
  await rejects(path, /node 'wave' \(Sin, opset 17\): op 'Sin' is not supported[\s\S]*hint: supported ops: .*Conv.*Replace the module/);
});

test('a dynamic dimension other than the batch is an error', async () => {
  const path = writeModel('dyn.onnx', [{ name: 'r', opType: 'Relu', input: ['x'], output: ['y'] }], { inputDims: ['N', 'features'] });
  await rejects(path, /input 'x' has a dynamic dimension 1 \(features\): only the batch axis may be dynamic[\s\S]*hint: export with fixed input sizes/);
});

test('an opset outside 9-21 is an error', async () => {
  const path = writeModel('old.onnx', [{ name: 'r', opType: 'Relu', input: ['x'], output: ['y'] }], { opset: 7 });
  await rejects(path, /opset 7 is not supported \(supported: 9-21\)/);
});

test('a weight-dependent shape that cannot fold is an error naming the node', async () => {
  // MatMul whose right operand is computed from the input: not a Dense layer.
  const path = writeModel('mm.onnx', [
    { name: 'sq', opType: 'Relu', input: ['x'], output: ['r'] },
    { name: 'prod', opType: 'MatMul', input: ['x', 'r'], output: ['y'] },
  ]);
  await rejects(path, /node 'prod' \(MatMul, opset 13\): input 1 \('r'\) must be a constant/);
});

// ---------------------------------------------------------------------------------------------
// Through the CLI: exit codes, no stack traces, the load stage's check in report.json

function recipeDir(model: string, extra = ''): string {
  const ws = mkdtempSync(join(tmpdir(), 'compress-onnx-ws-'));
  mkdirSync(join(ws, 'models'));
  for (const f of readdirSync(dir).filter((f) => f.startsWith(model))) copyFileSync(join(dir, f), join(ws, 'models', f));
  writeFileSync(join(ws, 'compress.config.yaml'), `version: 1\nname: onnx\nseed: 3\n${extra}stages:\n  model:\n    uses: load\n    with: { path: models/${model}.onnx }\n`);
  return ws;
}

test('load stage: a corrupt .onnx file fails with exit 1, a clear message and no stack', async () => {
  const ws = recipeDir('lenet5-13');
  const bytes = readFileSync(join(ws, 'models/lenet5-13.onnx'));
  writeFileSync(join(ws, 'models/lenet5-13.onnx'), bytes.subarray(0, 5000));
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 1, r.stderr + r.stdout);
  assert.match(r.stderr + r.stdout, /lenet5-13\.onnx: not a valid ONNX protobuf/);
  assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at .*\.js:\d+/);
});

test('load stage: missing external data fails with exit 1 naming the file to copy', async () => {
  const ws = recipeDir('mlp_ext-13');
  const { unlinkSync } = await import('node:fs');
  unlinkSync(join(ws, 'models/mlp_ext-13.onnx.data'));
  const r = await cli(['run'], ws);
  assert.equal(r.exitCode, 1, r.stderr + r.stdout);
  assert.match(r.stderr + r.stdout, /external data file 'mlp_ext-13\.onnx\.data' not found next to the model/);
  assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at .*\.js:\d+/);
});

test('load stage: imports LeNet-5, checks it on the recipe data against onnxruntime and reports the numbers', async () => {
  const ws = recipeDir('lenet5-13', 'data:\n  digits: { source: mnist, limit: 200 }\n');
  const r = await cli(['run', '--json'], ws);
  assert.equal(r.exitCode, 0, r.stderr + r.stdout);
  const reports = join(ws, '.compress/reports');
  const run = readdirSync(reports)[0];
  const report = JSON.parse(readFileSync(join(reports, run, 'report.json'), 'utf8'));
  const stage = report.stages.find((s: { id: string }) => s.id === 'model');
  const check = stage.metrics.importCheck;
  assert.match(check.runtime, /^onnxruntime-node@/);
  assert.match(check.inputs, /dataset 'digits'/);
  assert.equal(check.samples, 8);
  assert.ok(check.passed && check.relativeDiff <= check.tolerance && check.outputScale > 0);
  assert.equal(stage.metrics.importRelativeDiff, check.relativeDiff);
});

test('compress layers and compress init read an .onnx file', async () => {
  const ws = recipeDir('lenet5-11');
  const layers = await cli(['layers', 'models/lenet5-11.onnx'], ws);
  assert.equal(layers.exitCode, 0, layers.stderr);
  assert.match(layers.stdout, /conv1\s+Conv2D/);
  assert.match(layers.stdout, /fc3\s+Dense/);
  const init = await cli(['init', 'models/lenet5-11.onnx', '--output', 'new.yaml'], ws);
  assert.equal(init.exitCode, 0, init.stderr);
  const text = readFileSync(join(ws, 'new.yaml'), 'utf8');
  assert.match(text, /uses: load\n\s+with: \{ path: "models\/lenet5-11.onnx" \}/);
  assert.match(text, /source: mnist/, 'a 1x28x28 model with 10 outputs takes the MNIST digits');
});

test('importing the same file twice gives byte-identical model artifacts', async () => {
  const { saveModelDir } = await import('../src/model/io.js');
  const { emptyMeta } = await import('../src/model/meta.js');
  const out: string[] = [];
  for (let i = 0; i < 2; i++) {
    const { model } = await importOnnx(tf, fixture('mlp-11'));
    const d = mkdtempSync(join(tmpdir(), 'compress-onnx-det-'));
    await saveModelDir(tf, model, emptyMeta(), d);
    model.dispose();
    out.push(readFileSync(join(d, 'model.json'), 'utf8') + readFileSync(join(d, 'weights.bin')).toString('base64'));
  }
  assert.equal(out[0], out[1]);
});

test("validate: load 'from' must name a stage in needs", async () => {
  const ws = mkdtempSync(join(tmpdir(), 'compress-onnx-from-'));
  writeFileSync(join(ws, 'compress.config.yaml'), 'version: 1\nstages:\n  model:\n    uses: load\n    with: { from: torch, path: model.onnx }\n');
  const r = await cli(['validate'], ws);
  assert.equal(r.exitCode, 2, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /compress\.config\.yaml:5:\d+ .*'torch' is not in needs/);
});
