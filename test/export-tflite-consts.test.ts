import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { execa } from 'execa';
import { exportModel } from '../src/export/index.js';
import { tfliteRunner } from '../src/export/verify/runners.js';
import { emptyMeta } from '../src/model/meta.js';
import { createRng } from '../src/util/rng.js';
import { engine, tempDir } from './fixtures/export/models.js';

// A ReLU with max_value 4 is a MINIMUM with the constant 4; its inputs never reach 4 here, so the output's
// int8 grid is not the constant's own and the constant must be put on the output's grid.
test('int8 .tflite: a constant put on another operand\'s grid keeps its shape (ArmNN loads the file and agrees with LiteRT)', async () => {
  const tf = await engine();
  const rng = createRng(5);
  const input = tf.input({ shape: [8] });
  const hidden = tf.layers.dense({ units: 16, name: 'fc1', kernelInitializer: tf.initializers.randomUniform({ minval: -0.2, maxval: 0.2, seed: 1 }) }).apply(input);
  const capped = tf.layers.reLU({ maxValue: 4, name: 'cap' }).apply(hidden);
  const output = tf.layers.dense({ units: 3, activation: 'softmax', name: 'fc2', kernelInitializer: tf.initializers.randomUniform({ minval: -1, maxval: 1, seed: 2 }) }).apply(capped) as import('@tensorflow/tfjs').SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: output });
  const n = 32;
  const x = Float32Array.from({ length: n * 8 }, () => rng());
  const dir = tempDir('tflite-consts');
  await exportModel(tf, model, emptyMeta(), { target: 'tflite', precision: 'int8', perChannel: false, calibration: x, calibrationShape: [8] }, dir);
  writeFileSync(join(dir, 'x.f32'), x);
  const script = fileURLToPath(new URL('../../test/fixtures/armnn_run.py', import.meta.url));
  const armnnRun = await execa('/usr/bin/python3', [script, join(dir, 'model.tflite'), join(dir, 'x.f32'), String(n), join(dir, 'y.f32')], { reject: false });
  assert.equal(armnnRun.exitCode, 0, armnnRun.stderr);
  const armnn = new Float32Array(Uint8Array.from(readFileSync(join(dir, 'y.f32'))).buffer);
  const runner = await tfliteRunner(new Uint8Array(readFileSync(join(dir, 'model.tflite'))));
  const litert = await runner.run(x, n, [8]);
  runner.dispose();
  assert.equal(armnn.length, litert.length);
  let maxDiff = 0;
  for (let i = 0; i < armnn.length; i++) maxDiff = Math.max(maxDiff, Math.abs(armnn[i] - litert[i]));
  assert.ok(maxDiff <= 1 / 64, `ArmNN and LiteRT outputs differ by up to ${maxDiff}`);
  model.dispose();
});
