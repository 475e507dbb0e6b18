import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { exportModel, type ExportPrecision, type ExportTarget } from '../src/export/index.js';
import { EXPORT_TARGETS } from '../src/export/targets.js';
import { importOnnx } from '../src/model/load/onnx.js';
import { checkImport, randomInputs } from '../src/model/load/onnx-verify.js';
import { emptyMeta } from '../src/model/meta.js';
import { ROOT } from './helpers.js';
import { relL2Error } from './fixtures/rel-error.js';

const { tf } = await initEngine('wasm');


test("a PyTorch U-Net step (ConvTranspose2d k3 s2 p1 output_padding 1, and k2 s2) imports and exports to TFLite and ONNX, float and int8, matching the imported model", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'compress-onnx-unet-'));
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/torch_export.py'), dir, 'unet:13'], { timeout: 300_000 });
  const file = join(dir, 'unet-13.onnx');
  const { model, reference, info } = await importOnnx(tf, file, { softmax: false });
  const shape = model.inputs[0].shape.slice(1) as number[];
  const check = await checkImport(tf, reference, info, file, randomInputs(shape, 2, 5), 2, { inputs: 'random' });
  assert.ok(check.passed, JSON.stringify(check));
  assert.equal(model.layers.filter((l) => l.getClassName() === 'Conv2DTranspose').length, 2);
  const n = 8;
  const x = randomInputs(shape, n, 6);
  const want = tf.tidy(() => (model.predict(tf.tensor(x, [n, ...shape])) as tfType.Tensor).dataSync() as Float32Array);
  const cases: Array<[ExportTarget, ExportPrecision, number]> = [['tflite', 'float32', 1e-5], ['tflite', 'int8', 3e-2], ['onnx', 'float32', 1e-5], ['onnx', 'int8', 3e-2]];
  const errors: string[] = [];
  for (const [target, precision, limit] of cases) {
    const out = mkdtempSync(join(dir, `${target}-${precision}-`));
    await exportModel(tf, model, emptyMeta(), { target, precision, calibration: randomInputs(shape, 32, 7) }, out);
    const runner = await EXPORT_TARGETS[target].open(tf, async (f) => new Uint8Array(readFileSync(join(out, f))));
    const err = relL2Error(await runner.run(x, n, shape), want);
    runner.dispose();
    console.log(`torch unet ${target} ${precision}: relative L2 error ${err.toExponential(2)}`);
    if (!(err < limit)) errors.push(`${target} ${precision}: ${err} >= ${limit}`);
  }
  assert.deepEqual(errors, []);
});
