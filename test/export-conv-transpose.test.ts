import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { buildIr, exportModel, type ExportPrecision, type ExportTarget } from '../src/export/index.js';
import { runIr } from '../src/export/quant.js';
import { EXPORT_TARGETS } from '../src/export/targets.js';
import { readTflite } from '../src/export/tflite/reader.js';
import { Op, TensorType } from '../src/export/tflite/schema.js';
import { loadModelFrom } from '../src/model/load/index.js';
import { emptyMeta } from '../src/model/meta.js';
import { nmMask } from '../src/prune/masks.js';
import { PRUNE_METHODS } from '../src/prune/methods.js';
import { modelStats } from '../src/prune/stats.js';
import { engine, tempDir } from './fixtures/export/models.js';
import { writeKeras2H5, writeKeras3 } from './fixtures/keras-writer.js';
import { relL2Error } from './fixtures/rel-error.js';

type Tf = typeof tfType;
type T = tfType.SymbolicTensor;
const H = 9;
const W = 7;

/**
 * A small U-Net-style autoencoder on odd-sized 9x7 images: a stride-2 Conv2D encoder (5x4), then
 * Conv2DTranspose decoders that bring it back up: stride 2 'same' (10x8, relu fused, BN folded in),
 * stride 2 'valid' with k > s (11x9, cropped back to 9x7 by a skip-connection-style Cropping2D), a
 * kernel smaller than its stride (k 1, s 3: 15x12, positions that only get the bias) and an asymmetric
 * kernel/stride pair (k 4x3, s 2x1 'valid': 12x6). The outputs are joined into one vector.
 */
