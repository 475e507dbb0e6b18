import type * as tfType from '@tensorflow/tfjs';
import { inferencePlan } from './inference.js';
import { SEEDED_DROPOUT_CLASSES } from '../model/custom-layers.js';
import { walkBatchSize } from './batching.js';
import type { Dataset } from '../data/dataset.js';
import { sampleSize } from '../data/dataset.js';
import { createRng, deriveSeed, shuffledIndices } from '../util/rng.js';
import { FusedAdam } from './optimizers.js';
import { withFusedActivations } from './fused-activations.js';
import { leanVariableGrads } from './lean-gradients.js';
import { modelGraph, type ModelGraph } from '../compression/layer-by-layer.js';
import { DataParallelGroup, dataParallelObstacle, shardIndices, type DataParallelFault } from './data-parallel.js';
import type { EarlyStoppingBlock, LrScheduleBlock, OptimizerBlock } from '../stages/common-schema.js';

/**
 * compress's one training loop: every stage that trains (baseline training, retraining, gradual
 * pruning, quantization-aware fine-tuning, distillation) calls trainModel. It is written with
 * tf.variableGrads + optimizer.applyGradients (not model.fit) so that hooks can see and change
 * gradients and weights at every step.
 */

/** An optimizer as the recipe's `optimizer:` block declares it (stages/common-schema.ts), name and rate resolved. */
export type OptimizerSpec = Omit<OptimizerBlock, 'name' | 'learningRate'> & Required<Pick<OptimizerBlock, 'name' | 'learningRate'>>;

/** Learning rate as a function of the (0-based) epoch (`lrSchedule:`). */
export type LrSchedule = LrScheduleBlock;

/** `earlyStopping:`; without validation data the training loss (or accuracy) is monitored. */
export type EarlyStopping = EarlyStoppingBlock;

export interface TrainHooks {
  /** Called before step `step` (0-based count of optimizer steps taken so far). */
  beforeStep?(step: number): void;
  /**
   * Called inside the step's tf.tidy with the gradients keyed by variable name (the names of
   * model.trainableWeights); returns the gradients to apply. Tensors it creates are disposed by the loop.
   */
  transformGradients?(grads: Record<string, tfType.Tensor>, step: number): Record<string, tfType.Tensor>;
  /** Called after step `step` was applied (inside a tf.tidy), e.g. to re-apply pruning masks. */
  afterStep?(step: number): void;
  /** Extra loss term computed inside the gradient tape (e.g. an L1 penalty). */
  extraLoss?(): tfType.Scalar;
  /**
   * Knowledge distillation. Both models output softmax probabilities; logits are their logs.
   * loss = alpha*T^2*KL(softmax(t/T) || softmax(s/T)) + (1-alpha)*CE(labels, s).
   */
  teacher?: Teacher;
}

export interface TrainProgress {
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  step: number;
  loss: number;
  accuracy?: number;
  valLoss?: number;
  valAccuracy?: number;
  phase: 'batch' | 'epoch';
}

export interface TrainOptions {
  epochs?: number;
  /** Stop after this many optimizer steps in total (with epochs, whichever comes first). */
  steps?: number;
  batchSize: number;
  seed: number;
  optimizer: OptimizerSpec;
  lrSchedule?: LrSchedule;
  validation?: Dataset;
  earlyStopping?: EarlyStopping;
  hooks?: TrainHooks;
  onProgress?: (p: TrainProgress) => void;
  signal?: AbortSignal;
  /**
   * Replicas (default 1): W > 1 trains data-parallel, each batch split across W engines in worker threads
   * (src/engine/data-parallel.ts; results depend on W, see there). 1: the single-thread loop.
   */
  workers?: number;
  /** Notes for the user: why `workers` > 1 was asked for and one replica trains. */
  onNote?: (message: string) => void;
  /** Tests only: make a data-parallel helper fail. */
  dataParallelFault?: DataParallelFault;
}

