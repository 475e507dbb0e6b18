import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { loadMnist, splitDataset } from '../src/data/mnist.js';
import type { Dataset } from '../src/data/dataset.js';
import { EvalAccumulator, evaluateModel, learningRateAt, trainModel, type TrainOptions } from '../src/engine/train.js';

let tf: typeof tfType;
let train: Dataset, val: Dataset;
before(async () => {
  ({ tf } = await initEngine('wasm'));
  const s = splitDataset(loadMnist(), { train: 600, validation: 200, test: 0 }, 11, 800);
  train = s.train;
  val = s.validation;
});

const adam = (lr = 1e-3): TrainOptions['optimizer'] => ({ name: 'adam', learningRate: lr });

test('learningRateAt: constant, step and cosine schedules', () => {
  assert.equal(learningRateAt(undefined, 0.1, 5, 10), 0.1);
  assert.equal(learningRateAt({ kind: 'constant' }, 0.1, 9, 10), 0.1);
  const step = { kind: 'step' as const, stepSize: 2, gamma: 0.5 };
  assert.deepEqual([0, 1, 2, 3, 4].map((e) => learningRateAt(step, 0.8, e, 5)), [0.8, 0.8, 0.4, 0.4, 0.2]);
  const cos = { kind: 'cosine' as const, minLearningRate: 0.01 };
  assert.equal(learningRateAt(cos, 0.1, 0, 5), 0.1);
  assert.ok(Math.abs(learningRateAt(cos, 0.1, 2, 5) - 0.055) < 1e-12);
  assert.ok(Math.abs(learningRateAt(cos, 0.1, 4, 5) - 0.01) < 1e-12);
  assert.equal(learningRateAt({ kind: 'cosine' }, 0.1, 0, 1), 0.1);
});

test('the lr schedule reaches the optimizer (history records it)', async () => {
  const m = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 1 });
  const r = await trainModel(tf, m, train, { epochs: 3, steps: 3 * 3, batchSize: 200, seed: 1, optimizer: { name: 'sgd', learningRate: 0.1, momentum: 0.9 }, lrSchedule: { kind: 'step', stepSize: 1, gamma: 0.1 } });
  assert.deepEqual(r.history.map((h) => +h.lr.toPrecision(6)), [0.1, 0.01, 0.001]);
  assert.equal(r.steps, 9);
  m.dispose();
});

/** Blocks on the wasm heap: tensors plus the kernels' scratch buffers and the optimizer's moments. */
const heapBlocks = () => (tf.backend() as unknown as { numDataIds(): number }).numDataIds();

test('loss falls for an MLP (lenet-300-100) on wasm, and no tensors leak', async () => {
  const base = tf.memory().numTensors;
  const blocks = heapBlocks();
  const m = buildModel(tf, 'lenet-300-100', { inputShape: [28, 28, 1], numClasses: 10, seed: 3 });
  const withModel = tf.memory().numTensors;
  const before = evaluateModel(tf, m, train);
  const r = await trainModel(tf, m, train, { epochs: 3, batchSize: 32, seed: 3, optimizer: adam(), validation: val });
  const after = evaluateModel(tf, m, train);
  assert.ok(after.loss < before.loss * 0.6, `loss ${before.loss} -> ${after.loss}`);
  assert.ok(r.history[2].loss < r.history[0].loss);
  assert.ok(r.history[2].valAccuracy! > 0.7, `val accuracy ${r.history[2].valAccuracy}`);
  assert.equal(after.predictions.length, train.n);
  assert.ok(after.top5! >= after.accuracy);
  assert.equal(tf.memory().numTensors, withModel, 'training and evaluation leave no tensors behind');
  m.dispose();
  assert.equal(tf.memory().numTensors, base);
  assert.equal(heapBlocks(), blocks, 'no scratch buffer or optimizer moment is left on the wasm heap');
});

test('loss falls for the depthwise dw-cnn on wasm (BatchNorm, depthwise, strides), no leak', async () => {
  const small = { ...train, n: 256, x: train.x.subarray(0, 256 * 784), y: train.y.subarray(0, 256) };
  const m = buildModel(tf, 'dw-cnn', { inputShape: [28, 28, 1], numClasses: 10, seed: 5 });
  const withModel = tf.memory().numTensors;
  const blocks = heapBlocks();
  const before = evaluateModel(tf, m, small);
  const r = await trainModel(tf, m, small, { epochs: 4, batchSize: 32, seed: 5, optimizer: adam(3e-3) });
  assert.ok(r.history[3].loss < r.history[0].loss * 0.8, `train loss ${r.history.map((h) => h.loss)}`);
  assert.ok(r.history[3].loss < before.loss, `${before.loss} -> ${r.history[3].loss}`);
  assert.equal(tf.memory().numTensors, withModel);
  assert.equal(heapBlocks(), blocks, 'no scratch buffer or optimizer moment is left on the wasm heap');
  m.dispose();
});

