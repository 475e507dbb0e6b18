import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { buildModel, type BuiltinModel } from '../src/engine/models.js';
import { loadMnist, splitDataset } from '../src/data/mnist.js';
import type { Dataset } from '../src/data/dataset.js';
import { trainModel, type TrainOptions } from '../src/engine/train.js';
import { dataParallelHelperBytes, shardIndices, trainWorkers } from '../src/engine/data-parallel.js';
import { BACKGROUND_NICE, platformThreads } from '../src/engine/background-threads.js';
import { getPriority } from 'node:os';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe } from '../src/run/execute.js';
import { workspace } from './helpers.js';

let tf: typeof tfType;
let train: Dataset;
before(async () => {
  ({ tf } = await initEngine('wasm'));
  train = splitDataset(loadMnist(), { train: 256, validation: 0, test: 0 }, 5, 256).train;
});

/** Trains a fresh `name` model for `steps` steps on `workers` replicas; its weights and the result. */
async function trained(name: BuiltinModel, workers: number, opts: Partial<TrainOptions> = {}) {
  const m = buildModel(tf, name, { inputShape: [28, 28, 1], numClasses: 10, seed: 7 });
  try {
    const r = await trainModel(tf, m, train, { steps: 4, batchSize: 64, seed: 3, optimizer: { name: 'sgd', learningRate: 0.1 }, workers, ...opts });
    return { weights: m.getWeights().map((w) => Float32Array.from(w.dataSync() as Float32Array)), result: r };
  } finally {
    m.dispose();
  }
}

const maxAbsDiff = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((x, i) => x.reduce((m, v, j) => Math.max(m, Math.abs(v - b[i][j])), 0)));

test('shards: contiguous, sizes differing by at most one, every index once', () => {
  const idx = Uint32Array.from({ length: 11 }, (_, i) => 10 - i);
  const s = shardIndices(idx, 3);
  assert.deepEqual(s.map((x) => x.length), [4, 4, 3]);
  assert.deepEqual(s.flatMap((x) => [...x]), [...idx]);
});

test('W=2 without batch norm: the summed shard gradients are the full batch gradient (weights equal W=1 up to float order)', async () => {
  const one = await trained('mlp-small', 1);
  const two = await trained('mlp-small', 2);
  assert.equal(one.result.workers, 1);
  assert.equal(two.result.workers, 2);
  const d = maxAbsDiff(one.weights, two.weights);
  assert.ok(d < 1e-5, `max |W=1 - W=2| = ${d}`);
  // The loss the loop reports is the full batch's, not one shard's.
  assert.ok(Math.abs(one.result.history[0].loss - two.result.history[0].loss) < 1e-5, `${one.result.history[0].loss} vs ${two.result.history[0].loss}`);
});

test('W=2 distillation with an extra loss term: the teacher runs on every replica, the extra term counts once (weights equal W=1)', async () => {
  const teacher = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 99 });
  try {
    // An L2 penalty on the weights: added to the loss once per step, by replica 0.
    const l2 = (m: tfType.LayersModel) => () => tf.mul(tf.addN(m.trainableWeights.map((w) => tf.sum(tf.square(w.read())))), 1e-2) as tfType.Scalar;
    const run = async (workers: number) => {
      const m = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 7 });
      try {
        const r = await trainModel(tf, m, train, { steps: 4, batchSize: 64, seed: 3, optimizer: { name: 'sgd', learningRate: 0.1 }, workers, hooks: { teacher: { model: teacher, temperature: 2, alpha: 0.7 }, extraLoss: l2(m) } });
        return { weights: m.getWeights().map((w) => Float32Array.from(w.dataSync() as Float32Array)), loss: r.history[0].loss };
      } finally {
        m.dispose();
      }
    };
    const one = await run(1);
    const two = await run(2);
    const d = maxAbsDiff(one.weights, two.weights);
    assert.ok(d < 1e-5, `max |W=1 - W=2| = ${d}`);
    assert.ok(Math.abs(one.loss - two.loss) < 1e-5, `${one.loss} vs ${two.loss}`);
  } finally {
    teacher.dispose();
  }
});

test('W=2 with batch norm is deterministic run to run and leaves no tensors behind', async () => {
  const base = tf.memory().numTensors;
  const opts = { optimizer: { name: 'adam' as const, learningRate: 1e-3 } };
  const a = await trained('dw-cnn', 2, opts);
  const b = await trained('dw-cnn', 2, opts);
  assert.equal(maxAbsDiff(a.weights, b.weights), 0);
  assert.equal(tf.memory().numTensors, base);
  // Per-shard batch statistics: close to, not equal to, one replica's result.
  const one = await trained('dw-cnn', 1, opts);
  const d = maxAbsDiff(one.weights, a.weights);
  assert.ok(d > 0 && d < 1e-2, `max |W=1 - W=2| = ${d}`);
});