export interface EpochRecord {
  epoch: number;
  /** Mean training loss over the epoch's batches (weighted by batch size). */
  loss: number;
  accuracy: number;
  valLoss?: number;
  valAccuracy?: number;
  lr: number;
}

export interface TrainResult {
  history: EpochRecord[];
  steps: number;
  stoppedEarly: boolean;
  /** Epoch (0-based) with the best monitored value, when early stopping was configured. */
  bestEpoch?: number;
  /** Replicas the batches were split across (1 unless `workers` > 1 and the model allowed it). */
  workers: number;
  /** Why `workers` > 1 was asked for but one replica trained. */
  singleReplicaReason?: string;
}

export interface EvalResult {
  loss: number;
  accuracy: number;
  /** Top-5 accuracy, when there are more than 5 classes. */
  top5?: number;
  /** Fraction of samples whose label is among the `topK` most probable classes, when asked for. */
  topK?: number;
  predictions: Int32Array;
}

const EPS = 1e-7;

/** The learning rate of epoch `epoch` (0-based) out of `totalEpochs` under `schedule`. */
export function learningRateAt(schedule: LrSchedule | undefined, baseLr: number, epoch: number, totalEpochs: number): number {
  if (!schedule || schedule.kind === 'constant') return baseLr;
  if (schedule.kind === 'step') return baseLr * Math.pow(schedule.gamma ?? 0.1, Math.floor(epoch / Math.max(1, schedule.stepSize ?? 1)));
  const min = schedule.minLearningRate ?? 0;
  if (totalEpochs <= 1) return baseLr;
  // Cosine annealing from baseLr at epoch 0 to min at the last epoch.
  return min + ((baseLr - min) * (1 + Math.cos((Math.PI * epoch) / (totalEpochs - 1)))) / 2;
}

/** What the loop needs of an optimizer: tfjs's, or compress's fused Adam (same arithmetic, one pass per variable). */
type StepOptimizer = Pick<tfType.Optimizer, 'applyGradients' | 'dispose'>;

function makeOptimizer(tf: typeof tfType, o: OptimizerSpec): StepOptimizer {
  switch (o.name) {
    case 'sgd':
      return o.momentum ? tf.train.momentum(o.learningRate, o.momentum, o.nesterov ?? false) : tf.train.sgd(o.learningRate);
    case 'adam':
    case 'adamw':
      return new FusedAdam(tf, o.learningRate, o.beta1 ?? 0.9, o.beta2 ?? 0.999);
    default:
      throw new Error(`unknown optimizer ${(o as { name: string }).name}`);
  }
}

function setLearningRate(opt: StepOptimizer, lr: number): void {
  const o = opt as unknown as { setLearningRate?: (lr: number) => void; learningRate: number };
  if (o.learningRate === lr) return;
  if (typeof o.setLearningRate === 'function') o.setLearningRate(lr);
  else o.learningRate = lr;
}

/** A distillation teacher: its softmax outputs mixed into the loss at `temperature`, weight `alpha`. */
export interface Teacher {
  model: tfType.LayersModel;
  temperature: number;
  alpha: number;
}

/**
 * One batch's (or one data-parallel shard's) gradients with respect to `vars`: of `scale` x the loss
 * (cross-entropy of the softmax outputs, mixed with the distillation term when a teacher is given) plus
 * `extraLoss` once, with the loss value and the count of correct predictions. Inside the caller's tidy.
 * The training loop (replica 0) and the data-parallel helper replicas both take their gradients here.
 */
