/**
 * A helper replica of data-parallel training (src/engine/data-parallel.ts): its own tfjs engine and a copy
 * of the model rebuilt from its topology. Every step it loads replica 0's weights from the shared buffer,
 * computes the gradient of its scaled shard loss and writes it into its region of the shared gradients.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine, type BackendName } from './backend.js';
import { batchLoss } from './train.js';
import { valuesOf, type HelperInit, type HelperMessage, type HelperStep } from './data-parallel.js';

const size = (shape: number[]) => shape.reduce((a, d) => a * d, 1);

async function rebuild(tf: typeof tfType, topology: unknown): Promise<tfType.LayersModel> {
  return tf.models.modelFromJSON({ modelTopology: topology as tfType.io.ModelJSON['modelTopology'] });
}

/** Assigns `flat` (every weight of the model, concatenated in model.weights order) to the model's weights. */
function loadWeights(tf: typeof tfType, model: tfType.LayersModel, flat: Float32Array): void {
  let at = 0;
  tf.tidy(() => {
    for (const w of model.weights) {
      const n = size(w.shape as number[]);
      w.write(tf.tensor(flat.subarray(at, at + n), w.shape as number[], 'float32'));
      at += n;
    }
  });
}

async function main(init: HelperInit): Promise<void> {
  const post = (m: HelperMessage) => parentPort!.postMessage(m);
  const { tf } = await initEngine(init.backend as BackendName);
  const model = await rebuild(tf, init.topology);
  const shapes = model.weights.map((w) => (w.shape as number[]).join('x'));
  if (shapes.join(',') !== init.shapes.map((s) => s.join('x')).join(',')) {
    throw new Error(`the rebuilt model's weights (${shapes.length}) do not match replica 0's (${init.shapes.length})`);
  }
  const weights = new Float32Array(init.weights);
  const grads = new Float32Array(init.grads);
  const inputs = new Float32Array(init.inputs);
  const sample = size(init.sampleShape);
  const vars = init.trainable.map((i) => model.weights[i].read() as tfType.Variable);
  const offsets: number[] = [];
  vars.reduce((at, v) => (offsets.push(at), at + v.size), 0);
  const dropouts = model.layers.filter((l) => l.getClassName() === 'Dropout') as unknown as Array<{ seed?: number }>;
  let teacher: { model: tfType.LayersModel; temperature: number; alpha: number } | undefined;
  if (init.teacher) {
    const t = await rebuild(tf, init.teacher.topology);
    loadWeights(tf, t, init.teacher.weights);
    teacher = { model: t, temperature: init.teacher.temperature, alpha: init.teacher.alpha };
  }

  const step = (m: HelperStep): { loss: number; correct: number } => {
    if (init.fault && init.fault.worker === init.replica && init.fault.step === m.step) {
      if (init.fault.kind === 'exit') process.exit(3);
      throw new Error("injected fault");
    }
    if (m.labels.length === 0) {
      grads.fill(0);
      return { loss: 0, correct: 0 };
    }
    loadWeights(tf, model, weights);
    dropouts.forEach((l, i) => (l.seed = m.dropoutSeeds[i]));
    const [lossT, correctT] = tf.tidy(() => {
      const n = m.labels.length;
      const xb = tf.tensor(inputs.subarray(0, n * sample), [n, ...init.sampleShape]);
      const yi = tf.tensor1d(m.labels, 'int32');
      const yb = tf.oneHot(yi, init.numClasses);
      const tProbs = teacher ? (teacher.model.apply(xb, { training: false }) as tfType.Tensor) : undefined;
      let correct: tfType.Tensor | undefined;
      const f = (): tfType.Scalar => {
        const probs = model.apply(xb, { training: true }) as tfType.Tensor;
        correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(probs, -1), yi), 'int32')));
        const loss = batchLoss(tf, probs, yb, teacher && tProbs ? { probs: tProbs, temperature: teacher.temperature, alpha: teacher.alpha } : undefined);
        return tf.mul(loss, m.scale);
      };
      const { value, grads: g } = tf.variableGrads(f, vars);
      vars.forEach((v, k) => {
        const gk = g[v.name];
        if (gk) grads.set(valuesOf(tf, gk), offsets[k]);
        else grads.fill(0, offsets[k], offsets[k] + v.size);
      });
      return [value, correct!];
    });
    const out = { loss: lossT.dataSync()[0], correct: correctT.dataSync()[0] };
    tf.dispose([lossT, correctT]);
    return out;
  };

  parentPort!.on('message', (m: HelperStep) => {
    try {
      post({ type: 'grads', step: m.step, ...step(m) });
    } catch (e) {
      post({ type: 'error', step: m.step, message: (e as Error).message });
    }
  });
  post({ type: 'ready' });
}

if (parentPort) {
  main(workerData as HelperInit).catch((e: unknown) => parentPort!.postMessage({ type: 'error', message: (e as Error).message ?? String(e) } satisfies HelperMessage));
}
