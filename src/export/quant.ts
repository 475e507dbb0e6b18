import type * as tfType from '@tensorflow/tfjs';
import type { ModelMeta } from '../model/meta.js';
import { ExportError } from './errors.js';
import { batchWithin } from '../engine/batching.js';
import { shapeSize, transposeOutSize, type Activation, type IrGraph, type IrOp, type WeightOp } from './ir.js';
import { minMax } from '../compression/tensor-stats.js';
import { groupedConv2d } from '../model/custom-layers.js';
import { newRangeStat, observeHistogram, rangeFromStat, type CalibrationMethod, type RangeStat } from '../compression/calibrate.js';

/** Number of output channels of a weight op (the last Keras axis; depthwise: cin * multiplier). */
export function outChannels(op: WeightOp): number {
  if (op.kind === 'depthwise') return op.kernelShape[2] * op.kernelShape[3];
  return op.kernelShape[op.kernelShape.length - 1];
}

/** The axis of the layer's own (Keras-layout) kernel that meta.weightQuant's per-channel scales must run along to be reused. */
const KERAS_CHANNEL_AXIS: Record<WeightOp['kind'], number> = { dense: 1, conv2d: 3, depthwise: 2, conv_transpose: 2 };

export interface QuantizedWeights {
  /** Int8 values in the Keras layout of the op's kernel. */
  q: Int8Array;
  /** One scale per output channel (per-tensor: all equal). */
  scales: Float32Array;
  perChannel: boolean;
  /** Whether the scales came from meta.weightQuant (the grid compress evaluated). */
  fromMeta: boolean;
}

/**
 * Symmetric int8 weights (zero point 0, values in [-qmax, qmax], qmax 127 unless reduced). When meta.weightQuant holds a
 * symmetric linear grid of <= 8 bits for this layer and no BatchNorm was folded into it, its
 * scales are reused, so the integers are exactly the ones compress evaluated.
 */
export function quantizeWeights(op: WeightOp, meta: ModelMeta, perChannel: boolean, qmax = 127): QuantizedWeights {
  const n = outChannels(op);
  const k = op.kernel;
  const wq = meta.weightQuant[op.layer];
  let scales: Float32Array | undefined;
  let fromMeta = false;
  const sameAxis = wq?.method === 'linear' && (wq.axis === null || wq.scales.length === 1 || wq.axis === KERAS_CHANNEL_AXIS[op.kind]);
  if (wq && wq.method === 'linear' && sameAxis && !op.folded && !op.rescaled && (1 << (wq.bits - 1)) - 1 <= qmax && wq.zeroPoints.every((z) => z === 0)) {
    const s = new Float32Array(n);
    if (wq.axis === null || wq.scales.length === 1) s.fill(wq.scales[0]);
    else if (op.kind === 'depthwise') {
      // Meta indexes depthwise scales by input channel (Keras axis 2); output channel = c * mult + m.
      const mult = op.kernelShape[3];
      for (let c = 0; c < n; c++) s[c] = wq.scales[Math.floor(c / mult)] ?? wq.scales[0];
    } else for (let c = 0; c < n; c++) s[c] = wq.scales[c];
    const uniform = s.every((v) => v === s[0]);
    if (s.every((v) => v > 0 && Number.isFinite(v)) && (perChannel || uniform)) {
      scales = s;
      fromMeta = true;
    }
  }
  if (!scales) {
    scales = new Float32Array(n);
    if (perChannel) {
      for (let i = 0; i < k.length; i++) scales[i % n] = Math.max(scales[i % n], Math.abs(k[i]));
    } else {
      let m = 0;
      for (let i = 0; i < k.length; i++) m = Math.max(m, Math.abs(k[i]));
      scales.fill(m);
    }
    for (let c = 0; c < n; c++) scales[c] = scales[c] > 0 ? scales[c] / qmax : 1;
  }
  const q = new Int8Array(k.length);
  for (let i = 0; i < k.length; i++) q[i] = Math.max(-qmax, Math.min(qmax, Math.round(k[i] / scales[i % n])));
  return { q, scales, perChannel: perChannel || !scales.every((v) => v === scales![0]), fromMeta };
}

/**
 * The IR with every conv / depthwise / dense kernel replaced by its dequantized integers (q x scale on a grid of
 * [-qmax, qmax], the integers the exporter writes): the model a file with those weights computes in float.
 */