export function shardGradients(
  tf: typeof tfType,
  model: tfType.LayersModel,
  vars: tfType.Variable[],
  xb: tfType.Tensor,
  labels: Int32Array,
  numClasses: number,
  opts: { teacher?: Teacher; scale: number; extraLoss?: () => tfType.Scalar },
): { value: tfType.Scalar; grads: Record<string, tfType.Tensor>; correct: tfType.Tensor } {
  const yi = tf.tensor1d(labels, 'int32');
  const yb = tf.oneHot(yi, numClasses);
  const { teacher } = opts;
  const tProbs = teacher ? (teacher.model.apply(xb, { training: false }) as tfType.Tensor) : undefined;
  let correct: tfType.Tensor | undefined;
  const f = (): tfType.Scalar => {
    const probs = withFusedActivations(model, () => trainingForward(tf, model, xb));
    correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(probs, -1), yi), 'int32')));
    let loss = batchLoss(tf, probs, yb, teacher && tProbs ? { probs: tProbs, temperature: teacher.temperature, alpha: teacher.alpha } : undefined);
    if (opts.scale !== 1) loss = tf.mul(loss, opts.scale);
    if (opts.extraLoss) loss = tf.add(loss, opts.extraLoss());
    return loss;
  };
  const { value, grads } = leanVariableGrads(tf, f, vars);
  return { value, grads, correct: correct! };
}

/**
 * model.apply(x, { training: true }), layer by layer, each layer's output released after its last reader:
 * tfjs-layers' executor keeps every layer's output until the pass ends when training (it frees them only in
 * inference). The gradient tape keeps its own references to what the backward pass reads, so this frees the
 * rest (a batch norm's output that only a fused ReLU reads, a padded copy, a residual branch's sum) while the
 * forward pass goes on. Same layers, same order, same values. Models whose graph modelGraph cannot walk
 * (shared layers, several inputs or outputs) or that carry masks run model.apply.
 */
export function trainingForward(tf: typeof tfType, model: tfType.LayersModel, x: tfType.Tensor): tfType.Tensor {
  const graph = trainingGraph(model);
  if (!graph) return model.apply(x, { training: true }) as tfType.Tensor;
  const values = new Map<number, tfType.Tensor>([[graph.inputs[0].id, x]]);
  const left = new Map(graph.consumers);
  for (const step of graph.steps) {
    const ins = step.inputIds.map((id) => values.get(id)!);
    const out = step.layer.apply(ins.length === 1 ? ins[0] : ins, { training: true }) as tfType.Tensor | tfType.Tensor[];
    (Array.isArray(out) ? out : [out]).forEach((t, k) => values.set(step.outputIds[k], t));
    for (const id of step.inputIds) {
      const n = left.get(id)! - 1;
      left.set(id, n);
      if (n > 0 || id === graph.inputs[0].id) continue;
      const t = values.get(id)!;
      values.delete(id);
      // A layer may hand its input on as its output (the same tensor under two ids).
      if (![...values.values()].includes(t)) t.dispose();
    }
  }
  return values.get(graph.outputIds[0])!;
}

const trainingGraphs = new WeakMap<tfType.LayersModel, ModelGraph | null>();
const MASK_SOURCES = new Set(['Embedding', 'Masking']);
function trainingGraph(model: tfType.LayersModel): ModelGraph | null {
  if (!trainingGraphs.has(model)) {
    let graph: ModelGraph | null = null;
    try {
      graph = modelGraph(model);
    } catch {
      graph = null; // shared layers: model.apply
    }
    // Masks (an Embedding with mask_zero, a Masking layer) travel beside the tensors in tfjs-layers' executor only.
    const masked = model.layers.some((l) => MASK_SOURCES.has(l.getClassName()));
    trainingGraphs.set(model, graph && !masked && graph.inputs.length === 1 && graph.outputIds.length === 1 ? graph : null);
  }
  return trainingGraphs.get(model)!;
}

/** Cross-entropy of the softmax outputs, mixed with the distillation term when a teacher's probabilities are given. */
function batchLoss(tf: typeof tfType, probs: tfType.Tensor, oneHot: tfType.Tensor, teacher?: { probs: tfType.Tensor; temperature: number; alpha: number }): tfType.Scalar {
  let loss = crossEntropy(tf, probs, oneHot);
  if (teacher) {
    const T = teacher.temperature;
    const kd = tf.mul(distillationKl(tf, probs, teacher.probs, T), teacher.alpha * T * T);
    loss = tf.add(kd, tf.mul(loss, 1 - teacher.alpha));
  }
  return loss;
}

