/**
 * int4 exports (issue 17): TFLite INT4 tensors and ONNX INT4 initializers (opset 21), each run in its runtime and
 * compared with the model their integers compute (the fake-quantized int4 weights), and int8 exports that keep
 * a quantize stage's 4-bit layers as INT4.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import onnxProto from 'onnx-proto';
import { exportLayerErrors, exportModel, verifyExport, type ExportPrecision, type ExportTarget, type LayerError } from '../src/export/index.js';
import { readTflite } from '../src/export/tflite/reader.js';
import { Op, TensorType } from '../src/export/tflite/schema.js';
import { packInt4, unpackInt4 } from '../src/util/int4.js';
import { quantizeLinear, toLinearWeightQuant } from '../src/compression/linear.js';
import { emptyMeta, type ModelMeta } from '../src/model/meta.js';
import { cachedTrainedModel, engine, tempDir, type Trained } from './fixtures/export/models.js';

let tf: typeof tfType;
let mlp: Trained;
before(async () => {
  tf = await engine();
  mlp = await cachedTrainedModel(tf, 'lenet-300-100');
});

async function write(t: Trained, target: ExportTarget, precision: ExportPrecision, meta: ModelMeta = emptyMeta()) {
  const dir = tempDir(`lowbit-${target}-${precision}`);
  const res = await exportModel(tf, t.model, meta, { target, precision, calibration: t.calibration }, dir);
  return { dir, res, bytes: new Uint8Array(readFileSync(join(dir, res.files[0]))) };
}

test('int4 packing: two values per byte, the first in the low nibble, sign-extended back', () => {
  const q = Int8Array.from([1, -1, 7, -8, 3]);
  assert.deepEqual(Array.from(packInt4(q)), [0xf1, 0x87, 0x03]);
  assert.deepEqual(Array.from(unpackInt4(packInt4(q), q.length)), Array.from(q));
  assert.throws(() => packInt4(Int8Array.from([8])), /does not fit int4/);
});

test('tflite int4: INT4 kernels + DEQUANTIZE (v6), about half the int8 file, and LiteRT computes the fake-quantized int4 model', async () => {
  const int4 = await write(mlp, 'tflite', 'int4');
  const int8 = await write(mlp, 'tflite', 'dynamic-int8');
  const file = readTflite(int4.bytes);
  assert.equal(file.tensors.filter((t) => t.type === TensorType.INT4).length, 3, 'the three Dense kernels are INT4');
  const deq = file.operators.filter((o) => o.code === Op.DEQUANTIZE);
  assert.equal(deq.length, 3);
  assert.ok(deq.every((o) => o.version === 6), JSON.stringify(deq));
  assert.ok(int4.res.bytes < int8.res.bytes * 0.55, `int4 ${int4.res.bytes} B vs dynamic-int8 ${int8.res.bytes} B`);
  const v = await verifyExport(tf, { target: 'tflite', precision: 'int4', dir: int4.dir, files: int4.res.files }, mlp.model, mlp.test, { meta: emptyMeta() });
  assert.equal(v.reference, 'fake-quantized int4 weights');
  assert.equal(v.agreement, 1);
  assert.ok(v.maxAbsDiff < 1e-4, String(v.maxAbsDiff));
});

test('onnx int4: opset 21, INT4 initializers into DequantizeLinear, and onnxruntime computes the fake-quantized int4 model', async () => {
  const int4 = await write(mlp, 'onnx', 'int4');
  const float = await write(mlp, 'onnx', 'float32');
  const m = onnxProto.onnx.ModelProto.decode(int4.bytes);
  assert.equal(Number(m.opsetImport[0].version), 21);
  const kernels = m.graph!.initializer!.filter((t) => t.dataType === 22);
  assert.equal(kernels.length, 3, 'three INT4 kernels');
  assert.ok(kernels.every((k) => k.rawData!.length === Math.ceil(k.dims!.reduce((a, b) => Number(a) * Number(b), 1) as number / 2)), 'packed two per byte');
  assert.ok(int4.res.bytes < float.res.bytes * 0.15, `int4 ${int4.res.bytes} B vs float32 ${float.res.bytes} B`);
  const v = await verifyExport(tf, { target: 'onnx', precision: 'int4', dir: int4.dir, files: int4.res.files }, mlp.model, mlp.test, { meta: emptyMeta() });
  assert.equal(v.agreement, 1);
  assert.ok(v.maxAbsDiff < 1e-4, String(v.maxAbsDiff));
});

test('int4 conv and depthwise kernels (dw-cnn) run in LiteRT and onnxruntime like the fake-quantized int4 model', async () => {
  const cnn = await cachedTrainedModel(tf, 'dw-cnn');
  for (const target of ['tflite', 'onnx'] as const) {
    const e = await write(cnn, target, 'int4');
    const v = await verifyExport(tf, { target, precision: 'int4', dir: e.dir, files: e.res.files }, cnn.model, cnn.test, { meta: emptyMeta() });
    assert.equal(v.agreement, 1, target);
    assert.ok(v.maxAbsDiff < 1e-4, `${target}: ${v.maxAbsDiff}`);
  }
});

test('int8 keeps a layer the quantize stage left at 4 bits as INT4 (FULLY_CONNECTED v10), and LiteRT agrees with the model', async () => {
  // The model holds the 4-bit fake-quantized kernel of its first Dense layer, as the quantize stage leaves it.
  const layer = mlp.model.layers.find((l) => l.getWeights().length === 2)!;
  const [k, b] = layer.getWeights();
  const original = k.clone();
  const r = quantizeLinear(k.dataSync(), k.shape, { bits: 4, symmetric: true, axis: -1 });
  layer.setWeights([tf.tensor(r.dequantized, k.shape), b]);
  try {
    const meta = emptyMeta();
    meta.weightQuant[layer.name] = toLinearWeightQuant(r);
    const e = await write(mlp, 'tflite', 'int8', meta);
    const file = readTflite(e.bytes);
    const int4 = file.tensors.filter((t) => t.type === TensorType.INT4);
    assert.deepEqual(int4.map((t) => t.name), [`${layer.name}/kernel`]);
    const fcVersions = file.operators.filter((o) => o.code === Op.FULLY_CONNECTED).map((o) => o.version);
    assert.deepEqual(fcVersions, [10, 4, 4]);
    const v = await verifyExport(tf, { target: 'tflite', precision: 'int8', dir: e.dir, files: e.res.files }, mlp.model, mlp.test);
    assert.ok(v.agreement >= 0.99, JSON.stringify(v));
  } finally {
    layer.setWeights([original, b]);
  }
});

test('int4 exports report the simulated per-layer error of their 4-bit weights, below the int8 weights\' SNR in every layer', async () => {
  const n = 32;
  const layers = async (precision: ExportPrecision) => (await exportLayerErrors(tf, mlp.model, emptyMeta(), { target: 'tflite', precision }, mlp.test.x, n))?.layers;
  const [int4, int8] = await Promise.all([layers('int4'), layers('dynamic-int8')]);
  assert.ok(int4 && int8 && int4.length === int8.length && int4.length > 0);
  const dense = int4.filter((l) => l.op === 'dense');
  assert.equal(dense.length, 3);
  for (const l of dense) {
    const i8: LayerError = int8.find((x) => x.layer === l.layer)!;
    assert.ok(Number.isFinite(l.snrDb) && l.snrDb < i8.snrDb - 6, `${l.layer}: int4 ${l.snrDb} dB vs int8 ${i8.snrDb} dB`);
  }
});
