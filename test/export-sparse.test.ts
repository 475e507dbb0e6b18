import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { execa } from 'execa';
import { exportModel, verifyExport, type ExportPrecision, type ExportTarget } from '../src/export/index.js';
import { onnxSparseInitializers } from '../src/export/onnx/export.js';
import { exportStage } from '../src/stages/export.js';
import { readTflite } from '../src/export/tflite/reader.js';
import { toSparse } from '../src/export/tflite/sparsity.js';
import { Op } from '../src/export/tflite/schema.js';
import { emptyMeta } from '../src/model/meta.js';
import { cachedTrainedModel, engine, tempDir, type Trained } from './fixtures/export/models.js';

/** Prunes every kernel of `t` by magnitude: `sparsity`, `last` for the output layer. */
function prune(t: Trained, sparsity: number, last = sparsity): void {
  for (const layer of t.model.layers) {
    const ws = layer.getWeights();
    if (!ws.length || ws[0].shape.length < 2) continue; // kernels (a depthwise conv before BatchNorm has no bias)
    const k = Float32Array.from(ws[0].dataSync() as Float32Array);
    const s = layer.name === t.model.layers[t.model.layers.length - 1].name ? last : sparsity;
    const cut = Float32Array.from(k, Math.abs).sort()[Math.floor(k.length * s)];
    for (let i = 0; i < k.length; i++) if (Math.abs(k[i]) < cut) k[i] = 0;
    layer.setWeights([tf.tensor(k, ws[0].shape), ...ws.slice(1)]);
  }
}

// LeNet-300-100 pruned to 90% (70% in the output layer, as the default recipe does) by weight magnitude.
let tf: typeof tfType;
let t: Trained;
before(async () => {
  tf = await engine();
  t = await cachedTrainedModel(tf, 'lenet-300-100');
  prune(t, 0.9, 0.7);
});

async function write(precision: ExportPrecision, storage: 'auto' | 'dense' | 'sparse', model: Trained = t, target: ExportTarget = 'tflite') {
  const dir = tempDir(`sparse-${target}-${precision}-${storage}`);
  const res = await exportModel(tf, model.model, emptyMeta(), { target, precision, storage, calibration: model.calibration }, dir);
  const bytes = new Uint8Array(readFileSync(join(dir, res.files[0])));
  return { dir, res, bytes, file: target === 'tflite' ? readTflite(bytes) : { tensors: [], operators: [] } };
}

test('CSR encoding: values in row-major order, row segments and column indices', () => {
  const sp = toSparse(Int8Array.from([0, 3, 0, 0, 0, 0, -2, 5]), [2, 4]);
  assert.deepEqual(Array.from(sp.values), [3, -2, 5]);
  assert.deepEqual(sp.sparsity.dims.map((d) => d.format), [0, 1]);
  assert.deepEqual(sp.sparsity.dims[1].segments, [0, 1, 3]);
  assert.deepEqual(sp.sparsity.dims[1].indices, [1, 2, 3]);
});

test('CSR encoding: a last dimension over 256 is split in equal parts of <= 256 so its indices take one byte', () => {
  // Every odd column of a 3 x 600 tensor is non-zero: 2-byte column indices unsplit, 1 byte split.
  const data = Float32Array.from({ length: 3 * 600 }, (_, i) => (i % 2 ? i : 0));
  const sp = toSparse(data, [3, 600]);
  assert.deepEqual(sp.shape, [3, 3, 200]);
  assert.deepEqual(sp.sparsity.dims.map((d) => [d.format, d.denseSize]), [[0, 3], [0, 3], [1, 200]]);
  assert.deepEqual(sp.sparsity.dims[2].indices!.slice(99, 102), [199, 1, 3], 'part 0 ends at column 199, part 1 starts at column 201');
  assert.equal(sp.sparsity.dims[2].segments!.length, 3 * 3 + 1);
  assert.deepEqual(Array.from(sp.values.subarray(0, 2)), [1, 3]);
});

test('90%-sparse LeNet-300-100: the sparse .tflite is <= 40% of the dense int8 file and LiteRT gives the same outputs', async () => {
  const dense = await write('int8', 'dense');
  const sparse = await write('dynamic-int8', 'auto');
  assert.equal(sparse.file.tensors.filter((x) => x.sparse).length, 3, 'the three Dense kernels are sparse tensors');
  assert.equal(sparse.file.operators.filter((o) => o.code === Op.DENSIFY).length, 3);
  const ratio = sparse.res.bytes / dense.res.bytes;
  assert.ok(ratio <= 0.4, `sparse ${sparse.res.bytes} B is ${(ratio * 100).toFixed(1)}% of dense int8 ${dense.res.bytes} B`);
  const v = await verifyExport(tf, { target: 'tflite', precision: 'dynamic-int8', dir: sparse.dir, files: sparse.res.files }, t.model, t.test);
  assert.ok(v.agreement >= 0.995, JSON.stringify(v));
});

