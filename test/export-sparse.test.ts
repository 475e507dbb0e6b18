import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { exportModel, verifyExport, type ExportPrecision } from '../src/export/index.js';
import { readTflite } from '../src/export/tflite/reader.js';
import { toSparse } from '../src/export/tflite/sparsity.js';
import { Op } from '../src/export/tflite/schema.js';
import { emptyMeta } from '../src/model/meta.js';
import { cachedTrainedModel, engine, tempDir, type Trained } from './fixtures/export/models.js';

// LeNet-300-100 pruned to 90% (70% in the output layer, as the default recipe does) by weight magnitude.
let tf: typeof tfType;
let t: Trained;
before(async () => {
  tf = await engine();
  t = await cachedTrainedModel(tf, 'lenet-300-100');
  for (const layer of t.model.layers) {
    const ws = layer.getWeights();
    if (ws.length !== 2) continue;
    const k = Float32Array.from(ws[0].dataSync() as Float32Array);
    const sparsity = layer.name === t.model.layers[t.model.layers.length - 1].name ? 0.7 : 0.9;
    const cut = Float32Array.from(k, Math.abs).sort()[Math.floor(k.length * sparsity)];
    for (let i = 0; i < k.length; i++) if (Math.abs(k[i]) < cut) k[i] = 0;
    layer.setWeights([tf.tensor(k, ws[0].shape), ws[1]]);
  }
});

async function write(precision: ExportPrecision, storage: 'auto' | 'dense' | 'sparse') {
  const dir = tempDir(`sparse-${precision}-${storage}`);
  const res = await exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision, storage, calibration: t.calibration }, dir);
  return { dir, res, file: readTflite(new Uint8Array(readFileSync(join(dir, 'model.tflite')))) };
}

test('CSR encoding: values in row-major order, row segments and column indices', () => {
  const sp = toSparse(Int8Array.from([0, 3, 0, 0, 0, 0, -2, 5]), [2, 4]);
  assert.deepEqual(Array.from(sp.values), [3, -2, 5]);
  assert.deepEqual(sp.sparsity.dims.map((d) => d.format), [0, 1]);
  assert.deepEqual(sp.sparsity.dims[1].segments, [0, 1, 3]);
  assert.deepEqual(sp.sparsity.dims[1].indices, [1, 2, 3]);
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

test('storage: dense writes no sparse tensor; full int8 under auto stays dense (LiteRT cannot run int8 ops on DENSIFY output)', async () => {
  for (const [precision, storage] of [['dynamic-int8', 'dense'], ['int8', 'auto']] as const) {
    const { file } = await write(precision, storage);
    assert.equal(file.tensors.filter((x) => x.sparse).length, 0, `${precision} ${storage}`);
    assert.equal(file.operators.filter((o) => o.code === Op.DENSIFY).length, 0);
  }
});
