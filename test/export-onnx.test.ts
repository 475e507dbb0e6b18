import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import onnxProto from 'onnx-proto';
import { exportModel, onnxOptimizedOpTypes, verifyExport, type ExportPrecision } from '../src/export/index.js';
import { emptyMeta } from '../src/model/meta.js';
import { cachedTrainedModel, engine, tempDir } from './fixtures/export/models.js';

const { onnx } = onnxProto;

/** Debian python3-onnx 1.12's full checker (IR <= 8, opset <= 17). */
async function onnxCheck(path: string): Promise<void> {
  await execa('/usr/bin/python3', ['-c', 'import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', path]);
}

for (const name of ['mlp-small', 'lenet-5', 'dw-cnn'] as const) {
  test(`onnx: ${name} float32 and int8 QDQ pass the checker, run in onnxruntime and agree`, async () => {
    const tf = await engine();
    const t = await cachedTrainedModel(tf, name);
    const sizes: Record<string, number> = {};
    for (const precision of ['float32', 'int8'] as ExportPrecision[]) {
      const dir = tempDir(`onnx-${name}-${precision}`);
      const res = await exportModel(tf, t.model, emptyMeta(), { target: 'onnx', precision, calibration: t.calibration }, dir);
      assert.deepEqual(res.files, ['model.onnx']);
      await onnxCheck(join(dir, 'model.onnx'));
      // The default check: agreement on samples whose float margin exceeds the quantization noise, accuracy loss.
      const v = await verifyExport(tf, { target: 'onnx', precision, dir, files: res.files }, t.model, t.test);
      assert.ok(v.confidentAgreement >= (precision === 'int8' ? 0.99 : 0.999) && v.accuracyDelta >= -0.01 - 1e-12, JSON.stringify(v));
      assert.match(v.runtime, /^onnxruntime-node/);
      sizes[precision] = res.bytes;
      if (precision === 'int8') {
        const ops = await onnxOptimizedOpTypes(readFileSync(join(dir, 'model.onnx')));
        // Every Conv/Gemm fused into its quantized form: no float Conv/Gemm left.
        assert.ok(ops.some((o) => /QLinearConv|QGemm|QLinearMatMul/.test(o)), ops.join(','));
        assert.ok(!ops.includes('Conv') && !ops.includes('Gemm'), ops.join(','));
        assert.deepEqual(v.quantizedOps, [...new Set(ops.filter((o) => /QLinear|QGemm/.test(o)))].sort());
      }
      console.log(`onnx ${name} ${precision}: ${JSON.stringify(v)}`);
    }
    assert.ok(sizes.int8 < sizes.float32 * (name === 'dw-cnn' ? 0.7 : 0.3), JSON.stringify(sizes));
  });
}

test('onnx: a channel shuffle (Reshape -> Permute -> Reshape of an image) is Reshape, Transpose(0, 2, 1, 3, 4), Reshape of the NCHW tensor, and agrees in onnxruntime', async () => {
  const tf = await engine();
  const input = tf.input({ shape: [6, 5, 3] });
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  const conv = tf.layers.conv2d({ filters: 12, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }).apply(input) as ReturnType<typeof tf.input>;
  const split = tf.layers.reshape({ targetShape: [6, 5, 3, 4] }).apply(conv);
  const swap = tf.layers.permute({ dims: [1, 2, 4, 3] }).apply(split);
  const shuffled = tf.layers.reshape({ targetShape: [6, 5, 12] }).apply(swap);
  const mixed = tf.layers.conv2d({ filters: 8, kernelSize: 1, kernelInitializer: init(2) }).apply(shuffled);
  const head = tf.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(3) });
  const out = head.apply(tf.layers.flatten().apply(mixed)) as ReturnType<typeof tf.input>;
  const model = tf.model({ inputs: input, outputs: out });
  // Seeded weights, and logits large enough that int8 noise does not decide near-ties of a random model.
  head.setWeights(head.getWeights().map((w, i) => (i === 0 ? w.mul(8) : w)));
  const n = 64;
  const x = tf.randomNormal([n, 6, 5, 3], 0, 1, 'float32', 11);
  const xs = x.dataSync() as Float32Array;
  const y = Int32Array.from((model.predict(x) as ReturnType<typeof tf.tensor>).argMax(-1).dataSync());
  const test = { x: xs, y, n, sampleShape: [6, 5, 3], numClasses: 4 };
  for (const precision of ['float32', 'int8'] as ExportPrecision[]) {
    const dir = tempDir(`onnx-shuffle-${precision}`);
    const res = await exportModel(tf, model, emptyMeta(), { target: 'onnx', precision, calibration: xs }, dir);
    const perms = onnx.ModelProto.decode(readFileSync(join(dir, 'model.onnx'))).graph!.node!.filter((nd) => nd.opType === 'Transpose').map((nd) => nd.attribute![0].ints!.map(Number).join());
    assert.deepEqual(perms.filter((p) => p.split(',').length === 5), ['0,2,1,3,4'], `${precision}: transposes ${perms.join(' | ')}`);
    const v = await verifyExport(tf, { target: 'onnx', precision, dir, files: res.files }, model, test);
    assert.ok(v.agreement >= 0.99, `${precision}: ${JSON.stringify(v)}`);
  }
  model.dispose();
});

test("an int8 ONNX file (compress's own QDQ export) given to the importer is refused as a quantized model, pointing at the float one", async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'mlp-small');
  const dir = tempDir('onnx-reimport-int8');
  await exportModel(tf, t.model, emptyMeta(), { target: 'onnx', precision: 'int8', calibration: t.calibration }, dir);
  const { importOnnx } = await import('../src/model/load/onnx.js');
  await assert.rejects(importOnnx(tf, join(dir, 'model.onnx')), (e: Error) => {
    assert.match(e.message, /op '(QuantizeLinear|DequantizeLinear)' is not supported: this is a quantized ONNX model/);
    assert.match(String((e as { hint?: string }).hint), /import the float model it was quantized from/);
    return true;
  });
});
