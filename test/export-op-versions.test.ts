import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { join } from 'node:path';
import { exportModel, verifyExport } from '../src/export/index.js';
import { tfliteRunner } from '../src/export/verify/runners.js';
import { opVersion, type OpSignature } from '../src/export/tflite/op-versions.js';
import { readTflite } from '../src/export/tflite/reader.js';
import { Op, TensorType } from '../src/export/tflite/schema.js';
import { emptyMeta } from '../src/model/meta.js';
import { cachedTrainedModel, engine, tempDir } from './fixtures/export/models.js';

const { FLOAT32: F32, FLOAT16: F16, INT8: I8, INT16: I16, INT32: I32, INT4: I4 } = TensorType;
const sig = (input: number, weight: number | undefined, output: number, more: Partial<OpSignature> = {}): OpSignature => ({
  input, weight, output, inputCount: weight === undefined ? 1 : 3, inputRank: 4, perChannel: false, sparseWeight: false, asymmetricInputs: false, keepNumDims: false, dilated: false, ...more,
});

// Expected versions, from tensorflow/lite/tools/versioning/op_version.cc (GetBuiltinOperatorVersion) and its
// op_version_test.cc: [op, signature, version, what it is].
const TABLE: Array<[keyof typeof Op, OpSignature, number, string]> = [
  ['CONV_2D', sig(F32, F32, F32), 1, 'float'],
  ['CONV_2D', sig(I8, I8, I8, { perChannel: true }), 3, 'full int8'],
  ['CONV_2D', sig(I8, I4, I8, { perChannel: true }), 7, 'int8 activations, int4 weights'],
  ['CONV_2D', sig(F32, I8, F32), 2, 'dynamic-range, per-tensor weights'],
  ['CONV_2D', sig(F32, I8, F32, { perChannel: true }), 5, 'dynamic-range, per-channel weights'],
  ['DEPTHWISE_CONV_2D', sig(F32, F32, F32), 1, 'float'],
  ['DEPTHWISE_CONV_2D', sig(F32, F32, F32, { dilated: true }), 2, 'float, dilated'],
  ['DEPTHWISE_CONV_2D', sig(I8, I8, I8, { perChannel: true, dilated: true }), 3, 'full int8 (dilated too)'],
  ['DEPTHWISE_CONV_2D', sig(I8, I4, I8), 7, 'int4 weights'],
  ['DEPTHWISE_CONV_2D', sig(F32, I8, F32), 4, 'dynamic-range, per-tensor'],
  ['DEPTHWISE_CONV_2D', sig(F32, I8, F32, { perChannel: true }), 6, 'dynamic-range, per-channel'],
  ['FULLY_CONNECTED', sig(F32, F32, F32), 1, 'float'],
  ['FULLY_CONNECTED', sig(F32, F32, F32, { sparseWeight: true }), 8, 'float, sparse weights'],
  ['FULLY_CONNECTED', sig(I8, I8, I8), 4, 'full int8'],
  ['FULLY_CONNECTED', sig(I8, I8, I8, { perChannel: true }), 4, 'full int8, per-channel weights'],
  ['FULLY_CONNECTED', sig(I8, I8, I8, { sparseWeight: true }), 8, 'full int8, sparse weights'],
  ['FULLY_CONNECTED', sig(I8, I4, I8), 10, 'int4 weights'],
  ['FULLY_CONNECTED', sig(F32, I8, F32), 3, 'dynamic-range, per-tensor, symmetric inputs'],
  ['FULLY_CONNECTED', sig(F32, I8, F32, { asymmetricInputs: true }), 9, 'dynamic-range, per-tensor, asymmetric inputs'],
  ['FULLY_CONNECTED', sig(F32, I8, F32, { asymmetricInputs: true, perChannel: true }), 12, 'dynamic-range, per-channel (the issue: was written as 3)'],
  ['FULLY_CONNECTED', sig(F32, F32, F32, { inputCount: 2 }), 6, 'no bias'],
  ['TRANSPOSE_CONV', sig(I32, F32, F32, { inputCount: 3 }), 1, 'float, no bias'],
  ['TRANSPOSE_CONV', sig(I32, I8, I8, { inputCount: 3 }), 2, 'int8 weights, no bias'],
  ['TRANSPOSE_CONV', sig(I32, I8, I8, { inputCount: 4, perChannel: true }), 3, 'with bias'],
  ['TRANSPOSE_CONV', sig(I32, F32, F32, { inputCount: 4, fusedActivation: true }), 4, 'fused activation'],
  ['TRANSPOSE', sig(F32, undefined, F32), 1, 'float'],
  ['TRANSPOSE', sig(I8, undefined, I8), 2, 'int8'],
  ['TRANSPOSE', sig(I8, undefined, I8, { inputRank: 5 }), 4, 'int8, rank 5 (a channel shuffle)'],
  ['SLICE', sig(F32, undefined, F32), 1, 'float'],
  ['SLICE', sig(I8, undefined, I8), 2, 'int8'],
  ['SLICE', sig(I8, undefined, I8, { inputRank: 5 }), 5, 'rank 5'],
  ['DEQUANTIZE', sig(I8, undefined, F32), 2, 'int8'],
  ['DEQUANTIZE', sig(I8, undefined, F32, { perChannel: true }), 5, 'int8 per-channel'],
  ['DEQUANTIZE', sig(F16, undefined, F32), 3, 'float16'],
  ['DEQUANTIZE', sig(I4, undefined, F32), 6, 'int4'],
  ['QUANTIZE', sig(F32, undefined, I8), 1, 'float to int8'],
  ['QUANTIZE', sig(I8, undefined, I8), 1, 'int8 requantize'],
  ['QUANTIZE', sig(F32, undefined, I16), 2, 'float to int16'],
  ['MAX_POOL_2D', sig(I8, undefined, I8), 2, 'int8'],
  ['AVERAGE_POOL_2D', sig(F32, undefined, F32), 1, 'float'],
  ['SOFTMAX', sig(I8, undefined, I8), 2, 'int8'],
  ['MEAN', sig(I8, I32, I8), 2, 'int8'],
  ['ADD', sig(I8, I8, I8), 2, 'int8'],
  ['CONCATENATION', sig(I8, I8, I8), 2, 'int8'],
  ['LOGISTIC', sig(I8, undefined, I8), 2, 'int8'],
  ['RESHAPE', sig(I8, I32, I8), 1, 'any'],
  ['DENSIFY', sig(F32, undefined, F32), 1, 'any'],
];