test('a helper that throws mid-step fails the training with the replica and step named, no hang', async () => {
  const base = tf.memory().numTensors;
  await assert.rejects(trained('mlp-small', 2, { dataParallelFault: { worker: 1, step: 2, kind: 'throw' } }), /replica 1 of 2 \(a worker thread\) failed at step 2: injected fault/);
  assert.equal(tf.memory().numTensors, base);
});

test('a helper thread that exits mid-step fails the training with its exit code, no hang', async () => {
  await assert.rejects(trained('mlp-small', 3, { dataParallelFault: { worker: 2, step: 1, kind: 'exit' } }), /replica 2 of 3 \(a worker thread\) exited with code 3 at step 1/);
});

test('after a helper failed, the next data-parallel call starts fresh helpers and trains', async () => {
  await assert.rejects(trained('mlp-small', 2, { dataParallelFault: { worker: 1, step: 0, kind: 'exit' } }), /exited with code 3 at step 0/);
  const again = await trained('mlp-small', 2);
  assert.equal(again.result.workers, 2);
  assert.equal(again.result.steps, 4);
});

test('while W=2 replicas train, V8\'s background threads run at BACKGROUND_NICE and the replica here at its own; afterwards as before', async () => {
  const tids = platformThreads();
  const before = tids.map((t) => getPriority(t));
  const during: number[][] = [];
  const self = getPriority();
  const r = await trained('mlp-small', 2, { onProgress: (p) => void (p.phase === 'batch' && during.push([getPriority(), ...tids.map((t) => getPriority(t))])) });
  assert.equal(r.result.workers, 2);
  assert.equal(during.length, 4);
  for (const [replica0, ...background] of during) {
    assert.equal(replica0, self);
    assert.deepEqual(background, tids.map(() => BACKGROUND_NICE));
  }
  // Restoring needs root (the CI's user); without it they stay lowered (src/engine/background-threads.ts).
  const after = tids.map((t) => getPriority(t));
  if (process.getuid?.() === 0) assert.deepEqual(after, before);
  else assert.ok(after.every((p, i) => p >= before[i]));
});

test('the helpers\' memory (their JS and wasm heaps) is reported for the stage footprint', async () => {
  await trained('mlp-small', 2);
  // The idle helper keeps its engine (and heap) for the next call: a tfjs-wasm heap is at least 16 MB.
  assert.ok(dataParallelHelperBytes() > 16 * 1024 * 1024, `${dataParallelHelperBytes()} bytes`);
});

test('COMPRESS_TRAIN_WORKERS trains a stage data-parallel under its own cache key (a W=1 result is not served for W=2)', async () => {
  const { file } = workspace(`version: 1
seed: 4
data:
  digits: { source: mnist, limit: 300 }
stages:
  base:
    uses: train
    with: { model: mlp-small, steps: 6, batchSize: 32 }
`);
  const saved = process.env.COMPRESS_TRAIN_WORKERS;
  try {
    delete process.env.COMPRESS_TRAIN_WORKERS;
    const one = await runRecipe(loadRecipe(file));
    process.env.COMPRESS_TRAIN_WORKERS = '2';
    const two = await runRecipe(loadRecipe(file));
    assert.equal(one.stages[0].status, 'ran');
    assert.equal(two.stages[0].status, 'ran', 'the W=1 entry must not be served for W=2');
    assert.match(two.engine, /\+dp\.2$/);
    assert.doesNotMatch(one.engine, /\+dp/);
    assert.equal((two.stages[0].metrics as { steps: number }).steps, 6);
    assert.equal((await runRecipe(loadRecipe(file))).stages[0].status, 'cached', 'W=2 again: its own entry');
  } finally {
    if (saved === undefined) delete process.env.COMPRESS_TRAIN_WORKERS;
    else process.env.COMPRESS_TRAIN_WORKERS = saved;
  }
});

test('COMPRESS_TRAIN_WORKERS outside 1..8 (or auto) is refused with a message naming it', () => {
  const saved = process.env.COMPRESS_TRAIN_WORKERS;
  try {
    process.env.COMPRESS_TRAIN_WORKERS = '0';
    assert.throws(() => trainWorkers(), { name: 'UsageError', message: /COMPRESS_TRAIN_WORKERS must be 'auto' or an integer from 1 to 8, got '0'/ });
    process.env.COMPRESS_TRAIN_WORKERS = 'auto';
    assert.ok(trainWorkers() >= 1);
  } finally {
    if (saved === undefined) delete process.env.COMPRESS_TRAIN_WORKERS;
    else process.env.COMPRESS_TRAIN_WORKERS = saved;
  }
});