test('EvalAccumulator fed batch by batch from another pass gives evaluateModel\'s metrics', () => {
  const m = buildModel(tf, 'lenet-300-100', { inputShape: [28, 28, 1], numClasses: 10, seed: 4 });
  const data = { ...val, n: 50, x: val.x.subarray(0, 50 * 784), y: val.y.subarray(0, 50) };
  const ev = evaluateModel(tf, m, data, 256, 3);
  const acc = new EvalAccumulator(tf, data, 3);
  // Batches of 7 (evaluateModel took one of 50): another partition, the same per-sample outputs.
  for (let start = 0; start < data.n; start += 7) {
    const end = Math.min(data.n, start + 7);
    const probs = tf.tidy(() => m.predict(tf.tensor(data.x.subarray(start * 784, end * 784), [end - start, 28, 28, 1])) as tfType.Tensor);
    acc.add(probs, start);
    probs.dispose();
  }
  const r = acc.result();
  assert.deepEqual(r.predictions, ev.predictions);
  assert.equal(r.accuracy, ev.accuracy);
  assert.equal(r.top5, ev.top5);
  assert.equal(r.topK, ev.topK);
  assert.ok(Math.abs(r.loss - ev.loss) < 1e-5 * ev.loss, `loss ${r.loss} vs ${ev.loss}`);
  m.dispose();
});

test('EvalAccumulator refuses a result before every sample was added', () => {
  const m = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 4 });
  const data = { ...val, n: 10, x: val.x.subarray(0, 10 * 784), y: val.y.subarray(0, 10) };
  const acc = new EvalAccumulator(tf, data);
  const probs = tf.tidy(() => m.predict(tf.tensor(data.x.subarray(0, 4 * 784), [4, 28, 28, 1])) as tfType.Tensor);
  acc.add(probs, 0);
  probs.dispose();
  assert.throws(() => acc.result(), /saw 4 of 10 samples/);
  m.dispose();
});

async function weightsAfter(opts: Partial<TrainOptions>, modelSeed = 7): Promise<Float32Array[]> {
  const m = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: modelSeed });
  await trainModel(tf, m, train, { epochs: 1, batchSize: 50, seed: 9, optimizer: adam(), ...opts });
  const w = m.getWeights().map((t) => t.dataSync() as Float32Array);
  m.dispose();
  return w;
}

test('determinism: same seed gives bit-identical weights; another seed does not', async () => {
  const a = await weightsAfter({});
  const b = await weightsAfter({});
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.deepEqual(a[i], b[i]);
  const c = await weightsAfter({ seed: 10 });
  assert.notDeepEqual(a[0], c[0]);
});

test('determinism holds with Dropout in training mode (seeded masks, different per step)', async () => {
  const build = () => {
    const input = tf.input({ shape: [28, 28, 1] });
    let x = tf.layers.flatten().apply(input) as tfType.SymbolicTensor;
    x = tf.layers.dense({ units: 32, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }).apply(x) as tfType.SymbolicTensor;
    x = tf.layers.dropout({ rate: 0.5 }).apply(x) as tfType.SymbolicTensor;
    x = tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }).apply(x) as tfType.SymbolicTensor;
    return tf.model({ inputs: input, outputs: x });
  };
  const run = async () => {
    const m = build();
    const r = await trainModel(tf, m, train, { epochs: 1, batchSize: 100, seed: 4, optimizer: adam() });
    const w = m.getWeights().map((t) => t.dataSync() as Float32Array);
    const evalA = evaluateModel(tf, m, val).loss, evalB = evaluateModel(tf, m, val).loss;
    m.dispose();
    return { w, loss: r.history[0].loss, evalA, evalB };
  };
  const a = await run(), b = await run();
  for (let i = 0; i < a.w.length; i++) assert.deepEqual(a.w[i], b.w[i]);
  assert.equal(a.loss, b.loss);
  assert.equal(a.evalA, a.evalB, 'evaluation runs dropout in inference mode');
});

