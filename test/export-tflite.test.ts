import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportModel, verifyExport, type ExportPrecision } from '../src/export/index.js';
import { tfliteRunner } from '../src/export/verify/runners.js';
import { emptyMeta } from '../src/model/meta.js';
import { buildModel } from '../src/engine/models.js';
import { cachedTrainedModel, engine, tempDir, type Trained } from './fixtures/export/models.js';

const PRECISIONS: ExportPrecision[] = ['float32', 'float16', 'dynamic-int8', 'int8'];

for (const name of ['mlp-small', 'lenet-5', 'dw-cnn'] as const) {
  test(`tflite: ${name} in every precision runs in LiteRT and agrees with the Keras model`, async () => {
    const tf = await engine();
    const t: Trained = await cachedTrainedModel(tf, name);
    const sizes: Record<string, number> = {};
    for (const precision of PRECISIONS) {
      const dir = tempDir(`tflite-${name}-${precision}`);
      const res = await exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision, calibration: t.calibration }, dir);
      assert.deepEqual(res.files, ['model.tflite']);
      const bytes = readFileSync(join(dir, 'model.tflite'));
      assert.equal(bytes.subarray(4, 8).toString('latin1'), 'TFL3');
      // The default check: agreement on samples whose float margin exceeds the quantization noise, accuracy loss.
      const v = await verifyExport(tf, { target: 'tflite', precision, dir, files: res.files }, t.model, t.test);
      assert.ok(v.confidentAgreement >= (precision.includes('int8') ? 0.99 : 0.999) && v.accuracyDelta >= -0.01 - 1e-12, `${precision}: ${JSON.stringify(v)}`);
      assert.match(v.runtime, /^litert/);
      assert.ok(v.latencyMs > 0);
      sizes[precision] = res.bytes;
      console.log(`tflite ${name} ${precision}: ${JSON.stringify(v)}`);
    }
    assert.ok(sizes.float16 < sizes.float32 * 0.6, JSON.stringify(sizes));
    // Small models carry fixed overhead (names, int32 biases, per-channel scales).
    const ratio = name === 'dw-cnn' ? 0.6 : 0.3;
    assert.ok(sizes.int8 < sizes.float32 * ratio, JSON.stringify(sizes));
    assert.ok(sizes['dynamic-int8'] < sizes.float32 * ratio, JSON.stringify(sizes));
  });
}

test('verifyExport rejects an export that disagrees with its reference model, naming the failed check', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'mlp-small');
  const dir = tempDir('tflite-disagree');
  const res = await exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision: 'float32' }, dir);
  // The reference is an untrained mlp-small: the exported (trained) model cannot agree with it.
  const untrained = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 99 });
  await assert.rejects(
    // An explicit threshold checks top-1 agreement on every sample.
    verifyExport(tf, { target: 'tflite', precision: 'float32', dir, files: res.files }, untrained, t.test, { threshold: 0.999 }),
    /tflite float32 export in .* fails its check on 200 samples in litert/,
  );
});

test('tflite: corrupt bytes and a wrong file identifier are rejected with a clear error', async () => {
  const tf = await engine();
  const t = await cachedTrainedModel(tf, 'mlp-small');
  const dir = tempDir('tflite-corrupt');
  await exportModel(tf, t.model, emptyMeta(), { target: 'tflite', precision: 'float32' }, dir);
  const good = readFileSync(join(dir, 'model.tflite'));
  const truncated = new Uint8Array(good.subarray(0, 64));
  await assert.rejects(tfliteRunner(truncated), /LiteRT rejected the \.tflite file/);
  const wrongId = new Uint8Array(good);
  wrongId.set([0x58, 0x58, 0x58, 0x58], 4);
  await assert.rejects(tfliteRunner(wrongId), /LiteRT rejected the \.tflite file/);
  writeFileSync(join(dir, 'model.tflite'), truncated);
  await assert.rejects(
    verifyExport(tf, { target: 'tflite', precision: 'float32', dir, files: ['model.tflite'] }, t.model, t.test),
    /LiteRT rejected/,
  );
});