function autoencoder(tf: Tf): tfType.LayersModel {
  let n = 0;
  const init = () => tf.initializers.glorotUniform({ seed: 20 + n++ });
  const L = tf.layers;
  const ap = (layer: tfType.layers.Layer, x: T | T[]) => layer.apply(x) as T;
  const input = tf.input({ shape: [H, W, 3], name: 'image' });
  const enc = ap(L.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(), name: 'enc' }), input);
  let same = ap(L.conv2dTranspose({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', kernelInitializer: init(), biasInitializer: 'ones', name: 'up_same' }), enc);
  same = ap(L.batchNormalization({ name: 'up_same_bn', movingMeanInitializer: tf.initializers.constant({ value: 0.1 }), movingVarianceInitializer: tf.initializers.constant({ value: 2 }) }), same);
  same = ap(L.reLU({ name: 'up_same_relu' }), same);
  let valid = ap(L.conv2dTranspose({ filters: 3, kernelSize: 3, strides: 2, padding: 'valid', activation: 'tanh', kernelInitializer: init(), name: 'up_valid' }), enc);
  valid = ap(L.cropping2D({ cropping: [[1, 1], [1, 1]], name: 'skip_crop' }), valid);
  const skip = ap(L.add({ name: 'skip_add' }), [valid, input]);
  const sparse = ap(L.conv2dTranspose({ filters: 2, kernelSize: 1, strides: 3, padding: 'same', kernelInitializer: init(), biasInitializer: 'ones', name: 'up_k1_s3' }), enc);
  const odd = ap(L.conv2dTranspose({ filters: 2, kernelSize: [4, 3], strides: [2, 1], padding: 'valid', kernelInitializer: init(), name: 'up_4x3_s2x1' }), enc);
  const flat = [same, skip, sparse, odd].map((t, i) => ap(L.flatten({ name: `flat_${i}` }), t));
  return tf.model({ inputs: input, outputs: ap(L.concatenate({ name: 'outputs' }), flat), name: 'unet_like' });
}

function samples(tf: Tf, n: number, seed: number): Float32Array {
  return tf.tidy(() => tf.randomUniform([n, H, W, 3], -1, 1, 'float32', seed).dataSync() as Float32Array);
}


test("Conv2DTranspose: the IR computes what tfjs computes ('same'/'valid', odd sizes, k < s, k > s, BN folded, relu fused)", async () => {
  const tf = await engine();
  const model = autoencoder(tf);
  const ir = buildIr(model, 'tflite');
  const ups = ir.ops.filter((o) => o.kind === 'conv_transpose');
  assert.deepEqual(ups.map((o) => ir.tensors[o.output].shape), [[10, 8, 4], [11, 9, 3], [15, 12, 2], [12, 6, 2]]);
  const same = ups[0];
  assert.ok(same.kind === 'conv_transpose' && same.folded && same.activation === 'relu', 'BN folded and ReLU fused into up_same');
  const x = tf.tensor(samples(tf, 8, 1), [8, H, W, 3]);
  const want = (model.predict(x) as tfType.Tensor).dataSync() as Float32Array;
  const got = runIr(tf, ir, x).dataSync() as Float32Array;
  assert.ok(relL2Error(got, want) < 1e-6, `rel error ${relL2Error(got, want)}`);
});

// Relative L2 error each export may have against the tfjs model: float exact up to rounding, half precision
// and 8-bit weights/activations by their grids.
const CASES: Array<[ExportTarget, ExportPrecision, number]> = [
  ['tflite', 'float32', 1e-6],
  ['tflite', 'float16', 5e-4],
  ['tflite', 'dynamic-int8', 1e-2],
  ['tflite', 'int8', 2e-2],
  ['onnx', 'float32', 1e-6],
  ['onnx', 'int8', 2e-2],
  ['tflite', 'int4', 5e-2],
  ['onnx', 'int4', 5e-2],
  ['tfjs', 'float32', 1e-6],
  ['tfjs', 'uint8', 5e-3],
];

test('the U-Net-style autoencoder exports to every target and precision and matches the tfjs output in LiteRT, onnxruntime and tfjs', async () => {
  const tf = await engine();
  const model = autoencoder(tf);
  const n = 16;
  const x = samples(tf, n, 2);
  const want = tf.tidy(() => (model.predict(tf.tensor(x, [n, H, W, 3])) as tfType.Tensor).dataSync() as Float32Array);
  const calibration = samples(tf, 64, 3);
  const errors: string[] = [];
  for (const [target, precision, limit] of CASES) {
    const dir = tempDir(`convt-${target}-${precision}`);
    const res = await exportModel(tf, model, emptyMeta(), { target, precision, calibration }, dir);
    const runner = await EXPORT_TARGETS[target].open(tf, async (f) => new Uint8Array(readFileSync(join(dir, f))));
    const got = await runner.run(x, n, [H, W, 3]);
    runner.dispose();
    const err = relL2Error(got, want);
    console.log(`unet ${target} ${precision}: relative L2 error ${err.toExponential(2)} (${res.bytes} bytes) in ${runner.runtime}`);
    if (!(err < limit)) errors.push(`${target} ${precision}: ${err} >= ${limit}`);
  }
  assert.deepEqual(errors, []);
});

const opsOf = (bytes: Uint8Array) => {
  const f = readTflite(bytes);
  return f.operators.map((o) => ({ ...o, name: Object.entries(Op).find(([, c]) => c === o.code)?.[0] }));
};

test('TFLite TRANSPOSE_CONV: output shape, OHWI weights and bias inputs; version 4 with a fused ReLU, 3 with a bias, per-channel int8 weights on axis 0', async () => {
  const tf = await engine();
  const model = autoencoder(tf);
  const dir = tempDir('convt-tflite-int8');
  await exportModel(tf, model, emptyMeta(), { target: 'tflite', precision: 'int8', calibration: samples(tf, 32, 4) }, dir);
  const bytes = new Uint8Array(readFileSync(join(dir, 'model.tflite')));
  const file = readTflite(bytes);
  const tc = opsOf(bytes).filter((o) => o.name === 'TRANSPOSE_CONV');
  assert.equal(tc.length, 4);
  assert.deepEqual(tc.map((o) => o.version), [4, 3, 3, 3], 'up_same has its ReLU fused (v4), the others a bias only (v3)');
  const [shape, weights, input, bias] = tc[0].inputs.map((i) => file.tensors[i]);
  assert.equal(shape.type, TensorType.INT32);
  assert.deepEqual(weights.shape, [4, 3, 3, 6], 'weights [out, kh, kw, in]');
  assert.equal(weights.type, TensorType.INT8);
  assert.equal(weights.scales, 4, 'one scale per output channel');
  assert.equal(input.type, TensorType.INT8);
  assert.equal(bias.type, TensorType.INT32);
});

test('TFLite dynamic-int8 stores TRANSPOSE_CONV weights as int8 + DEQUANTIZE (LiteRT has no hybrid kernel for it)', async () => {
  const tf = await engine();
  const model = autoencoder(tf);
  const dir = tempDir('convt-tflite-dyn');
  await exportModel(tf, model, emptyMeta(), { target: 'tflite', precision: 'dynamic-int8' }, dir);
  const bytes = new Uint8Array(readFileSync(join(dir, 'model.tflite')));
  const file = readTflite(bytes);
  const ops = opsOf(bytes);
  for (const tc of ops.filter((o) => o.name === 'TRANSPOSE_CONV')) {
    const w = tc.inputs[1];
    assert.equal(file.tensors[w].type, TensorType.FLOAT32);
    const producer = ops.find((o) => o.outputs.includes(w));
    assert.equal(producer?.name, 'DEQUANTIZE');
    assert.equal(producer!.version, 5, 'per-channel int8 DEQUANTIZE');
    const q = file.tensors[producer!.inputs[0]];
    assert.equal(q.type, TensorType.INT8);
    assert.equal(q.bufferBytes, q.shape.reduce((a, b) => a * b, 1), 'one byte a weight');
    assert.equal(q.scales, q.shape[0], 'one scale per output channel');
  }
});

/** A small Conv2DTranspose model Keras could have saved. */
function decoder(tf: Tf): tfType.LayersModel {
  const input = tf.input({ shape: [5, 4, 3], name: 'code' });
  const up = tf.layers.conv2dTranspose({ filters: 4, kernelSize: 3, strides: 2, padding: 'valid', activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 8 }), biasInitializer: 'ones', name: 'deconv' }).apply(input) as T;
  const out = tf.layers.conv2dTranspose({ filters: 2, kernelSize: 2, strides: 2, padding: 'same', kernelInitializer: tf.initializers.glorotUniform({ seed: 9 }), name: 'deconv_1' }).apply(up) as T;
  return tf.model({ inputs: input, outputs: out });
}

