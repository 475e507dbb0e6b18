import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportModel, verifyExport, type ExportPrecision } from '../src/export/index.js';
import { quantizeTensorLinear } from '../src/export/tfjs/export.js';
import { emptyMeta } from '../src/model/meta.js';
import { cachedTrainedModel, engine, tempDir } from './fixtures/export/models.js';

const PRECISIONS: ExportPrecision[] = ['float32', 'float16', 'uint16', 'uint8'];

for (const name of ['mlp-small', 'lenet-5', 'dw-cnn'] as const) {
  test(`tfjs: ${name} in float32/float16/uint16/uint8 loads with tf.loadLayersModel and agrees`, async () => {
    const tf = await engine();
    const t = await cachedTrainedModel(tf, name);
    const sizes: Record<string, number> = {};
    for (const precision of PRECISIONS) {
      const dir = tempDir(`tfjs-${name}-${precision}`);
      const res = await exportModel(tf, t.model, emptyMeta(), { target: 'tfjs', precision }, dir);
      assert.deepEqual(res.files, ['model.json', 'group1-shard1of1.bin']);
      // The default check (agreement where the float margin exceeds the quantization noise, accuracy loss):
      // raw top-1 agreement counts near-ties of the float model, which any rounding may flip.
      const v = await verifyExport(tf, { target: 'tfjs', precision, dir, files: res.files }, t.model, t.test);
      assert.ok(v.confidentAgreement >= (precision === 'uint8' ? 0.99 : 0.999) && v.accuracyDelta >= -0.01 - 1e-12, JSON.stringify(v));
      assert.ok(v.agreement >= 0.95, `top-1 agreement: ${JSON.stringify(v)}`);
      sizes[precision] = res.bytes;
      console.log(`tfjs ${name} ${precision}: ${JSON.stringify(v)}`);
    }
    const r = name === 'dw-cnn' ? 0.55 : 0.4; // model.json overhead on a 13k-parameter model
    assert.ok(sizes.uint8 < sizes.float32 * r && sizes.float16 < sizes.float32 * 0.7, JSON.stringify(sizes));
  });
}

test('tfjs: uint8/uint16 keep pruned zeros exactly zero, and pruning shows in gzip size', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'mlp-small');
  const v = Float32Array.from({ length: 1000 }, (_, i) => (i % 3 === 0 ? 0 : Math.sin(i) * 0.3 + 0.05));
  for (const bits of [8, 16] as const) {
    const { q, min, scale } = quantizeTensorLinear(v, bits);
    for (let i = 0; i < v.length; i += 3) assert.equal(q[i] * scale + min, 0);
  }
  // Magnitude-prune 90% of dense_1 and compare gzip sizes of the uint8 export.
  const dense = t.model.getLayer('dense_1');
  const [k, b] = dense.getWeights();
  const kv = k.dataSync() as Float32Array;
  const sorted = Float32Array.from(kv, Math.abs).sort();
  const cut = sorted[Math.floor(sorted.length * 0.9)];
  const pruned = tf.tensor(kv.map((x) => (Math.abs(x) < cut ? 0 : x)), k.shape);
  const dense0 = await exportModel(tf, t.model, emptyMeta(), { target: 'tfjs', precision: 'uint8' }, tempDir('tfjs-dense'));
  dense.setWeights([pruned, b]);
  try {
    const dir = tempDir('tfjs-pruned');
    const sparse = await exportModel(tf, t.model, emptyMeta(), { target: 'tfjs', precision: 'uint8' }, dir);
    assert.ok(sparse.gzipBytes < dense0.gzipBytes * 0.5, `${sparse.gzipBytes} vs ${dense0.gzipBytes}`);
    const tf2 = tf;
    const mj = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
    const loaded = await tf2.loadLayersModel(tf2.io.fromMemory({ modelTopology: mj.modelTopology, weightSpecs: mj.weightsManifest[0].weights, weightData: new Uint8Array(readFileSync(join(dir, 'group1-shard1of1.bin'))).buffer }));
    const lk = loaded.getLayer('dense_1').getWeights()[0].dataSync();
    const pv = pruned.dataSync();
    let zeros = 0;
    for (let i = 0; i < pv.length; i++) if (pv[i] === 0) { assert.equal(lk[i], 0); zeros++; }
    assert.ok(zeros > pv.length * 0.85);
  } finally {
    dense.setWeights([k, b]);
  }
});
