import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildIr, exportModel, verifyExport, type ExportPrecision, type ExportTarget } from '../src/export/index.js';
import { runIr } from '../src/export/quant.js';
import { LAYERS } from '../src/export/layers.js';
import { emptyMeta } from '../src/model/meta.js';
import { engine, tempDir } from './fixtures/export/models.js';
import { decisiveSamples, layerZoo } from './fixtures/layer-zoo.js';

test('layer table: the zoo model uses every class of the table, and its IR computes what tfjs computes', async () => {
  const tf = await engine();
  const model = layerZoo(tf);
  const classes = new Set(model.layers.map((l) => l.getClassName()));
  for (const cls of Object.keys(LAYERS)) assert.ok(classes.has(cls), `the zoo model lacks ${cls}`);
  const ir = buildIr(model, 'tflite');
  // The stem's ZeroPadding2D folded into the conv's SAME padding; the other one stayed a pad op.
  assert.equal(ir.ops.filter((o) => o.kind === 'pad').length, 1);
  const stem = ir.ops.find((o) => o.layer === 'conv_stem');
  assert.ok(stem?.kind === 'conv2d' && stem.padding === 'same', JSON.stringify(stem?.kind));
  const x = tf.randomUniform([8, 28, 28, 1], 0, 1, 'float32', 5);
  const want = (model.predict(x) as ReturnType<typeof tf.tensor>).dataSync();
  const got = runIr(tf, ir, x).dataSync();
  let maxDiff = 0;
  for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(want[i] - got[i]));
  assert.ok(maxDiff < 1e-5, `max |diff| ${maxDiff}`);
});

test('layer table: the zoo model exports to tflite, onnx and tfjs (float and int8) and agrees in each runtime', async () => {
  const tf = await engine();
  const model = layerZoo(tf);
  const { test: data, calibration } = decisiveSamples(tf, model);
  const cases: Array<[ExportTarget, ExportPrecision]> = [['tflite', 'float32'], ['tflite', 'int8'], ['onnx', 'float32'], ['onnx', 'int8'], ['tfjs', 'float32']];
  for (const [target, precision] of cases) {
    const dir = tempDir(`zoo-${target}-${precision}`);
    const res = await exportModel(tf, model, emptyMeta(), { target, precision, calibration }, dir);
    if (target === 'onnx') await execa('/usr/bin/python3', ['-c', 'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', join(dir, 'model.onnx')]);
    const v = await verifyExport(tf, { target, precision, dir, files: res.files }, model, data);
    console.log(`zoo ${target} ${precision}: agreement ${v.agreement} max|diff| ${v.maxAbsDiff} accuracy ${v.accuracy} ${v.runtime}`);
    assert.ok(v.agreement >= (precision === 'int8' ? 0.99 : 0.999), `${target} ${precision}: ${JSON.stringify(v)}`);
  }
});

test("layer table: tfjs's gelu_new (tanh GELU) exports to tflite and onnx and matches tfjs", async () => {
  const tf = await engine();
  const input = tf.input({ shape: [12], name: 'input' });
  const h = tf.layers.dense({ units: 16, activation: 'gelu_new', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }), name: 'fc' }).apply(input);
  const model = tf.model({ inputs: input, outputs: h as ReturnType<typeof tf.input> });
  const x = tf.randomNormal([4, 12], 0, 2, 'float32', 3);
  const want = (model.predict(x) as ReturnType<typeof tf.tensor>).dataSync();
  const ir = buildIr(model, 'onnx');
  assert.deepEqual(ir.ops.map((o) => o.kind), ['dense', 'gelu']);
  const got = runIr(tf, ir, x).dataSync();
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(want[i] - got[i]) < 1e-5, `${i}: ${want[i]} vs ${got[i]}`);
  const data = { x: x.dataSync() as Float32Array, y: new Int32Array(4), n: 4, sampleShape: [12], numClasses: 16 };
  for (const target of ['tflite', 'onnx'] as const) {
    const dir = tempDir(`gelu-new-${target}`);
    const res = await exportModel(tf, model, emptyMeta(), { target, precision: 'float32' }, dir);
    const v = await verifyExport(tf, { target, precision: 'float32', dir, files: res.files }, model, data);
    assert.ok(v.maxAbsDiff < 1e-4, `${target}: ${JSON.stringify(v)}`);
  }
});