export function fakeQuantizedIr(ir: IrGraph, meta: ModelMeta, perChannel: boolean, qmax: number | ((op: WeightOp) => number) = 127): IrGraph {
  return {
    ...ir,
    ops: ir.ops.map((op) => {
      if (op.kind !== 'conv2d' && op.kind !== 'depthwise' && op.kind !== 'conv_transpose' && op.kind !== 'dense') return op;
      const qw = quantizeWeights(op, meta, perChannel, typeof qmax === 'number' ? qmax : qmax(op));
      const nc = qw.scales.length;
      const kernel = new Float32Array(qw.q.length);
      for (let i = 0; i < kernel.length; i++) kernel[i] = qw.q[i] * qw.scales[i % nc];
      return { ...op, kernel };
    }),
  };
}

/** Symmetric 4-bit weights: codes in [-7, 7]. */
export const INT4_QMAX = 7;

export interface QParams {
  scale: number;
  zeroPoint: number;
}

/**
 * Asymmetric per-tensor parameters for [min, max] (widened to include 0) on the grid [qmin, qmax]. A tensor that
 * is 0 on every calibration sample (a dead ReLU; calibration widens [0, 0] to [0, 1e-6]) gets the range [0, 1]: 0
 * stays exact on any grid holding it, and a ~4e-9 scale gave the op computing it a requantization ratio (input scale
 * x weight scale / output scale) over 256, which LiteRT's XNNPACK refuses ("failed to prepare").
 */
export function activationParams(min: number, max: number, qmin: number, qmax: number): QParams {
  min = Math.min(min, 0);
  max = Math.max(max, 0);
  if (max - min <= 1e-6) max = min + 1;
  const scale = (max - min) / (qmax - qmin);
  const zeroPoint = Math.max(qmin, Math.min(qmax, Math.round(qmin - min / scale)));
  return { scale, zeroPoint };
}

export function quantizeBias(bias: Float32Array, inputScale: number, weightScales: Float32Array): { q: Int32Array; scales: Float32Array } {
  const scales = new Float32Array(bias.length);
  const q = new Int32Array(bias.length);
  for (let i = 0; i < bias.length; i++) {
    scales[i] = inputScale * weightScales[i];
    q[i] = Math.max(-2147483647, Math.min(2147483647, Math.round(bias[i] / scales[i])));
  }
  return { q, scales };
}

/** Permutes a row-major array of `shape` by `perm` (output dim i = input dim perm[i]). */
export function permute<T extends Float32Array | Int8Array | Uint16Array>(data: T, shape: number[], perm: number[]): T {
  const out = new (data.constructor as new (n: number) => T)(data.length);
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p]);
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i];
  }
  const strideForOut = perm.map((p) => inStrides[p]);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < data.length; o++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += idx[d] * strideForOut[d];
    out[o] = data[src];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < outShape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** How many ops read each IR tensor; the graph output counts once more (it outlives the walk). */
function irReaders(ir: IrGraph): Int32Array {
  const readers = new Int32Array(ir.tensors.length);
  for (const op of ir.ops) for (const i of op.inputs) readers[i]++;
  readers[ir.output]++;
  return readers;
}

/** The kernels and biases of an IR's weight ops as engine tensors, uploaded once for every batch of a walk. */
export interface IrWeights {
  get(op: WeightOp): { kernel: tfType.Tensor; bias: tfType.Tensor };
  dispose(): void;
}

export function irWeights(tf: typeof tfType, ir: IrGraph): IrWeights {
  const held = new Map<IrOp, { kernel: tfType.Tensor; bias: tfType.Tensor }>();
  return {
    get(op) {
      let w = held.get(op);
      // kept: the first get runs inside an op's tidy, and the tensors serve every later batch.
      if (!w) held.set(op, (w = { kernel: tf.keep(tf.tensor(op.kernel, op.kernelShape)), bias: tf.keep(tf.tensor1d(op.bias)) }));
      return w;
    },
    dispose() {
      for (const w of held.values()) tf.dispose([w.kernel, w.bias]);
      held.clear();
    },
  };
}

export interface IrWalkOptions {
  /** Replaces an op's output (e.g. rounds it to its int8 grid); runs inside the op's tidy. */
  after?: (op: IrOp, y: tfType.Tensor) => tfType.Tensor;
  /** Weights shared by several walks (the caller disposes them); default: uploaded for this walk. */
  weights?: IrWeights;
}

/**
 * Runs the IR in float with tf ops on one batch, op by op (the reference for calibration, the simulated
 * int8 error and checking the walk). Yields each op with its output, valid until the walk resumes; a
 * tensor is released after its last reader, so memory holds one batch's live activations, never every
 * op's. Returns the graph output (the caller disposes it). A walk abandoned early must be closed with
 * `return()`. `x` stays the caller's.
 */
