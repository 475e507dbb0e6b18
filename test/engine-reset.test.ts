import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { simdKernels } from '../src/engine/simd/module.js';

/** Own file: tf.engine().reset() drops every tensor and backend of the process. */
test('after tf.engine().reset() makes a new wasm backend, the SIMD kernels bind to its heap', async () => {
  const { tf } = await initEngine('wasm');
  const heap = () => (tf.backend() as unknown as { wasm: { asm: { memory: WebAssembly.Memory } } }).wasm.asm.memory;
  const before = heap();
  const xv = Float32Array.from({ length: 4 * 12 * 12 * 3 }, (_, i) => Math.sin(i));
  const wv = Float32Array.from({ length: 3 * 3 * 3 * 8 }, (_, i) => Math.cos(i));
  const grads = () => {
    const x = tf.tensor4d(xv, [4, 12, 12, 3]), w = tf.tensor4d(wv, [3, 3, 3, 8]);
    const g = tf.grads((a, f) => tf.relu(tf.conv2d(a as tfType.Tensor4D, f as tfType.Tensor4D, 1, 'valid')).square().sum())([x, w]);
    return g.map((t) => Array.from(t.dataSync()));
  };
  const first = tf.tidy(grads);
  tf.engine().reset();
  await tf.setBackend('wasm');
  await tf.ready();
  assert.notEqual(heap(), before, 'tfjs made a new wasm backend with its own heap');
  const again = tf.tidy(grads);
  assert.ok(simdKernels(tf.backend()), 'the kernels are bound to the new heap');
  await tf.setBackend('cpu');
  const reference = tf.tidy(grads);
  await tf.setBackend('wasm');
  for (let i = 0; i < reference.length; i++) {
    const scale = Math.max(...reference[i].map(Math.abs));
    const err = Math.max(...reference[i].map((v, j) => Math.abs(v - again[i][j]))) / scale;
    assert.ok(err < 1e-4, `gradient ${i} after the reset: err ${err}`);
    assert.deepEqual(again[i], first[i], `gradient ${i}: same as before the reset`);
  }
});