test('Conv2DTranspose loads from Keras 2 .h5 and Keras 3 .keras files with the same weights and outputs', async () => {
  const tf = await engine();
  const src = decoder(tf);
  const dir = tempDir('convt-keras');
  writeFileSync(join(dir, 'm.h5'), await writeKeras2H5(src));
  writeFileSync(join(dir, 'm.keras'), await writeKeras3(src));
  const x = tf.randomNormal([3, 5, 4, 3], 0, 1, 'float32', 4);
  const want = (src.predict(x) as tfType.Tensor).dataSync();
  for (const f of ['m.h5', 'm.keras']) {
    const m = await loadModelFrom(tf, join(dir, f));
    assert.deepEqual(m.layers.map((l) => l.getClassName()), ['InputLayer', 'Conv2DTranspose', 'Conv2DTranspose'], f);
    assert.deepEqual(Array.from((m.predict(x) as tfType.Tensor).dataSync()), Array.from(want), f);
  }
});

test('a Keras Conv2DTranspose with output_padding or dilation_rate (which tfjs does not compute) is refused at load, naming the layer', async () => {
  const tf = await engine();
  const { kerasModelConfig } = await import('./fixtures/keras-writer.js');
  const { kerasConfigToTfjs } = await import('../src/model/load/keras.js');
  for (const [key, value] of [['output_padding', [1, 1]], ['dilation_rate', [2, 2]]] as const) {
    const cfg = kerasModelConfig(decoder(tf), false);
    const layer = (cfg.config.layers as Array<Record<string, any>>).find((l) => l.config.name === 'deconv_1')!;
    layer.config[key] = value;
    assert.throws(() => kerasConfigToTfjs(cfg, 'm.h5'), (e: Error & { layer?: string }) => {
      assert.match(e.message, new RegExp(`Conv2DTranspose with ${key} \\[.*\\] is not supported \\(tfjs's Conv2DTranspose`));
      assert.equal(e.layer, 'deconv_1');
      return true;
    });
  }
});

test("MACs of a Conv2DTranspose count its kernel once per input position (modelStats)", async () => {
  const tf = await engine();
  const m = decoder(tf);
  const s = modelStats(m);
  const [a, b] = s.layers.filter((l) => l.className === 'Conv2DTranspose');
  assert.equal(a.macs, 3 * 3 * 4 * 3 * (5 * 4), 'deconv: k 3x3, 3 -> 4 channels, 5x4 inputs');
  assert.equal(b.macs, 2 * 2 * 2 * 4 * (11 * 9), 'deconv_1: k 2x2, 4 -> 2 channels, 11x9 inputs');
});

