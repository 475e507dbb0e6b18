import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { InputError } from '../src/errors/input-error.js';
import { outputClassesOf } from '../src/stages/support.js';

const { tf } = await initEngine('cpu');

test("a stage that scores labels refuses a model whose output is not a class vector (a segmentation map), naming the stage and the output shape", () => {
  const input = tf.input({ shape: [16, 16, 3] });
  const seg = tf.layers.conv2d({ filters: 5, kernelSize: 1 }).apply(input) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: seg });
  assert.throws(
    () => outputClassesOf(model, 'baseline'),
    (e: unknown) => e instanceof InputError && /stage 'baseline': the model's output per sample is \[16, 16, 5\], not a vector of class scores/.test(e.message) && /needs a classifier/.test(e.message),
  );
  const head = tf.layers.dense({ units: 5 }).apply(tf.layers.flatten().apply(seg)) as tfType.SymbolicTensor;
  assert.equal(outputClassesOf(tf.model({ inputs: input, outputs: head }), 'baseline'), 5);
});
