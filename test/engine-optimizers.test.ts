import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initEngine } from '../src/engine/backend.js';
import type * as tfType from '@tensorflow/tfjs';
import { FusedAdam } from '../src/engine/optimizers.js';
import { createRng } from '../src/util/rng.js';

/** FusedAdam replaces tf.train.adam in the training loop: it must give the same weights, step after step. */
for (const backend of ['wasm', 'cpu'] as const) {
  test(`FusedAdam equals tf.train.adam on ${backend} over 20 steps (two variables, changing lr)`, async () => {
    const { tf } = await initEngine('wasm');
    await tf.setBackend(backend);
    const rng = createRng(5);
    const rand = (n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
    // [301, 41]: the SIMD loop's vectors and scalar tail on wasm; the small ones: tails only.
    const shapes = [[13, 7], [7], [301, 41]];
    const init = shapes.map((s) => rand(s.reduce((a, b) => a * b, 1)));
    const ours = shapes.map((s, i) => tf.variable(tf.tensor(init[i], s), true, `fa_ours_${backend}_${i}`));
    const ref = shapes.map((s, i) => tf.variable(tf.tensor(init[i], s), true, `fa_ref_${backend}_${i}`));
    const fused = new FusedAdam(tf, 0.01, 0.9, 0.999);
    const adam = tf.train.adam(0.01, 0.9, 0.999);
    const before = tf.memory().numTensors;
    for (let step = 0; step < 20; step++) {
      if (step === 10) {
        fused.setLearningRate(0.003);
        (adam as unknown as { learningRate: number }).learningRate = 0.003;
      }
      const g = shapes.map((s) => tf.tensor(rand(s.reduce((a, b) => a * b, 1)), s));
      fused.applyGradients(Object.fromEntries(ours.map((v, i) => [v.name, g[i]])));
      adam.applyGradients(Object.fromEntries(ref.map((v, i) => [v.name, g[i]])) as unknown as Parameters<typeof adam.applyGradients>[0]);
      g.forEach((t) => t.dispose());
    }
    for (let i = 0; i < shapes.length; i++) {
      const a = ours[i].dataSync(), b = ref[i].dataSync();
      let maxDiff = 0;
      for (let j = 0; j < a.length; j++) maxDiff = Math.max(maxDiff, Math.abs(a[j] - b[j]));
      assert.ok(maxDiff <= 1e-6, `variable ${i}: max |diff| ${maxDiff}`);
      assert.notDeepEqual(Array.from(a), Array.from(init[i]), 'the weights moved');
    }
    // FusedAdam keeps its moments outside tfjs's tensors: none accumulate (tf's adam adds 2 per variable).
    assert.equal(tf.memory().numTensors - before, 2 * shapes.length);
    fused.dispose();
    adam.dispose();
    await tf.setBackend('wasm');
  });
}