export function* irSteps(tf: typeof tfType, ir: IrGraph, x: tfType.Tensor, opts: IrWalkOptions = {}): Generator<{ op: IrOp; y: tfType.Tensor }, tfType.Tensor, void> {
  const own = opts.weights ? undefined : irWeights(tf, ir);
  const weights = opts.weights ?? own!;
  const vals = new Map<number, tfType.Tensor>();
  const readers = irReaders(ir);
  const release = (id: number) => {
    if (--readers[id] > 0 || id === ir.input) return;
    vals.get(id)?.dispose();
    vals.delete(id);
  };
  const act = (t: tfType.Tensor, a: string): tfType.Tensor => (a === 'relu' ? tf.relu(t) : a === 'relu6' ? tf.relu6(t) : t);
  try {
    vals.set(ir.input, x);
    for (const t of ir.tensors) if (t.data) vals.set(t.id, tf.tensor(t.data, t.shape));
    for (const op of ir.ops) {
      const ins = op.inputs.map((i) => vals.get(i) as tfType.Tensor);
      const y = tf.tidy(() => (opts.after ? opts.after(op, runOp(tf, op, ins, act, weights)) : runOp(tf, op, ins, act, weights)));
      vals.set(op.output, y);
      yield { op, y };
      for (const i of op.inputs) release(i);
      if (readers[op.output] === 0) release(op.output);
    }
    const out = vals.get(ir.output) as tfType.Tensor;
    vals.delete(ir.output);
    return out;
  } finally {
    for (const [id, t] of vals) if (id !== ir.input) t.dispose();
    own?.dispose();
  }
}

/** Calls `visit` with each op's output for one batch (valid during the call only); see irSteps. */
export function walkIr(tf: typeof tfType, ir: IrGraph, x: tfType.Tensor, opts: IrWalkOptions, visit: (op: IrOp, y: tfType.Tensor) => void): void {
  const walk = irSteps(tf, ir, x, opts);
  try {
    for (;;) {
      const r = walk.next();
      if (r.done) {
        r.value.dispose();
        return;
      }
      visit(r.value.op, r.value.y);
    }
  } finally {
    closeWalk(walk);
  }
}

/** Ends a walk early (its live tensors released); a finished walk is left as it is. */
export function closeWalk(walk: Generator<unknown, tfType.Tensor, void>): void {
  walk.return(undefined as unknown as tfType.Tensor);
}

/** The IR's output for one batch (caller disposes it); see irSteps. */
export function runIr(tf: typeof tfType, ir: IrGraph, x: tfType.Tensor, opts: IrWalkOptions = {}): tfType.Tensor {
  const walk = irSteps(tf, ir, x, opts);
  for (;;) {
    const r = walk.next();
    if (r.done) return r.value;
  }
}

/**
 * Float32 bytes one sample needs in an IR walk: the most live activations at any op (the tensors still
 * to be read, plus the op's output twice more for a kernel's temporaries: conv, bias add, activation).
 */
export function irBytesPerSample(ir: IrGraph): number {
  const size = ir.tensors.map((t) => (t.data ? 0 : shapeSize(t.shape)));
  const readers = irReaders(ir);
  let live = size[ir.input];
  let peak = live;
  for (const op of ir.ops) {
    peak = Math.max(peak, live + 3 * size[op.output]);
    live += size[op.output];
    for (const i of op.inputs) if (--readers[i] === 0) live -= size[i];
  }
  return peak * 4;
}

/** An IR activation as a fused op's (tf.fused.*: the bias and activation applied in the kernel's output pass). */
const fusedActivation = (a: Activation): 'linear' | 'relu' | 'relu6' => (a === 'none' ? 'linear' : a);

/**
 * One op on engine tensors. Conv / depthwise / dense run as the engine's fused ops, as its inference plan runs them
 * (engine/inference.ts: SIMD 1x1 convs and 3x3 depthwise convs, XNNPACK otherwise): one pass instead of three.
 */