test('float32 sparse weights (CSR + DENSIFY) run in LiteRT bit-for-bit like the dense file', async () => {
  const sparse = await write('float32', 'auto');
  const dense = await write('float32', 'dense');
  assert.ok(sparse.res.bytes < dense.res.bytes * 0.25, `${sparse.res.bytes} vs ${dense.res.bytes}`);
  const v = await verifyExport(tf, { target: 'tflite', precision: 'float32', dir: sparse.dir, files: sparse.res.files }, t.model, t.test);
  assert.equal(v.agreement, 1);
  assert.ok(v.maxAbsDiff < 1e-4, String(v.maxAbsDiff));
});

test('storage: dense writes no sparse tensor', async () => {
  const { file } = await write('dynamic-int8', 'dense');
  assert.equal(file.tensors.filter((x) => x.sparse).length, 0);
  assert.equal(file.operators.filter((o) => o.code === Op.DENSIFY).length, 0);
});

test('full int8: sparse kernels read through DENSIFY + RESHAPE, under 40% of the dense int8 file, and LiteRT gives the dense file\'s outputs', async () => {
  const sparse = await write('int8', 'auto');
  const dense = await write('int8', 'dense');
  assert.equal(sparse.file.tensors.filter((x) => x.sparse).length, 3);
  // Each FULLY_CONNECTED reads its weights from a RESHAPE of the DENSIFY output (XNNPACK cannot prepare it straight from DENSIFY).
  const producer = new Map(sparse.file.operators.flatMap((o) => o.outputs.map((t) => [t, o.code] as const)));
  const fcs = sparse.file.operators.filter((o) => o.code === Op.FULLY_CONNECTED);
  assert.deepEqual(fcs.map((o) => producer.get(o.inputs[1])), [Op.RESHAPE, Op.RESHAPE, Op.RESHAPE]);
  assert.ok(sparse.res.bytes < dense.res.bytes * 0.4, `sparse ${sparse.res.bytes} B vs dense ${dense.res.bytes} B`);
  // (threshold 0: the comparison here is sparse file vs dense file, not the int8 gate.)
  const vs = await verifyExport(tf, { target: 'tflite', precision: 'int8', dir: sparse.dir, files: sparse.res.files }, t.model, t.test, { threshold: 0 });
  const vd = await verifyExport(tf, { target: 'tflite', precision: 'int8', dir: dense.dir, files: dense.res.files }, t.model, t.test, { threshold: 0 });
  assert.equal(vs.maxAbsDiff, vd.maxAbsDiff);
  assert.equal(vs.agreement, vd.agreement);
});

test('full int8 sparse depthwise kernels (per-channel scales on the last axis) run in LiteRT like the dense int8 file', async () => {
  const cnn = await cachedTrainedModel(tf, 'dw-cnn');
  prune(cnn, 0.8);
  const sparse = await write('int8', 'sparse', cnn);
  const dense = await write('int8', 'dense', cnn);
  const dw = sparse.file.tensors.filter((x) => x.sparse && x.shape[0] === 1 && x.shape.length === 5);
  assert.ok(dw.length > 0 && dw.every((x) => x.shape[3] === 1 && x.scales === x.shape[4]), JSON.stringify(dw));
  const vs = await verifyExport(tf, { target: 'tflite', precision: 'int8', dir: sparse.dir, files: sparse.res.files }, cnn.model, cnn.test, { threshold: 0 });
  const vd = await verifyExport(tf, { target: 'tflite', precision: 'int8', dir: dense.dir, files: dense.res.files }, cnn.model, cnn.test, { threshold: 0 });
  // The same int8 weights: LiteRT may run the densified kernels on another path than the dense file's
  // (its requantization rounds a step apart), so the two agree within one step of the int8 softmax output.
  assert.equal(vs.agreement, vd.agreement);
  assert.ok(Math.abs(vs.maxAbsDiff - vd.maxAbsDiff) <= 1 / 256, `${vs.maxAbsDiff} vs ${vd.maxAbsDiff}`);
});

test('storage: sparse where the target/precision has no sparse encoding is refused, naming why (validate and export)', async () => {
  const issues = exportStage.check!({ targets: [{ target: 'tflite', precision: 'float16', storage: 'sparse' }, { target: 'tfjs', precision: 'float32' }], storage: 'sparse' } as never, { id: 'export', needs: [] });
  assert.equal(issues.length, 2, JSON.stringify(issues));
  assert.deepEqual(issues[0].path, ['with', 'targets', 0, 'storage']);
  assert.match(issues[0].message, /tflite float16 exports cannot store weights sparse \(kept dense: float16 weights are already DEQUANTIZE inputs\)/);
  assert.deepEqual(issues[1].path, ['with', 'storage']);
  assert.match(issues[1].message, /tfjs float32 exports cannot store weights sparse \(TF.js weight shards have no sparse encoding\)/);
  await assert.rejects(write('int4', 'sparse'), /storage 'sparse': tflite int4 exports cannot store weights sparse/);
});

