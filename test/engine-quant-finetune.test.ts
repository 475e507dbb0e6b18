import { test } from 'node:test';
import type * as tfType from '@tensorflow/tfjs';
import assert from 'node:assert/strict';
import { initEngine } from '../src/engine/backend.js';
import { applyWeightQuant } from '../src/compression/fakequant.js';
import { quantFinetuneHooks } from '../src/stages/quant-finetune.js';

const { tf } = await initEngine('wasm');

/** Input [6, 6, 4] -> SeparableConv2D (depthwise [2, 2, 4, 1], pointwise [1, 1, 4, 8], seeded) -> Dense. */
function separableNet() {
  const i = tf.input({ shape: [6, 6, 4] });
  const s = tf.layers.separableConv2d({ filters: 8, kernelSize: 2, name: 'sep', depthwiseInitializer: tf.initializers.glorotUniform({ seed: 1 }), pointwiseInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(i);
  const o = tf.layers.dense({ units: 3, name: 'out', kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }).apply(tf.layers.flatten().apply(s));
  return tf.model({ inputs: i, outputs: o as tfType.SymbolicTensor });
}
/** The values of sep's weight `name` (its names get a suffix in a process that built another 'sep'). */
const values = (m: tfType.LayersModel, name: string) => Array.from(m.getLayer('sep').weights.find((w) => new RegExp(`/${name}(_\\d+)?$`).test(w.name))!.read().dataSync());

for (const spec of [{ method: 'linear', bits: 8, perChannel: true }, { method: 'kmeans', bits: 3 }] as const) {
  test(`quantization-aware fine-tuning (${spec.method}) of a SeparableConv2D keeps each kernel on its own grid: the quantized depthwise kernel stays, the pointwise kernel is not requantized with its record`, () => {
    const model = separableNet();
    const applied = applyWeightQuant(tf, model, { sep: spec });
    const depthwise = values(model, 'depthwise_kernel');
    const pointwise = values(model, 'pointwise_kernel');
    const ft = quantFinetuneHooks(tf, model, applied.weightQuant, 1e-4);
    // A step that moved nothing: the weights the model computes with do not change.
    ft.hooks.afterStep!(1);
    const dwAfter = values(model, 'depthwise_kernel');
    const pwAfter = values(model, 'pointwise_kernel');
    assert.ok(pwAfter.every(Number.isFinite), `pointwise kernel after the step: ${pwAfter.slice(0, 8)}`);
    assert.deepEqual(pwAfter, pointwise, 'the pointwise kernel (not quantized) is left as it was');
    assert.deepEqual(dwAfter, depthwise, 'the quantized depthwise kernel stays on its grid');
  });
}

test("quantization-aware fine-tuning keeps a pruned SeparableConv2D's zeros in its pointwise kernel (the pruned one, not quantized) and its gradient there is zero", () => {
  const model = separableNet();
  const pw = model.getLayer('sep').weights.find((w) => /pointwise_kernel(_\d+)?$/.test(w.name))!;
  const pruned = Float32Array.from(pw.read().dataSync(), (v, i) => (i % 2 ? 0 : v));
  pw.write(tf.tensor(pruned, pw.shape as number[]));
  const key = (pw.read() as tfType.Variable).name;
  const applied = applyWeightQuant(tf, model, { sep: { method: 'linear', bits: 8, perChannel: true } });
  const ft = quantFinetuneHooks(tf, model, applied.weightQuant, 1e-4);
  const g = ft.hooks.transformGradients!({ [key]: tf.onesLike(pw.read()) }, 1)[key].dataSync();
  assert.deepEqual(Array.from(g), Array.from(pruned, (v) => (v === 0 ? 0 : 1)), 'gradient masked at the pruned weights');
  // An optimizer step that moved every weight (weight decay, momentum) by 0.01:
  pw.write(tf.add(pw.read(), 0.01));
  ft.hooks.afterStep!(1);
  const after = pw.read().dataSync();
  pruned.forEach((v, i) => assert.ok(v === 0 ? after[i] === 0 : Math.abs(after[i] - (v + 0.01)) < 1e-6, `weight ${i}: ${v} -> ${after[i]}`));
});
