import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe, type RunSummary } from '../src/run/execute.js';
import { workspace } from './helpers.js';
import { writeKeras2H5 } from './fixtures/keras-writer.js';

const { tf } = await initEngine('wasm');
const metricsOf = (s: RunSummary, id: string) => s.stages.find((x) => x.id === id)!.metrics as Record<string, any>;
type T = tfType.SymbolicTensor;

/**
 * A U-Net-style MNIST classifier as Keras 2 would save it: two stride-2 encoder convs (28 -> 14 -> 7),
 * a stride-2 Conv2DTranspose decoder back to 14x14, a skip connection (Concatenate with the first
 * encoder's output) and a classifier head.
 */
function unetClassifier(): tfType.LayersModel {
  let n = 0;
  const init = () => tf.initializers.glorotUniform({ seed: 30 + n++ });
  const L = tf.layers;
  const ap = (layer: tfType.layers.Layer, x: T | T[]) => layer.apply(x) as T;
  const input = tf.input({ shape: [28, 28, 1], name: 'image' });
  const e1 = ap(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(), name: 'enc1' }), input);
  const e2 = ap(L.conv2d({ filters: 16, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(), name: 'enc2' }), e1);
  const d = ap(L.conv2dTranspose({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: init(), name: 'dec' }), e2);
  let x = ap(L.concatenate({ name: 'skip' }), [d, e1]);
  x = ap(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', activation: 'relu', kernelInitializer: init(), name: 'head_conv' }), x);
  x = ap(L.flatten({ name: 'flatten' }), x);
  x = ap(L.dense({ units: 10, activation: 'softmax', kernelInitializer: init(), name: 'logits' }), x);
  return tf.model({ inputs: input, outputs: x, name: 'unet_classifier' });
}

const HEAD = `version: 1
seed: 5
data:
  digits: { source: mnist, limit: 600 }
stages:
  src:
    uses: load
    with: { path: unet.h5 }
`;

async function run(stages: string): Promise<RunSummary> {
  const { file, dir } = workspace(HEAD + stages);
  writeFileSync(join(dir, 'unet.h5'), await writeKeras2H5(unetClassifier()));
  return runRecipe(loadRecipe(file));
}

test('a U-Net-style .h5 with Conv2DTranspose goes through magnitude pruning (with fine-tuning), structured pruning, int8 and every export (>= 99% agreement)', async () => {
  const s = await run(`  sparse:
    uses: prune
    needs: [src]
    with: { method: magnitude, sparsity: 0.5, train: { epochs: 6, batchSize: 32, optimizer: { learningRate: 0.005 } } }
  slim:
    uses: prune
    needs: [sparse]
    with: { method: structured, sparsity: 0.25, layers: [ { match: "*", exclude: true }, { match: enc2 } ] }
  int8:
    uses: quantize
    needs: [slim]
    with: { default: { method: linear, bits: 8 } }
  report:
    uses: evaluate
    needs: [int8]
    with: { latencySamples: 0 }
  ship:
    uses: export
    needs: [int8]
    with: { targets: [ { target: tflite, precision: int8 }, { target: onnx, precision: int8 }, { target: tfjs, precision: float32 } ] }
`);
  for (const st of s.stages) assert.equal(st.status, 'ran', `${st.id}: ${st.reason}`);
  const sparse = metricsOf(s, 'sparse');
  assert.ok(sparse.layers.some((l: any) => l.name === 'dec' && Math.abs(l.sparsity - 0.5) < 0.01), JSON.stringify(sparse.layers));
  // Removing enc2's filters shrinks the Conv2DTranspose's input channels (kernel [3, 3, 8, 16 -> 12]).
  const slim = metricsOf(s, 'slim');
  assert.equal(slim.removedUnits, 4);
  assert.equal(slim.paramsBefore - slim.params, 4 * (3 * 3 * 8 + 1) + 3 * 3 * 8 * 4, JSON.stringify(slim));
  const dec = metricsOf(s, 'report').layers.find((l: any) => l.name === 'dec');
  assert.equal(dec.macs, 3 * 3 * 8 * 12 * 7 * 7, JSON.stringify(dec));
  assert.ok(sparse.accuracy > 0.6, `fine-tuned accuracy ${sparse.accuracy}`);
  for (const e of metricsOf(s, 'ship').exports) assert.ok(e.agreement >= 0.99, JSON.stringify(e));
});

test('structured pruning that selects a Conv2DTranspose fails before pruning or training, naming the layer and how to exclude it', async () => {
  const s = await run(`  slim:
    uses: prune
    needs: [src]
    with: { method: structured, sparsity: 0.25, train: { epochs: 1 } }
`);
  const slim = s.stages.find((x) => x.id === 'slim')!;
  assert.equal(slim.status, 'failed');
  assert.match(slim.reason ?? '', /method structured cannot prune layer 'dec': .*exclude it \(layers: \[\{ type: Conv2DTranspose, exclude: true \}\]\)/);
});