test('n:m pruning of a Conv2DTranspose kernel [kh, kw, out, in] groups its input channels (axis 3)', () => {
  const shape = [1, 1, 2, 4];
  const values = Float32Array.from([4, 3, 2, 1, 1, 2, 3, 4]);
  const mask = nmMask(values, shape, 2, 4, { className: 'Conv2DTranspose' });
  assert.deepEqual(Array.from(mask), [1, 1, 0, 0, 0, 0, 1, 1]);
});

test('structured pruning refuses Conv2DTranspose (filters on kernel axis 2), saying how to exclude it', () => {
  assert.match(PRUNE_METHODS.structured.refuses('Conv2DTranspose') ?? '', /exclude it \(layers: \[\{ type: Conv2DTranspose, exclude: true \}\]\) or prune it with method magnitude/);
  assert.equal(PRUNE_METHODS.structured.refuses('Conv2D'), undefined);
});

test("int8 weight quantization of a Conv2DTranspose is per output channel (Keras axis 2), and the TFLite export reuses compress's scales", async () => {
  const tf = await engine();
  const { applyWeightQuant } = await import('../src/compression/fakequant.js');
  const model = decoder(tf);
  const applied = applyWeightQuant(tf, model, { deconv: { method: 'linear', bits: 8 } });
  const wq = applied.weightQuant.deconv;
  assert.ok(wq.method === 'linear' && wq.axis === 2 && wq.scales.length === 4, JSON.stringify(wq));
  const meta = { ...emptyMeta(), weightQuant: { deconv: wq } };
  const { irToTflite } = await import('../src/export/tflite/export.js');
  const { notes } = irToTflite(buildIr(model, 'tflite'), meta, 'dynamic-int8');
  assert.ok(notes.includes("deconv: reused compress's int8 weight scales"), JSON.stringify(notes));
});

test('compress validate refuses a TF.js model whose Conv2DTranspose is dilated when a graph target exports it, naming the layer, target and fix', async () => {
  const tf = await engine();
  const { cli, workspace } = await import('./helpers.js');
  const { mkdirSync } = await import('node:fs');
  const { dir } = workspace(`version: 1
data:
  digits: { source: mnist, limit: 100 }
stages:
  src:
    uses: load
    with: { path: dec }
  ship:
    uses: export
    needs: [src]
    with: { targets: [ { target: tfjs, precision: float32 }, { target: onnx, precision: int8 } ] }
`);
  // What tensorflowjs_converter writes for a Keras Conv2DTranspose(dilation_rate=2): the Keras config keeps
  // dilation_rate, which tfjs-layers accepts and then ignores (tfjs's own save drops it).
  const input = tf.input({ shape: [5, 4, 3], name: 'code' });
  const up = tf.layers.conv2dTranspose({ filters: 2, kernelSize: 3, strides: 1, padding: 'same', name: 'dilated_up' }).apply(input) as T;
  const model = tf.model({ inputs: input, outputs: up });
  mkdirSync(join(dir, 'dec'));
  await model.save(tf.io.withSaveHandler(async (a) => {
    const topology = a.modelTopology as { config: { layers: Array<{ config: Record<string, unknown> }> } };
    topology.config.layers[1].config.dilation_rate = [2, 2];
    writeFileSync(join(dir, 'dec', 'model.json'), JSON.stringify({ modelTopology: topology, format: 'layers-model', weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }] }));
    writeFileSync(join(dir, 'dec', 'weights.bin'), new Uint8Array(a.weightData as ArrayBuffer));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, /stage 'ship' exports to onnx, which cannot express layer 'dilated_up' \(Conv2DTranspose\) of dec .*: dilation_rate \[2,2\] is not supported \(tfjs's Conv2DTranspose ignores it\); use dilation 1/);
  assert.doesNotMatch(r.stderr, /exports to tfjs/, 'the TF.js target stores the layer as it is');
  // Loading it is refused too: tfjs would run it without the dilation.
  await assert.rejects(loadModelFrom(tf, join(dir, 'dec')), /Conv2DTranspose with dilation_rate \[2,2\] is not supported/);
});