test('TFLite op versions follow op_version.cc for every op/quantization combination compress writes', () => {
  const wrong = TABLE.filter(([op, s, v]) => opVersion(Op[op], s) !== v).map(([op, s, v, what]) => `${op} ${what}: got ${opVersion(Op[op], s)}, op_version.cc gives ${v}`);
  assert.deepEqual(wrong, []);
});

const opsOf = (file: string) => readTflite(new Uint8Array(readFileSync(file))).operators.map((o) => `${Object.entries(Op).find(([, c]) => c === o.code)?.[0]}@${o.version}`);

test('a dynamic-int8 export writes FULLY_CONNECTED as version 12 with per-channel weights, 9 with per-tensor', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'mlp-small');
  for (const [perChannel, version] of [[true, 12], [false, 9]] as const) {
    const dir = tempDir(`opver-mlp-${perChannel}`);
    await exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision: 'dynamic-int8', perChannel }, dir);
    const ops = opsOf(join(dir, 'model.tflite'));
    assert.ok(ops.length > 0 && ops.filter((o) => o.startsWith('FULLY_CONNECTED')).every((o) => o === `FULLY_CONNECTED@${version}`), ops.join(' '));
  }
});

test('a full-int8 conv export writes the int8 versions (CONV_2D 3, DEPTHWISE_CONV_2D 3, FULLY_CONNECTED 4, QUANTIZE 1, DEQUANTIZE 2)', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'dw-cnn');
  const dir = tempDir('opver-dwcnn');
  await exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision: 'int8', calibration: t.calibration }, dir);
  const ops = new Set(opsOf(join(dir, 'model.tflite')));
  for (const o of ['CONV_2D@3', 'DEPTHWISE_CONV_2D@3', 'FULLY_CONNECTED@4', 'QUANTIZE@1', 'DEQUANTIZE@2']) assert.ok(ops.has(o), `${o} in ${[...ops].join(' ')}`);
});

test('perChannel: false writes one scale per weight tensor, and the int8 file loads and agrees in LiteRT', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'lenet-5');
  const dir = tempDir('per-tensor-lenet5');
  const res = await exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision: 'int8', perChannel: false, calibration: t.calibration }, dir);
  const file = readTflite(new Uint8Array(readFileSync(join(dir, 'model.tflite'))));
  const kernels = file.tensors.filter((x) => x.name.endsWith('/kernel'));
  assert.ok(kernels.length >= 3);
  for (const k of kernels) assert.equal(k.scales, 1, `${k.name} has ${k.scales} scales`);
  const v = await verifyExport(tf, { target: 'tflite', precision: 'int8', dir, files: res.files }, t.model, t.test);
  assert.ok(v.agreement >= 0.99, JSON.stringify(v));
});

test('perChannel: false for dynamic-int8 depthwise convolutions is refused, naming the layer (LiteRT computes wrong values)', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'dw-cnn');
  await assert.rejects(
    exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision: 'dynamic-int8', perChannel: false }, tempDir('per-tensor-dw-hybrid')),
    /depthwise.*per-channel weights in LiteRT/,
  );
});

test('perChannel: false int8 files run in ArmNN (CpuRef), which aborts on per-channel weights, and agree with LiteRT', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'lenet-5');
  const dir = tempDir('per-tensor-armnn');
  await exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision: 'int8', perChannel: false, calibration: t.calibration }, dir);
  const n = 50;
  const x = t.test.x.subarray(0, n * 784);
  writeFileSync(join(dir, 'x.f32'), x);
  const script = fileURLToPath(new URL('../../test/fixtures/armnn_run.py', import.meta.url));
  await execa('/usr/bin/python3', [script, join(dir, 'model.tflite'), join(dir, 'x.f32'), String(n), join(dir, 'y.f32')]);
  const armnn = new Float32Array(Uint8Array.from(readFileSync(join(dir, 'y.f32'))).buffer);
  const runner = await tfliteRunner(new Uint8Array(readFileSync(join(dir, 'model.tflite'))));
  const litert = await runner.run(x, n, [28, 28, 1]);
  runner.dispose();
  assert.equal(armnn.length, litert.length);
  const argmax = (a: Float32Array, i: number) => a.subarray(i * 10, i * 10 + 10).reduce((b, v, j, r) => (v > r[b] ? j : b), 0);
  let agree = 0;
  for (let i = 0; i < n; i++) if (argmax(armnn, i) === argmax(litert, i)) agree++;
  assert.ok(agree >= n - 1, `ArmNN and LiteRT agree on ${agree} of ${n}`);
});