test('early stopping stops and restores the best weights', async () => {
  const m = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 2 });
  // A huge learning rate makes validation loss get worse after the first epoch.
  const r = await trainModel(tf, m, train, {
    epochs: 20, batchSize: 100, seed: 2, optimizer: { name: 'sgd', learningRate: 5 }, validation: val,
    earlyStopping: { patience: 2, restoreBest: true },
  });
  assert.ok(r.stoppedEarly);
  assert.ok(r.history.length < 20);
  assert.equal(r.history.length, r.bestEpoch! + 3);
  const ev = evaluateModel(tf, m, val);
  assert.ok(Math.abs(ev.loss - r.history[r.bestEpoch!].valLoss!) < 1e-4, `restored ${ev.loss} vs best ${r.history[r.bestEpoch!].valLoss}`);
  m.dispose();
});

test('hooks: beforeStep/afterStep/transformGradients/extraLoss are called; a mask hook keeps zeros zero', async () => {
  const m = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 8 });
  const kernel = m.getLayer('dense_1').getWeights()[0];
  const kernelVar = m.getLayer('dense_1').trainableWeights[0];
  const name = kernelVar.name;
  const mask = tf.tidy(() => tf.cast(tf.greater(tf.randomUniform(kernel.shape, 0, 1, 'float32', 3), 0.5), 'float32'));
  m.getLayer('dense_1').setWeights([tf.mul(kernel, mask), m.getLayer('dense_1').getWeights()[1]]);
  const calls = { before: 0, after: 0, transform: 0, extra: 0 };
  const seen: number[] = [];
  const base = tf.memory().numTensors;
  const r = await trainModel(tf, m, train, {
    epochs: 2, batchSize: 100, seed: 8, optimizer: { name: 'adamw', learningRate: 1e-2, weightDecay: 0.01 },
    hooks: {
      beforeStep: (s) => { calls.before++; seen.push(s); },
      transformGradients: (g, s) => {
        calls.transform++;
        assert.ok(g[name], `gradient for ${name} among ${Object.keys(g)}`);
        assert.equal(s, seen[seen.length - 1]);
        return { ...g, [name]: tf.mul(g[name], mask) };
      },
      afterStep: () => {
        calls.after++;
        (kernelVar.read() as tfType.Variable).assign(tf.mul(kernelVar.read(), mask));
      },
      extraLoss: () => { calls.extra++; return tf.mul(tf.sum(tf.abs(kernelVar.read())), 1e-5); },
    },
  });
  assert.equal(r.steps, 12);
  assert.deepEqual(calls, { before: 12, after: 12, transform: 12, extra: 12 });
  assert.deepEqual(seen, [...Array(12).keys()]);
  const w = m.getLayer('dense_1').getWeights()[0].dataSync();
  const mk = mask.dataSync();
  let zeros = 0;
  for (let i = 0; i < w.length; i++) if (mk[i] === 0) { assert.ok(w[i] === 0, `masked weight ${i} is ${w[i]}`); zeros++; }
  assert.ok(zeros > 0);
  assert.equal(tf.memory().numTensors, base);
  mask.dispose();
  m.dispose();
});

test('knowledge distillation: a teacher changes the loss, training still reduces it', async () => {
  const teacher = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 21 });
  await trainModel(tf, teacher, train, { epochs: 2, batchSize: 50, seed: 1, optimizer: adam(3e-3) });
  const student = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 22 });
  const base = tf.memory().numTensors;
  const r = await trainModel(tf, student, train, { epochs: 2, batchSize: 50, seed: 1, optimizer: adam(3e-3), hooks: { teacher: { model: teacher, temperature: 4, alpha: 0.7 } } });
  assert.ok(r.history[1].loss < r.history[0].loss);
  assert.ok(evaluateModel(tf, student, val).accuracy > 0.5);
  assert.equal(tf.memory().numTensors, base);
  teacher.dispose();
  student.dispose();
});

test('steps stops mid-epoch; an aborted signal stops training', async () => {
  const m = buildModel(tf, 'mlp-small', { inputShape: [28, 28, 1], numClasses: 10, seed: 1 });
  const r = await trainModel(tf, m, train, { steps: 4, batchSize: 100, seed: 1, optimizer: adam() });
  assert.equal(r.steps, 4);
  assert.equal(r.history.length, 1);
  const ac = new AbortController();
  ac.abort();
  const base = tf.memory().numTensors;
  await assert.rejects(trainModel(tf, m, train, { epochs: 1, batchSize: 100, seed: 1, optimizer: adam(), signal: ac.signal }));
  assert.equal(tf.memory().numTensors, base);
  m.dispose();
});