/** Sparse categorical cross-entropy of softmax probabilities, mean over the batch. */
function crossEntropy(tf: typeof tfType, probs: tfType.Tensor, oneHot: tfType.Tensor): tfType.Scalar {
  const logp = tf.log(tf.clipByValue(probs, EPS, 1));
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logp), -1)));
}

/** KL(softmax(t/T) || softmax(s/T)) from softmax probabilities t and s, mean over the batch. */
function distillationKl(tf: typeof tfType, student: tfType.Tensor, teacher: tfType.Tensor, T: number): tfType.Scalar {
  const sl = tf.div(tf.log(tf.clipByValue(student, EPS, 1)), T);
  const tl = tf.div(tf.log(tf.clipByValue(teacher, EPS, 1)), T);
  const pt = tf.softmax(tl);
  const kl = tf.sum(tf.mul(pt, tf.sub(tf.logSoftmax(tl), tf.logSoftmax(sl))), -1);
  return tf.mean(kl);
}

interface HeapWriter {
  makeOutput(shape: number[], dtype: 'float32'): tfType.TensorInfo;
  typedArrayFromHeap(t: tfType.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

interface Batcher {
  x: (idx: ArrayLike<number>) => tfType.Tensor;
  labels: (idx: ArrayLike<number>) => Int32Array;
}

function batcher(tf: typeof tfType, d: Dataset): Batcher {
  const s = sampleSize(d);
  return {
    x: (idx) => {
      const shape = [idx.length, ...d.sampleShape];
      // On wasm the samples are copied straight into the tensor's heap memory (one copy, not two).
      const heap = tf.getBackend() === 'wasm' ? (tf.backend() as unknown as HeapWriter) : undefined;
      const info = heap?.makeOutput(shape, 'float32');
      const buf = heap && info ? (heap.typedArrayFromHeap(info) as Float32Array) : new Float32Array(idx.length * s);
      for (let i = 0; i < idx.length; i++) buf.set(d.x.subarray(idx[i] * s, (idx[i] + 1) * s), i * s);
      return info ? tf.engine().makeTensorFromTensorInfo(info) : tf.tensor(buf, shape);
    },
    labels: (idx) => {
      const y = new Int32Array(idx.length);
      for (let i = 0; i < idx.length; i++) y[i] = d.y[idx[i]];
      return y;
    },
  };
}

interface DropoutLike {
  seed?: number;
  getClassName(): string;
  name: string;
}

/**
 * Evaluation metrics accumulated batch by batch from a model's softmax outputs: sparse categorical
 * cross-entropy, accuracy, top-5 (more than 5 classes) and top-k (when asked). evaluateModel feeds it
 * from its own pass; a stage that already walks the model over the samples (the quantize stage's
 * error report) feeds it from that pass instead of evaluating again.
 */
export class EvalAccumulator {
  private lossSum = 0;
  private correct = 0;
  private top5 = 0;
  private inTopK = 0;
  private seen = 0;
  private readonly predictions: Int32Array;
  private readonly withTop5: boolean;

  constructor(
    private readonly tf: typeof tfType,
    private readonly data: Pick<Dataset, 'n' | 'y' | 'numClasses'>,
    private readonly topK?: number,
  ) {
    this.predictions = new Int32Array(data.n);
    this.withTop5 = data.numClasses > 5;
  }

  /** Adds the outputs `probs` [b, classes] of samples start .. start + b - 1. */
  add(probs: tfType.Tensor, start: number): void {
    const { tf, data } = this;
    const b = probs.shape[0]!;
    const labels = data.y.subarray(start, start + b);
    const [loss, pred, in5, inK] = tf.tidy(() => {
      const y = tf.tensor1d(Int32Array.from(labels), 'int32');
      const onehot = tf.oneHot(y, data.numClasses);
      const l = tf.neg(tf.sum(tf.mul(onehot, tf.log(tf.clipByValue(probs, EPS, 1)))));
      const p = tf.argMax(probs, -1);
      // In the top 5 when the label's probability is at least the 5th largest one.
      const t5 = this.withTop5
        ? tf.sum(tf.cast(tf.greaterEqual(tf.sum(tf.mul(onehot, probs), -1), tf.min(tf.topk(probs, 5).values, -1)), 'int32'))
        : tf.scalar(0, 'int32');
      // The label among the k indices of the largest probabilities (indices are distinct: a sum counts hits).
      const k = Math.min(this.topK ?? 0, data.numClasses);
      const tk = k > 0 ? tf.sum(tf.cast(tf.equal(tf.topk(probs, k).indices, tf.reshape(y, [-1, 1])), 'int32')) : tf.scalar(0, 'int32');
      return [l.dataSync()[0], p.dataSync() as Int32Array, t5.dataSync()[0], tk.dataSync()[0]] as const;
    });
    this.lossSum += loss;
    this.top5 += in5;
    this.inTopK += inK;
    this.seen += b;
    for (let i = 0; i < b; i++) {
      this.predictions[start + i] = pred[i];
      if (pred[i] === labels[i]) this.correct++;
    }
  }

  result(): EvalResult {
    if (this.seen !== this.data.n) throw new Error(`evaluation saw ${this.seen} of ${this.data.n} samples`);
    const n = Math.max(1, this.data.n);
    return {
      loss: this.lossSum / n,
      accuracy: this.correct / n,
      ...(this.withTop5 ? { top5: this.top5 / n } : {}),
      ...(this.topK ? { topK: this.inTopK / n } : {}),
      predictions: this.predictions,
    };
  }
}

/** Evaluates `model` on `data`: sparse categorical cross-entropy of its softmax outputs, accuracy, top-5. */
export function evaluateModel(tf: typeof tfType, model: tfType.LayersModel, data: Dataset, requestedBatch = 256, topK?: number): EvalResult {
  // The plan frees each tensor after its last use: the batch is bounded by the widest layer, not every layer's output.
  const batchSize = walkBatchSize(model, requestedBatch);
  const b = batcher(tf, data);
  const acc = new EvalAccumulator(tf, data, topK);
  // Batch norm folded into the convs, activations fused (src/engine/inference.ts).
  const plan = inferencePlan(tf, model);
  try {
    for (let start = 0; start < data.n; start += batchSize) {
      const idx = Array.from({ length: Math.min(batchSize, data.n - start) }, (_, i) => start + i);
      const x = b.x(idx);
      const probs = plan.predict(x);
      x.dispose();
      try {
        acc.add(probs, start);
      } finally {
        probs.dispose();
      }
    }
  } finally {
    plan.dispose();
  }
  return acc.result();
}

/** Trains `model` in place on `train`. See TrainOptions for the knobs and TrainHooks for the extension points. */
export async function trainModel(tf: typeof tfType, model: tfType.LayersModel, train: Dataset, opts: TrainOptions): Promise<TrainResult> {
  if (!(opts.batchSize >= 1)) throw new Error(`batchSize must be >= 1, got ${opts.batchSize}`);
  if (train.n === 0) throw new Error('cannot train on an empty dataset');
  const hooks = opts.hooks ?? {};
  const batchSize = Math.min(opts.batchSize, train.n);
  const batches = Math.ceil(train.n / batchSize);
  const maxSteps = opts.steps ?? Infinity;
  const epochs = opts.epochs ?? (opts.steps ? Math.ceil(opts.steps / batches) : 1);
  const baseLr = opts.optimizer.learningRate;
  const wd = opts.optimizer.weightDecay ?? 0;
  const decoupled = opts.optimizer.name === 'adamw';

  const layerVars = model.trainableWeights;
  const vars = layerVars.map((w) => w.read() as tfType.Variable);
  const isKernel = new Set(layerVars.filter((w) => /kernel$/.test(w.originalName ?? w.name)).map((w) => (w.read() as tfType.Variable).name));
  const dropouts = model.layers.filter((l) => SEEDED_DROPOUT_CLASSES.has(l.getClassName())) as unknown as DropoutLike[];
  const dropoutSeeds = dropouts.map((l) => l.seed);
  const teacher = hooks.teacher;

  const optimizer = makeOptimizer(tf, opts.optimizer);
  const b = batcher(tf, train);
  const history: EpochRecord[] = [];
  let step = 0;
  let stoppedEarly = false;
  const es = opts.earlyStopping;
  const monitorAcc = es?.monitor === 'val_accuracy';
  let best = monitorAcc ? -Infinity : Infinity;
  let bestEpoch: number | undefined;
  let wait = 0;
  let bestWeights: Float32Array[] | undefined;
  let lr = baseLr;
  let group: DataParallelGroup | undefined;
  const wanted = Math.max(1, Math.floor(opts.workers ?? 1));
  const singleReplicaReason = wanted > 1 ? dataParallelObstacle(tf, model) : undefined;
  if (singleReplicaReason) opts.onNote?.(`training on one replica, not ${wanted}: ${singleReplicaReason}`);

  /**
   * This replica's gradients of `scale` times the mean loss over `idx` (plus the extra loss term, once),
   * its loss value and the count of correct predictions; inside the caller's tidy.
   */
  const localGradients = (idx: ArrayLike<number>, labels: Int32Array, scale: number) =>
    shardGradients(tf, model, vars, b.x(idx), labels, train.numClasses, { teacher, scale, extraLoss: hooks.extraLoss });
  /** Weight decay, the gradient hook and the optimizer step on the (summed) gradients; inside a tidy. */
  const applyStep = ({ value, grads, correct }: { value: tfType.Scalar; grads: Record<string, tfType.Tensor>; correct: tfType.Tensor }): [tfType.Tensor, tfType.Tensor] => {
    let g = grads;
    if (wd > 0 && !decoupled) {
      g = { ...g };
      for (const v of vars) if (isKernel.has(v.name) && g[v.name]) g[v.name] = tf.add(g[v.name], tf.mul(v, wd));
    }
    if (hooks.transformGradients) g = hooks.transformGradients(g, step);
    if (wd > 0 && decoupled) for (const v of vars) if (isKernel.has(v.name)) v.assign(tf.mul(v, 1 - lr * wd));
    optimizer.applyGradients(g as tfType.NamedTensorMap);
    return [value, correct];
  };
  /** One step over W replicas: shards out, replica 0's shard here meanwhile, gradients summed in replica order. */
  const dataParallelStep = async (idx: Int32Array | Uint32Array, labels: Int32Array): Promise<[tfType.Tensor, tfType.Tensor]> => {
    const g = group!;
    const shards = shardIndices(idx, g.workers);
    const seeds = (r: number) => dropouts.map((_, i) => deriveSeed(opts.seed, `dropout:${i}:${step}:replica${r}`));
    const remote = g.dispatch(step, shards, idx.length, seeds);
    const local = tf.tidy(() => {
      const r = localGradients(shards[0], labels.subarray(0, shards[0].length), shards[0].length / idx.length);
      return { value: r.value, correct: r.correct, grads: r.grads };
    });
    let others: Array<{ loss: number; correct: number }>;
    try {
      others = await remote;
    } catch (e) {
      tf.dispose([local.value, local.correct, ...Object.values(local.grads)]);
      throw e;
    }
    return tf.tidy(() => {
      const grads = g.sumGradients(local.grads, vars);
      const value = tf.add(local.value, others.reduce((a, o) => a + o.loss, 0)) as tfType.Scalar;
      const correct = tf.add(local.correct, others.reduce((a, o) => a + o.correct, 0));
      tf.dispose([local.value, local.correct, ...Object.values(local.grads)]);
      return applyStep({ value, grads, correct });
    });
  };

  try {
    if (wanted > 1 && !singleReplicaReason) {
      group = await DataParallelGroup.start(tf, model, train, { workers: wanted, batchSize, backend: tf.getBackend(), teacher, fault: opts.dataParallelFault });
    }
    for (let epoch = 0; epoch < epochs && step < maxSteps; epoch++) {
      lr = learningRateAt(opts.lrSchedule, baseLr, epoch, epochs);
      setLearningRate(optimizer, lr);
      const order = shuffledIndices(train.n, createRng(deriveSeed(opts.seed, 'epoch' + epoch)));
      let lossSum = 0, correctSum = 0, seen = 0;
      for (let bi = 0; bi < batches && step < maxSteps; bi++) {
        opts.signal?.throwIfAborted();
        const idx = order.subarray(bi * batchSize, Math.min(train.n, (bi + 1) * batchSize));
        const labels = b.labels(idx);
        dropouts.forEach((l, i) => (l.seed = deriveSeed(opts.seed, `dropout:${i}:${step}`)));
        hooks.beforeStep?.(step);
        const [lossT, correctT] = group ? await dataParallelStep(idx, labels) : tf.tidy(() => applyStep(localGradients(idx, labels, 1)));
        const loss = lossT.dataSync()[0];
        const correct = correctT.dataSync()[0];
        tf.dispose([lossT, correctT]);
        if (hooks.afterStep) tf.tidy(() => hooks.afterStep!(step));
        step++;
        lossSum += loss * idx.length;
        correctSum += correct;
        seen += idx.length;
        opts.onProgress?.({ epoch, epochs, batch: bi + 1, batches, step, loss, accuracy: correct / idx.length, phase: 'batch' });
        if ((bi & 7) === 7) await new Promise((r) => setImmediate(r));
      }
      const rec: EpochRecord = { epoch, loss: lossSum / Math.max(1, seen), accuracy: correctSum / Math.max(1, seen), lr };
      if (opts.validation && opts.validation.n > 0) {
        const ev = evaluateModel(tf, model, opts.validation);
        rec.valLoss = ev.loss;
        rec.valAccuracy = ev.accuracy;
      }
      history.push(rec);
      opts.onProgress?.({ epoch, epochs, batch: batches, batches, step, loss: rec.loss, accuracy: rec.accuracy, valLoss: rec.valLoss, valAccuracy: rec.valAccuracy, phase: 'epoch' });
      await new Promise((r) => setImmediate(r));
      if (es) {
        const value = monitorAcc ? (rec.valAccuracy ?? rec.accuracy) : (rec.valLoss ?? rec.loss);
        const minDelta = es.minDelta ?? 0;
        const improved = monitorAcc ? value > best + minDelta : value < best - minDelta;
        if (improved) {
          best = value;
          bestEpoch = epoch;
          wait = 0;
          if (es.restoreBest) bestWeights = vars.map((v) => Float32Array.from(v.dataSync() as Float32Array));
        } else if (++wait >= es.patience) {
          stoppedEarly = epoch < epochs - 1 && step < maxSteps;
          break;
        }
      }
    }
    if (es?.restoreBest && bestWeights && bestEpoch !== history.length - 1) {
      const w = bestWeights;
      tf.tidy(() => vars.forEach((v, i) => v.assign(tf.tensor(w[i], v.shape, v.dtype))));
    }
  } finally {
    await group?.close();
    optimizer.dispose();
    dropouts.forEach((l, i) => (l.seed = dropoutSeeds[i]));
  }
  return { history, steps: step, stoppedEarly, ...(bestEpoch !== undefined ? { bestEpoch } : {}), workers: group ? wanted : 1, ...(singleReplicaReason ? { singleReplicaReason } : {}) };
}
