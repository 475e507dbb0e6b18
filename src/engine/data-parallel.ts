/**
 * Data-parallel training: trainModel (src/engine/train.ts) with `workers: W > 1` splits every batch into W
 * contiguous shards. Replica 0 is the calling thread's own engine and model; replicas 1..W-1 are worker
 * threads (./data-parallel-worker.ts), each with its own tfjs engine and a copy of the model built from its
 * topology. A step:
 *   1. replica 0 writes every weight of its model (trainable and not) into one SharedArrayBuffer and posts
 *      each helper its shard (samples, labels, dropout seeds);
 *   2. every replica loads those weights and computes the gradient of (n_r / N) * its shard's mean loss, so
 *      the gradients add up to the full batch's (replica 0 also adds the recipe's extra loss term, once);
 *      helpers write theirs into their own region of a SharedArrayBuffer;
 *   3. replica 0 adds the gradients in replica order 0, 1, .., W-1 (a fixed order: same W, same sums) and
 *      takes the optimizer step, hooks and weight decay as with one replica; the next step broadcasts it.
 * Batch norm: each replica normalises with its own shard's statistics and only replica 0's moving mean and
 * variance are kept (they are broadcast with the weights): PyTorch DDP without SyncBatchNorm, with its
 * default broadcast_buffers. Without batch norm (or dropout) the summed gradient equals the full batch's up
 * to float summation order. Results depend on W (never on the machine's cores), so W is part of the engine
 * identity (src/engine/backend.ts) and with it of every cache key. While the replicas run, V8's
 * background threads run at a lower priority (./background-threads.ts), so they fill the replicas' idle
 * gaps instead of preempting one.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type * as tfType from '@tensorflow/tfjs';
import type { Dataset } from '../data/dataset.js';
import { sampleSize } from '../data/dataset.js';
import { UsageError } from '../recipe/errors.js';
import { lowerBackgroundThreads } from './background-threads.js';

/** Replicas a training run may use (one per core; more only oversubscribes). */
export const MAX_TRAIN_WORKERS = 8;

/**
 * COMPRESS_TRAIN_WORKERS=N (1..8) or `auto` (the machine's cores, at most 8): the replicas every training
 * loop runs. Unset or 1: one replica, the single-thread loop (the default: results then do not depend on
 * the machine, and stages running side by side (`-j`) do not compete for the same cores).
 */
export function trainWorkers(): number {
  const v = process.env.COMPRESS_TRAIN_WORKERS;
  if (v === undefined || v === '') return 1;
  if (v === 'auto') return Math.max(1, Math.min(MAX_TRAIN_WORKERS, availableParallelism()));
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_TRAIN_WORKERS) throw new UsageError(`COMPRESS_TRAIN_WORKERS must be 'auto' or an integer from 1 to ${MAX_TRAIN_WORKERS}, got '${v}'`);
  return n;
}

/** Test hook: make one helper fail at one step, by throwing or by exiting its thread. */
export interface DataParallelFault {
  worker: number;
  step: number;
  kind: 'throw' | 'exit';
}

/** What the init message carries to a helper (data-parallel-worker.ts). */
export interface HelperInit {
  backend: string;
  replica: number;
  topology: unknown;
  /** Shapes of model.weights, in order, to check the rebuilt model against. */
  shapes: number[][];
  /** Indices into model.weights of the trainable ones, in model.trainableWeights order. */
  trainable: number[];
  weights: SharedArrayBuffer;
  grads: SharedArrayBuffer;
  /** The helper's shard of samples for the step at hand. */
  inputs: SharedArrayBuffer;
  sampleShape: number[];
  numClasses: number;
  teacher?: { topology: unknown; weights: Float32Array; temperature: number; alpha: number };
  fault?: DataParallelFault;
}

/** One step's work for a helper. */
export interface HelperStep {
  type: 'step';
  step: number;
  labels: Int32Array;
  scale: number;
  dropoutSeeds: number[];
}

/** What a helper sends: `bytes` is its isolate's JS heap plus external memory (its wasm heap). */
export type HelperMessage =
  | { type: 'ready'; bytes: number }
  | { type: 'grads'; step: number; loss: number; correct: number; bytes: number }
  | { type: 'error'; step?: number; message: string };