export function runOp(tf: typeof tfType, op: IrOp, ins: tfType.Tensor[], act: (t: tfType.Tensor, a: string) => tfType.Tensor, weights: IrWeights): tfType.Tensor {
  const x = ins[0];
  switch (op.kind) {
    case 'conv2d': {
      const { kernel, bias } = weights.get(op);
      if ((op.groups ?? 1) > 1) {
        const y = groupedConv2d(tf, x as tfType.Tensor4D, kernel as tfType.Tensor4D, op.groups!, { strides: op.strides, padding: op.padding, dilations: op.dilation });
        return act(tf.add(y, bias), op.activation);
      }
      return tf.fused.conv2d({ x: x as tfType.Tensor4D, filter: kernel as tfType.Tensor4D, strides: op.strides, pad: op.padding, dataFormat: 'NHWC', dilations: op.dilation, bias, activation: fusedActivation(op.activation) });
    }
    case 'depthwise': {
      const { kernel, bias } = weights.get(op);
      return tf.fused.depthwiseConv2d({ x: x as tfType.Tensor4D, filter: kernel as tfType.Tensor4D, strides: op.strides, pad: op.padding, dataFormat: 'NHWC', dilations: op.dilation, bias, activation: fusedActivation(op.activation) });
    }
    case 'dense': {
      const { kernel, bias } = weights.get(op);
      return tf.fused.matMul({ a: x as tfType.Tensor2D, b: kernel as tfType.Tensor2D, bias, activation: fusedActivation(op.activation) });
    }
    case 'conv_transpose': {
      // tfjs wants the filter as [kh, kw, out, in] (Keras's layout).
      const [kh, kw, ci, co] = op.kernelShape;
      const k = tf.transpose(tf.tensor4d(op.kernel, op.kernelShape), [0, 1, 3, 2]) as tfType.Tensor4D;
      const [n, H, W] = x.shape;
      const out: [number, number, number, number] = [n, transposeOutSize(H!, kh, op.strides[0], op.padding), transposeOutSize(W!, kw, op.strides[1], op.padding), co];
      if (ci !== x.shape[3]) throw new Error(`conv_transpose ${op.layer}: kernel expects ${ci} channels`);
      const y = tf.conv2dTranspose(x as tfType.Tensor4D, k, out, op.strides, op.padding);
      return act(tf.add(y, tf.tensor1d(op.bias)), op.activation);
    }
    case 'maxpool':
      return tf.maxPool(x as tfType.Tensor4D, op.pool, op.strides, op.padding);
    case 'avgpool':
      return tf.avgPool(x as tfType.Tensor4D, op.pool, op.strides, op.padding);
    case 'gap':
      return tf.mean(x, [1, 2]);
    case 'reshape':
      return tf.reshape(x, [x.shape[0], ...op.shape]);
    case 'add':
      return act(tf.add(ins[0], ins[1]), op.activation);
    case 'sub':
      return act(tf.sub(ins[0], ins[1]), op.activation);
    case 'mul':
      return act(tf.mul(ins[0], ins[1]), op.activation);
    case 'max':
      return act(tf.maximum(ins[0], ins[1]), op.activation);
    case 'min':
      return act(tf.minimum(ins[0], ins[1]), op.activation);
    case 'gmp':
      return tf.max(x, [1, 2]);
    case 'mean_last':
      return tf.mean(x, -1, true);
    case 'rsqrt':
      return tf.rsqrt(x);
    case 'elu':
      return tf.elu(x);
    case 'leaky_relu':
      return tf.leakyRelu(x, op.alpha);
    case 'hard_swish':
      return tf.mul(x, tf.div(tf.relu6(tf.add(x, 3)), 6));
    case 'gelu':
      if (op.approximate) {
        const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
        return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
      }
      return tf.mul(tf.mul(0.5, x), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));
    case 'pad':
      return tf.pad(x, [[0, 0], op.pads[0], op.pads[1], [0, 0]]);
    case 'slice':
      return tf.slice(x, [0, ...op.begin], [-1, ...op.size]);
    case 'transpose':
      return tf.transpose(x, [0, ...op.perm.map((a) => a + 1)]);
    case 'resize':
      return tf.image.resizeNearestNeighbor(x as tfType.Tensor4D, op.size);
    case 'concat':
      return tf.concat(ins, op.axis + 1);
    case 'softmax':
      return tf.softmax(x);
    case 'relu':
      return tf.relu(x);
    case 'relu6':
      return tf.relu6(x);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'tanh':
      return tf.tanh(x);
  }
}

export interface Range {
  min: number;
  max: number;
}

/** How a tensor's range is estimated from calibration samples (compression/calibrate.ts's rules). */
export interface RangeRule {
  method: CalibrationMethod;
  percentile?: number;
}

/**
 * The float range of every IR tensor: meta.activationRanges (by the Keras layer the tensor equals) first,
 * except for tensors `stale` names (their values changed, e.g. by equalization), then the calibration samples
 * run through the IR (the graph as written: BatchNorm folded, activations fused) with `rule` for the rest
 * (minmax for the tensors in `fullRange`).
 */