test('sparse Conv2D kernels (CSR + DENSIFY): a pruned LeNet-5 .tflite is smaller and LiteRT gives the dense outputs (float32, dynamic-int8)', async () => {
  const cnn = await cachedTrainedModel(tf, 'lenet-5');
  prune(cnn, 0.8);
  for (const precision of ['float32', 'dynamic-int8'] as const) {
    const sparse = await write(precision, 'auto', cnn);
    const dense = await write(precision, 'dense', cnn);
    // The 50x5x5x20 kernel goes sparse; the 500-weight first one only where that is smaller (float32, not int8).
    const conv = sparse.file.tensors.filter((x) => x.sparse && x.shape.length === 4).map((x) => x.shape.join('x'));
    assert.deepEqual(conv, precision === 'float32' ? ['20x5x5x1', '50x5x5x20'] : ['50x5x5x20'], precision);
    assert.ok(sparse.res.bytes < dense.res.bytes * 0.7, `${precision}: ${sparse.res.bytes} vs ${dense.res.bytes}`);
    const v = await verifyExport(tf, { target: 'tflite', precision, dir: sparse.dir, files: sparse.res.files }, cnn.model, cnn.test);
    assert.ok(v.agreement >= 0.995 && v.maxAbsDiff < (precision === 'float32' ? 1e-4 : 5e-3), `${precision}: ${JSON.stringify(v)}`);
  }
});

test('sparse depthwise kernels (dw-cnn, storage: sparse) run in LiteRT bit-for-bit like the dense file', async () => {
  const cnn = await cachedTrainedModel(tf, 'dw-cnn');
  prune(cnn, 0.8);
  const sparse = await write('float32', 'sparse', cnn);
  assert.ok(sparse.file.tensors.some((x) => x.sparse && x.shape[0] === 1 && x.shape.length === 4), 'a depthwise kernel [1, H, W, C] is sparse');
  const v = await verifyExport(tf, { target: 'tflite', precision: 'float32', dir: sparse.dir, files: sparse.res.files }, cnn.model, cnn.test);
  assert.equal(v.agreement, 1);
  assert.ok(v.maxAbsDiff < 1e-4, String(v.maxAbsDiff));
});

test('onnx storage: sparse writes sparse_initializers (float32 <= 35% of dense, int8 smaller) that onnxruntime runs with the dense outputs', async () => {
  for (const precision of ['float32', 'int8'] as const) {
    const sparse = await write(precision, 'sparse', t, 'onnx');
    const dense = await write(precision, 'dense', t, 'onnx');
    assert.equal(onnxSparseInitializers(sparse.bytes), 3, precision);
    assert.ok(sparse.res.bytes < dense.res.bytes * (precision === 'float32' ? 0.35 : 0.95), `${precision}: ${sparse.res.bytes} vs ${dense.res.bytes}`);
    const vs = await verifyExport(tf, { target: 'onnx', precision, dir: sparse.dir, files: sparse.res.files }, t.model, t.test, { threshold: 0 });
    const vd = await verifyExport(tf, { target: 'onnx', precision, dir: dense.dir, files: dense.res.files }, t.model, t.test, { threshold: 0 });
    assert.equal(vs.maxAbsDiff, vd.maxAbsDiff, `${precision}: the runtime densifies to the same weights`);
    assert.equal(vs.agreement, vd.agreement);
    if (precision === 'int8') assert.deepEqual(vs.quantizedOps, vd.quantizedOps, 'QDQ still fuses');
  }
});

test("onnx storage: auto stays dense, because onnx's checker (full_check) rejects a sparse_initializer feeding Gemm", async () => {
  const auto = await write('float32', 'auto', t, 'onnx');
  assert.equal(onnxSparseInitializers(auto.bytes), 0);
  const sparse = await write('float32', 'sparse', t, 'onnx');
  const check = (dir: string, full: boolean) =>
    execa('/usr/bin/python3', ['-c', `import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=${full ? 'True' : 'False'})`, join(dir, 'model.onnx')], { reject: false });
  assert.equal((await check(auto.dir, true)).exitCode, 0);
  assert.equal((await check(sparse.dir, false)).exitCode, 0, 'structurally valid');
  const full = await check(sparse.dir, true);
  assert.notEqual(full.exitCode, 0, 'if onnx full_check accepts sparse initializers now, auto may use them');
  assert.match(full.stderr, /sparse_tensor\(float\)/);
});