/** Why a model cannot be trained data-parallel (the loop then runs one replica), or undefined. */
export function dataParallelObstacle(tf: typeof tfType, model: tfType.LayersModel): string | undefined {
  // tfjs-node runs TensorFlow's own thread pool over every core (and its addon is not meant for worker threads).
  if (tf.getBackend() === 'tensorflow') return 'the tensorflow backend already uses every core';
  const notFloat = model.weights.find((w) => w.dtype !== 'float32');
  if (notFloat) return `weight ${notFloat.name} is ${notFloat.dtype}, not float32`;
  try {
    JSON.stringify(model.toJSON(null, false));
  } catch (e) {
    return `the model cannot be serialised for the other replicas (${(e as Error).message})`;
  }
  return undefined;
}

/** Contiguous shards of `idx`, sizes differing by at most one, the larger first. */
export function shardIndices(idx: Int32Array | Uint32Array, w: number): Array<typeof idx> {
  const base = Math.floor(idx.length / w), extra = idx.length % w;
  const out: Array<typeof idx> = [];
  let at = 0;
  for (let r = 0; r < w; r++) {
    const n = base + (r < extra ? 1 : 0);
    out.push(idx.subarray(at, at + n));
    at += n;
  }
  return out;
}

const HELPER_URL = new URL('./data-parallel-worker.js', import.meta.url);

/** A helper thread: its worker, the backend its engine runs, its footprint. */
interface HelperThread {
  worker: Worker;
  backend: string;
  /** Its isolate's JS heap plus external memory (its wasm heap), as it last reported. */
  bytes: number;
}

/** Every live helper thread of this thread; the idle ones are kept for the next training call, engine warm. */
const threads = new Set<HelperThread>();
const idle: HelperThread[] = [];

/**
 * Memory of this thread's helper replicas, in bytes (their JS heaps and wasm heaps, idle ones included):
 * the stage worker adds it to its own footprint (`memoryMb`, peak memory in the report).
 */
export function dataParallelHelperBytes(): number {
  let sum = 0;
  for (const h of threads) sum += h.bytes;
  return sum;
}

/** An idle helper thread on `backend`, or a new one (its engine starts with its first model). */
function takeThread(backend: string): HelperThread {
  const i = idle.findIndex((h) => h.backend === backend);
  if (i >= 0) {
    const [h] = idle.splice(i, 1);
    h.worker.ref();
    return h;
  }
  // One engine thread per helper: XNNPACK threads on top of replicas would only oversubscribe. Its output
  // goes where this thread's goes (piped output would keep an idle, unref'd thread holding the process).
  const worker = new Worker(HELPER_URL, { env: { ...process.env, COMPRESS_WASM_THREADS: '1' } });
  const h: HelperThread = { worker, backend, bytes: 0 };
  threads.add(h);
  // A training call listens while it holds the thread; these keep an idle one's failure from being uncaught.
  worker.on('error', () => undefined);
  worker.on('exit', () => {
    threads.delete(h);
    const k = idle.indexOf(h);
    if (k >= 0) idle.splice(k, 1);
  });
  return h;
}

interface Pending {
  resolve: (m: { loss: number; correct: number }) => void;
  reject: (e: Error) => void;
}

/** Replicas 1..W-1 of a data-parallel training run, driven from replica 0 (the caller). */
export class DataParallelGroup {
  private readonly helpers: HelperThread[] = [];
  /** Per helper, how to stop listening to it (when it goes back to the idle pool). */
  private readonly detach: Array<() => void> = [];
  private readonly pending = new Map<number, Pending>();
  private readonly weightsView: Float32Array;
  private readonly gradViews: Float32Array[] = [];
  /** Each helper's shard of samples, written here before its step message. */
  private readonly inputViews: Float32Array[] = [];
  private readonly offsets: number[] = [];
  private readonly trainableOffsets: number[] = [];
  private failure: Error | undefined;
  private closed = false;
  /** The step last dispatched, while helpers work on it. */
  private step: number | undefined;
  /** Puts V8's background threads back to their priority (lowered while the replicas run). */
  private releaseCores: () => void = () => undefined;

  private constructor(
    private readonly tf: typeof tfType,
    private readonly model: tfType.LayersModel,
    private readonly data: Dataset,
    readonly workers: number,
    private readonly trainable: number[],
    maxShard: number,
  ) {
    let total = 0;
    for (const w of model.weights) {
      this.offsets.push(total);
      total += w.shape.reduce<number>((a, d) => a * (d ?? 1), 1);
    }
    this.weightsView = new Float32Array(new SharedArrayBuffer(total * 4));
    let t = 0;
    for (const i of trainable) {
      this.trainableOffsets.push(t);
      t += model.weights[i].shape.reduce<number>((a, d) => a * (d ?? 1), 1);
    }
    for (let r = 1; r < workers; r++) {
      this.gradViews.push(new Float32Array(new SharedArrayBuffer(t * 4)));
      this.inputViews.push(new Float32Array(new SharedArrayBuffer(maxShard * sampleSize(data) * 4)));
    }
  }