export function tensorRanges(
  tf: typeof tfType,
  ir: IrGraph,
  meta: ModelMeta,
  target: string,
  calibration?: Float32Array,
  calibrationShape?: number[],
  opts: { rule?: RangeRule; stale?: ReadonlySet<number>; fullRange?: ReadonlySet<number> } = {},
): Range[] {
  const rule = opts.rule ?? { method: 'minmax' };
  const stale = opts.stale ?? new Set<number>();
  const ranges: Array<Range | undefined> = ir.tensors.map((t) => {
    if (t.data) return { min: t.data.reduce((a, v) => Math.min(a, v), Infinity), max: t.data.reduce((a, v) => Math.max(a, v), -Infinity) };
    if (stale.has(t.id)) return undefined;
    const r = meta.activationRanges[t.layer];
    return r && Number.isFinite(r.min) && Number.isFinite(r.max) ? { min: r.min, max: r.max } : undefined;
  });
  const missing = ir.tensors.filter((t, i) => !ranges[i]);
  if (missing.length === 0) return ranges as Range[];
  if (!calibration || calibration.length === 0) {
    throw new ExportError(
      target,
      missing[0].layer,
      `int8 export needs activation ranges for ${missing.map((t) => `'${t.layer}'`).join(', ')}: pass opts.calibration (representative input samples) or calibrate the model so meta.activationRanges has them`,
    );
  }
  checkCalibration(ir, target, calibration, calibrationShape);
  const stats = tensorStats(tf, ir, calibration, new Set(missing.map((t) => t.id)), rule.method !== 'minmax');
  return ranges.map((r, i) => r ?? rangeFromStat(stats.get(i)!, opts.fullRange?.has(i) ? 'minmax' : rule.method, { percentile: rule.percentile }));
}

function checkCalibration(ir: IrGraph, target: string, calibration: Float32Array, calibrationShape?: number[]): void {
  const per = shapeSize(ir.tensors[ir.input].shape);
  if (calibration.length % per !== 0) throw new ExportError(target, undefined, `calibration has ${calibration.length} values, not a multiple of the input size ${per}`);
  if (calibrationShape && shapeSize(calibrationShape) !== calibration.length && shapeSize(calibrationShape) !== per) {
    throw new ExportError(target, undefined, `calibrationShape [${calibrationShape}] does not match ${calibration.length} values`);
  }
}

/**
 * Streams the calibration samples through the IR in bounded batches (irBytesPerSample), handing the input and
 * every op output to `visit` as the walk produces it (valid during the call only).
 */
export function forEachCalibrationBatch(tf: typeof tfType, ir: IrGraph, calibration: Float32Array, visit: (id: number, t: tfType.Tensor) => void): void {
  const sample = ir.tensors[ir.input].shape;
  const per = shapeSize(sample);
  const n = calibration.length / per;
  const batch = batchWithin(irBytesPerSample(ir), 64);
  const weights = irWeights(tf, ir);
  try {
    for (let s = 0; s < n; s += batch) {
      const m = Math.min(batch, n - s);
      const x = tf.tensor(calibration.subarray(s * per, (s + m) * per), [m, ...sample]);
      try {
        visit(ir.input, x);
        walkIr(tf, ir, x, { weights }, (op, y) => visit(op.output, y));
      } finally {
        x.dispose();
      }
    }
  } finally {
    weights.dispose();
  }
}

/** Min / max (and with `histograms`, a second pass's histogram) of the tensors `ids` over the calibration samples. */
export function tensorStats(tf: typeof tfType, ir: IrGraph, calibration: Float32Array, ids: ReadonlySet<number>, histograms: boolean): Map<number, RangeStat> {
  const stats = new Map<number, RangeStat>([...ids].map((id) => [id, newRangeStat()]));
  forEachCalibrationBatch(tf, ir, calibration, (id, t) => {
    const s = stats.get(id);
    if (!s) return;
    // One SIMD pass where the tensor lies (compression/tensor-stats.ts), not a copy out of the engine and a JS loop.
    const [lo, hi] = minMax(tf, t);
    s.min = Math.min(s.min, lo);
    s.max = Math.max(s.max, hi);
  });
  if (histograms) {
    forEachCalibrationBatch(tf, ir, calibration, (id, t) => {
      const s = stats.get(id);
      if (s) observeHistogram(s, t.dataSync() as Float32Array);
    });
  }
  return stats;
}
