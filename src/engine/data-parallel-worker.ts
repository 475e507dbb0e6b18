/**
 * A helper replica of data-parallel training (src/engine/data-parallel.ts): its own tfjs engine and a copy
 * of the model rebuilt from its topology. Every step it loads replica 0's weights from the shared buffer,
 * computes the gradient of its scaled shard loss and writes it into its region of the shared gradients.
 */
import { getHeapStatistics } from 'node:v8';
import { parentPort } from 'node:worker_threads';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine, type BackendName } from './backend.js';
import { SEEDED_DROPOUT_CLASSES } from '../model/custom-layers.js';
import { shardGradients, type Teacher } from './train.js';
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

/** This isolate's JS heap plus external memory (the wasm heap), what the stage's memory budget counts. */
function footprint(): number {
  const h = getHeapStatistics();
  return h.used_heap_size + h.external_memory;
}

/** The model (and teacher) of one training call, and how to compute a step's gradients with it. */
class Replica {
  private readonly weights: Float32Array;
  private readonly grads: Float32Array;
  private readonly inputs: Float32Array;
  private readonly vars: tfType.Variable[];
  private readonly offsets: number[] = [];
  private readonly dropouts: Array<{ seed?: number }>;

  private constructor(
    private readonly tf: typeof tfType,
    private readonly init: HelperInit,
    private readonly model: tfType.LayersModel,
    private readonly teacher: Teacher | undefined,
  ) {
    this.weights = new Float32Array(init.weights);
    this.grads = new Float32Array(init.grads);
    this.inputs = new Float32Array(init.inputs);
    this.vars = init.trainable.map((i) => model.weights[i].read() as tfType.Variable);
    this.vars.reduce((at, v) => (this.offsets.push(at), at + v.size), 0);
    this.dropouts = model.layers.filter((l) => SEEDED_DROPOUT_CLASSES.has(l.getClassName())) as unknown as Array<{ seed?: number }>;
  }

  static async create(tf: typeof tfType, init: HelperInit): Promise<Replica> {
    const model = await rebuild(tf, init.topology);
    const shapes = model.weights.map((w) => (w.shape as number[]).join('x'));
    if (shapes.join(',') !== init.shapes.map((s) => s.join('x')).join(',')) {
      model.dispose();
      throw new Error(`the rebuilt model's weights (${shapes.join(',')}) do not match replica 0's`);
    }
    let teacher: Teacher | undefined;
    if (init.teacher) {
      const t = await rebuild(tf, init.teacher.topology);
      loadWeights(tf, t, init.teacher.weights);
      teacher = { model: t, temperature: init.teacher.temperature, alpha: init.teacher.alpha };
    }
    return new Replica(tf, init, model, teacher);
  }

  /** Loads replica 0's weights and writes the gradient of the scaled shard loss into the shared buffer. */
  step(m: HelperStep): { loss: number; correct: number } {
    const { tf, init, model, teacher, vars, grads } = this;
    if (init.fault && init.fault.worker === init.replica && init.fault.step === m.step) {
      if (init.fault.kind === 'exit') process.exit(3);
      throw new Error('injected fault');
    }
    if (m.labels.length === 0) {
      grads.fill(0);
      return { loss: 0, correct: 0 };
    }
    loadWeights(tf, model, this.weights);
    this.dropouts.forEach((l, i) => (l.seed = m.dropoutSeeds[i]));
    const [lossT, correctT] = tf.tidy(() => {
      const n = m.labels.length;
      const xb = tf.tensor(this.inputs.subarray(0, n * size(init.sampleShape)), [n, ...init.sampleShape]);
      const { value, grads: g, correct } = shardGradients(tf, model, vars, xb, m.labels, init.numClasses, { teacher, scale: m.scale });
      vars.forEach((v, k) => {
        const gk = g[v.name];
        if (gk) grads.set(valuesOf(tf, gk), this.offsets[k]);
        else grads.fill(0, this.offsets[k], this.offsets[k] + v.size);
      });
      return [value, correct];
    });
    const out = { loss: lossT.dataSync()[0], correct: correctT.dataSync()[0] };
    tf.dispose([lossT, correctT]);
    return out;
  }

  dispose(): void {
    this.model.dispose();
    this.teacher?.model.dispose();
  }
}

type Command = { type: 'init'; init: HelperInit } | HelperStep | { type: 'release' };

/**
 * Serves training calls one after another: `init` (the engine starts with the first), steps, `release`
 * (the thread then waits idle, engine warm, for the next call's `init`).
 */
function serve(): void {
  const post = (m: HelperMessage) => parentPort!.postMessage(m);
  let replica: Replica | undefined;
  let work = Promise.resolve();
  parentPort!.on('message', (c: Command) => {
    // One command at a time, in order (an init's model build is asynchronous).
    work = work.then(async () => {
      try {
        if (c.type === 'init') {
          replica?.dispose();
          replica = undefined;
          const { tf } = await initEngine(c.init.backend as BackendName);
          replica = await Replica.create(tf, c.init);
          post({ type: 'ready', bytes: footprint() });
        } else if (c.type === 'step') {
          if (!replica) throw new Error('a step before the model');
          post({ type: 'grads', step: c.step, ...replica.step(c), bytes: footprint() });
        } else {
          replica?.dispose();
          replica = undefined;
        }
      } catch (e) {
        post({ type: 'error', ...(c.type === 'step' ? { step: c.step } : {}), message: (e as Error).message ?? String(e) });
      }
    });
  });
}

if (parentPort) serve();