  /**
   * Starts W-1 helpers (idle ones of an earlier call first) with copies of `model` (and the teacher) and
   * waits until each is ready.
   */
  static async start(
    tf: typeof tfType,
    model: tfType.LayersModel,
    data: Dataset,
    opts: { workers: number; batchSize: number; backend: string; teacher?: { model: tfType.LayersModel; temperature: number; alpha: number }; fault?: DataParallelFault },
  ): Promise<DataParallelGroup> {
    const all = model.weights;
    const trainable = model.trainableWeights.map((tw) => all.indexOf(tw));
    if (trainable.some((i) => i < 0)) throw new Error('data-parallel training: a trainable weight is not among the model weights');
    const g = new DataParallelGroup(tf, model, data, opts.workers, trainable, Math.ceil(opts.batchSize / opts.workers));
    // The replicas keep every core busy: V8's compilation and GC threads run in their gaps, not by
    // preempting one (./background-threads.ts).
    g.releaseCores = lowerBackgroundThreads();
    const topology = model.toJSON(null, false);
    const teacher = opts.teacher ? { topology: opts.teacher.model.toJSON(null, false), weights: concatWeights(opts.teacher.model), temperature: opts.teacher.temperature, alpha: opts.teacher.alpha } : undefined;
    try {
      await Promise.all(
        Array.from({ length: opts.workers - 1 }, (_, k) => {
          const init: HelperInit = {
            backend: opts.backend,
            replica: k + 1,
            topology,
            shapes: all.map((w) => w.shape as number[]),
            trainable,
            weights: g.weightsView.buffer as SharedArrayBuffer,
            grads: g.gradViews[k].buffer as SharedArrayBuffer,
            inputs: g.inputViews[k].buffer as SharedArrayBuffer,
            sampleShape: data.sampleShape,
            numClasses: data.numClasses,
            teacher,
            fault: opts.fault,
          };
          return g.attach(takeThread(opts.backend), init);
        }),
      );
    } catch (e) {
      await g.close();
      throw e;
    }
    return g;
  }

  /** Listens to helper thread `h` as replica init.replica and sends it the model; resolves when it is ready. */
  private attach(h: HelperThread, init: HelperInit): Promise<void> {
    const r = init.replica;
    this.helpers.push(h);
    return new Promise((resolve, reject) => {
      let ready = false;
      const fail = (what: string, detail = '') => {
        const at = this.pending.has(r) ? ` at step ${this.step}` : ready ? ' between steps' : ' while starting';
        const err = new Error(`data-parallel training: replica ${r} of ${this.workers} (a worker thread) ${what}${at}${detail}`);
        this.failure ??= err;
        if (!ready) reject(err);
        const p = this.pending.get(r);
        this.pending.delete(r);
        p?.reject(err);
      };
      const onMessage = (m: HelperMessage) => {
        if (m.type === 'ready') {
          h.bytes = m.bytes;
          ready = true;
          resolve();
        } else if (m.type === 'grads') {
          h.bytes = m.bytes;
          const p = this.pending.get(r);
          this.pending.delete(r);
          p?.resolve(m);
        } else fail('failed', `: ${m.message}`);
      };
      const onError = (e: Error) => fail('failed', `: ${e.message}`);
      const onExit = (code: number) => {
        if (!this.closed) fail(`exited with code ${code}`);
      };
      h.worker.on('message', onMessage);
      h.worker.on('error', onError);
      h.worker.on('exit', onExit);
      this.detach.push(() => {
        h.worker.off('message', onMessage);
        h.worker.off('error', onError);
        h.worker.off('exit', onExit);
      });
      h.worker.postMessage({ type: 'init', init });
    });
  }