test("Keras's hard_swish activation loads from a .h5 file, computes x*relu6(x+3)/6 and exports to tflite, onnx and tfjs", async () => {
  const tf = await engine();
  const { writeKeras2H5 } = await import('./fixtures/keras-writer.js');
  const { loadModelFrom } = await import('../src/model/load/index.js');
  const { writeFileSync } = await import('node:fs');
  const input = tf.input({ shape: [12], name: 'input' });
  const act = 'hardSwish' as unknown as 'relu'; // tfjs's name; the .h5 stores Keras's hard_swish
  const h = tf.layers.dense({ units: 16, activation: act, kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }), name: 'fc' }).apply(input);
  const src = tf.model({ inputs: input, outputs: h as ReturnType<typeof tf.input> });
  const h5 = join(tempDir('hard-swish'), 'hs.h5');
  writeFileSync(h5, await writeKeras2H5(src));
  const model = await loadModelFrom(tf, h5);
  assert.equal(model.layers.find((l) => l.name === 'fc')!.getConfig().activation, 'hardSwish');
  const x = tf.randomNormal([6, 12], 0, 3, 'float32', 3);
  const z = tf.matMul(x, model.layers.find((l) => l.name === 'fc')!.getWeights()[0]).dataSync();
  const want = (model.predict(x) as ReturnType<typeof tf.tensor>).dataSync();
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(want[i] - (z[i] * Math.min(Math.max(z[i] + 3, 0), 6)) / 6) < 1e-5, `${i}: ${want[i]} for z ${z[i]}`);
  assert.ok(Array.from(z).some((v) => v < -3) && Array.from(z).some((v) => v > 3), 'inputs cover both clipped ends');
  const ir = buildIr(model, 'onnx');
  assert.deepEqual(ir.ops.map((o) => o.kind), ['dense', 'hard_swish']);
  const data = { x: x.dataSync() as Float32Array, y: new Int32Array(6), n: 6, sampleShape: [12], numClasses: 16 };
  for (const target of ['tflite', 'onnx', 'tfjs'] as const) {
    const dir = tempDir(`hard-swish-${target}`);
    const res = await exportModel(tf, model, emptyMeta(), { target, precision: 'float32' }, dir);
    const v = await verifyExport(tf, { target, precision: 'float32', dir, files: res.files }, model, data);
    assert.ok(v.maxAbsDiff < 1e-4, `${target}: ${JSON.stringify(v)}`);
  }
});

test('Reshape [P, C/k, k] -> Cropping2D -> Reshape back (the importer\'s channel slice) becomes one slice op computing what tfjs computes', async () => {
  const tf = await engine();
  const input = tf.input({ shape: [4, 3, 6] });
  const rows = tf.layers.reshape({ targetShape: [12, 3, 2] }).apply(input);
  const cut = tf.layers.cropping2D({ cropping: [[0, 0], [1, 1]] }).apply(rows);
  const out = tf.layers.reshape({ targetShape: [4, 3, 2] }).apply(cut) as ReturnType<typeof tf.input>;
  const model = tf.model({ inputs: input, outputs: out });
  const ir = buildIr(model, 'onnx');
  assert.deepEqual(ir.ops.map((o) => o.kind === 'slice' ? { kind: o.kind, begin: o.begin, size: o.size } : { kind: o.kind }), [{ kind: 'slice', begin: [0, 0, 2], size: [4, 3, 2] }]);
  const x = tf.randomUniform([2, 4, 3, 6], -1, 1, 'float32', 3);
  assert.deepEqual(Array.from(runIr(tf, ir, x).dataSync()), Array.from((model.predict(x) as ReturnType<typeof tf.tensor>).dataSync()));
  model.dispose();
});
