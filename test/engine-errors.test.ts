import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { explainEngineFailure } from '../src/errors/engine-errors.js';

test("the wasm engine's abort on a full heap is reported as running out of memory, with what to change and the engine's text", () => {
  const m = explainEngineFailure('Aborted(). Build with -sASSERTIONS for more info.');
  assert.match(m, /^the wasm engine ran out of memory \(a wasm heap holds at most 4 GB\): lower the stage's batch size \(train\.batchSize/);
  assert.match(m, /\(engine: Aborted\(\)\. Build with -sASSERTIONS for more info\.\)$/);
  assert.equal(explainEngineFailure("layer 'x': kernel expects 3 channels"), "layer 'x': kernel expects 3 channels", 'other failures keep their message');
});

test("tfjs's refusal of a dilated conv's gradient (the cpu backend) is explained with the backend to use", async () => {
  const { initEngine } = await import('../src/engine/backend.js');
  const { tf } = await initEngine('cpu');
  const w = tf.variable(tf.randomNormal([3, 3, 2, 2], 0, 1, 'float32', 1));
  const x = tf.randomNormal([1, 8, 8, 2], 0, 1, 'float32', 2);
  let message = '';
  try {
    tf.variableGrads(() => tf.sum(tf.conv2d(x as tfType.Tensor4D, w as tfType.Tensor4D, 1, 'same', 'NHWC', 2)) as tfType.Scalar);
  } catch (e) {
    message = (e as Error).message;
  }
  assert.match(explainEngineFailure(message), /this backend has no gradient for dilated convolutions .* use --backend wasm/);
});