  /**
   * Broadcasts replica 0's weights and sends replicas 1..W-1 their shards of `shards` (shards[0] is the
   * caller's); resolves to their losses and correct counts, in replica order, once all have written their
   * gradients. Rejects as soon as one fails.
   */
  dispatch(step: number, shards: ArrayLike<number>[], total: number, dropoutSeeds: (replica: number) => number[]): Promise<Array<{ loss: number; correct: number }>> {
    if (this.failure) return Promise.reject(this.failure);
    this.step = step;
    this.model.weights.forEach((w, i) => this.weightsView.set(valuesOf(this.tf, w.read()), this.offsets[i]));
    const s = sampleSize(this.data);
    return Promise.all(
      this.helpers.map((h, k) => {
        const r = k + 1;
        const idx = shards[r];
        const x = this.inputViews[k];
        const labels = new Int32Array(idx.length);
        for (let i = 0; i < idx.length; i++) {
          x.set(this.data.x.subarray(idx[i] * s, (idx[i] + 1) * s), i * s);
          labels[i] = this.data.y[idx[i]];
        }
        return new Promise<{ loss: number; correct: number }>((resolve, reject) => {
          this.pending.set(r, { resolve, reject });
          const msg: HelperStep = { type: 'step', step, labels, scale: idx.length / total, dropoutSeeds: dropoutSeeds(r) };
          h.worker.postMessage(msg, [labels.buffer]);
        });
      }),
    );
  }

  /** Adds replica 0's gradients and the helpers' (in replica order) into one tensor per trainable weight. */
  sumGradients(local: Record<string, tfType.Tensor>, vars: tfType.Variable[]): Record<string, tfType.Tensor> {
    const out: Record<string, tfType.Tensor> = {};
    vars.forEach((v, k) => {
      const g = local[v.name];
      if (!g) return;
      const off = this.trainableOffsets[k];
      out[v.name] = tensorFilledBy(this.tf, g.shape, (sum) => {
        sum.set(valuesOf(this.tf, g));
        for (const view of this.gradViews) addInto(sum, view, off);
      });
    });
    return out;
  }

  /**
   * Ends the run: helpers that finished every step go back to the idle pool (their model released, their
   * engine kept warm, the thread not keeping the process alive); after a failure, or with a step still in
   * flight, every helper is terminated.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.releaseCores();
    const reuse = !this.failure && this.pending.size === 0;
    for (const p of this.pending.values()) p.reject(new Error('data-parallel training stopped'));
    this.pending.clear();
    this.detach.forEach((off) => off());
    if (reuse) {
      for (const h of this.helpers) {
        h.worker.postMessage({ type: 'release' });
        h.worker.unref();
        idle.push(h);
      }
      return;
    }
    await Promise.all(this.helpers.map((h) => h.worker.terminate()));
  }
}

/**
 * sum[i] += from[at + i]: one module-level loop for every variable and replica, optimised once (~1.5 ms a
 * step for MobileNetV2-0.35's 409K trainable weights, measured; the loop inlined in the per-variable
 * closure took as long once optimised, longer before).
 */
function addInto(sum: Float32Array, from: Float32Array, at: number): void {
  for (let i = 0; i < sum.length; i++) sum[i] += from[at + i];
}

interface HeapBackend {
  makeOutput(shape: number[], dtype: tfType.DataType): tfType.TensorInfo;
  typedArrayFromHeap(t: tfType.TensorInfo): Float32Array;
}

/** The wasm backend's heap access, when that is the backend (copies and garbage avoided), else undefined. */
function heapOf(tf: typeof tfType): HeapBackend | undefined {
  return tf.getBackend() === 'wasm' ? (tf.backend() as unknown as HeapBackend) : undefined;
}

/** `t`'s values, read-only: on the wasm heap a view (valid until the next allocation), else a copy. */
export function valuesOf(tf: typeof tfType, t: tfType.Tensor): Float32Array {
  const heap = heapOf(tf);
  return heap ? heap.typedArrayFromHeap(t) : (t.dataSync() as Float32Array);
}

/** A float32 tensor of `shape` whose values `fill` writes (on the wasm heap in place, without a JS copy). */
function tensorFilledBy(tf: typeof tfType, shape: number[], fill: (out: Float32Array) => void): tfType.Tensor {
  const heap = heapOf(tf);
  if (!heap) {
    const out = new Float32Array(shape.reduce((a, d) => a * d, 1));
    fill(out);
    return tf.tensor(out, shape, 'float32');
  }
  const info = heap.makeOutput(shape, 'float32');
  fill(heap.typedArrayFromHeap(info));
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** Every weight of `model`, concatenated (the teacher's, sent once). */
function concatWeights(model: tfType.LayersModel): Float32Array {
  const parts = model.weights.map((w) => w.read().dataSync() as Float32Array);
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
