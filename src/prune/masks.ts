import type * as tfType from '@tensorflow/tfjs';
import { setOwn } from '../util/own.js';

/**
 * Pruning masks on Keras-layout kernels (Dense [in,out], Conv2D [h,w,in,out], DepthwiseConv2D
 * [h,w,in,mult], SeparableConv2D pointwise [1,1,in*mult,out]).
 *
 * A mask is a Uint8Array of the kernel's length, 1 = keep, 0 = pruned (row-major, like dataSync()).
 * Counting rule (magnitude, global, structured): the number pruned is `prunedCount(n, s)` =
 * Math.round(s * n) (round-half-up; `Math.round` avoids float artefacts such as 0.29*100 =
 * 28.999…), clamped to [0, n]. Ties are resolved deterministically: among equal scores the LOWER
 * flat index (for global scope: earlier layer, then lower index) is pruned first.
 * NaN scores are treated as +Infinity (never pruned before finite values).
 */

export type Mask = Uint8Array;
export type WeightArray = Float32Array | Float64Array;

export class MaskError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MaskError';
  }
}

function checkSparsity(s: number, what = 'sparsity'): void {
  if (typeof s !== 'number' || !(s >= 0 && s <= 1)) throw new MaskError(`${what} must be in [0, 1] (got ${s})`);
}

/** Number of weights pruned for `n` weights at sparsity `s`: Math.round(s * n), clamped to [0, n]. */
export function prunedCount(n: number, sparsity: number): number {
  checkSparsity(sparsity);
  return Math.min(n, Math.max(0, Math.round(sparsity * n)));
}

const score = (v: number) => (Number.isNaN(v) ? Infinity : Math.abs(v));

/**
 * Mask pruning exactly `k` entries with the smallest `scores` (already non-negative), ties -> lower index first.
 * O(n log n) on a sorted copy, no comparator sort.
 */
function pruneSmallestK(scores: Float64Array, k: number): Mask {
  const n = scores.length;
  const mask = new Uint8Array(n).fill(1);
  if (k <= 0) return mask;
  if (k >= n) return mask.fill(0);
  const sorted = Float64Array.from(scores).sort();
  const thr = sorted[k - 1];
  let below = 0;
  for (let i = 0; i < n; i++) if (scores[i] < thr) {
    mask[i] = 0;
    below++;
  }
  let ties = k - below;
  for (let i = 0; i < n && ties > 0; i++) if (scores[i] === thr) {
    mask[i] = 0;
    ties--;
  }
  return mask;
}

/** Unstructured magnitude pruning: zeroes exactly prunedCount(n, sparsity) weights of smallest |w|. */
export function magnitudeMask(values: WeightArray, sparsity: number): Mask {
  const s = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) s[i] = score(values[i]);
  return pruneSmallestK(s, prunedCount(values.length, sparsity));
}

/** Absolute threshold: prunes |w| < threshold (|w| == threshold is kept). */
export function thresholdMask(values: WeightArray, threshold: number): Mask {
  if (!(threshold >= 0)) throw new MaskError(`threshold must be >= 0 (got ${threshold})`);
  const mask = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) mask[i] = score(values[i]) < threshold ? 0 : 1;
  return mask;
}

/** Distiller's sensitivity threshold: s * std(w), std with Bessel's correction (torch.std default). */
export function sensitivityThreshold(values: WeightArray, sensitivity: number): number {
  if (!(sensitivity >= 0)) throw new MaskError(`sensitivity must be >= 0 (got ${sensitivity})`);
  const n = values.length;
  if (n < 2) return 0;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += values[i];
  mean /= n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (values[i] - mean) ** 2;
  return sensitivity * Math.sqrt(ss / (n - 1));
}

/** Sensitivity pruning (Distiller SensitivityPruner): prunes |w| < s * std(w). */
export function sensitivityMask(values: WeightArray, sensitivity: number): Mask {
  return thresholdMask(values, sensitivityThreshold(values, sensitivity));
}

/** How magnitudes are scaled per layer before one global threshold is applied. */
export type GlobalNormalization = 'none' | 'max' | 'mean' | 'rms' | 'l2';

function layerNorm(values: WeightArray, how: GlobalNormalization): number {
  if (how === 'none') return 1;
  let acc = 0;
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]);
    if (Number.isNaN(a)) continue;
    if (how === 'max') acc = Math.max(acc, a);
    else if (how === 'mean') acc += a;
    else acc += a * a;
  }
  if (how === 'mean') acc /= values.length || 1;
  else if (how === 'rms') acc = Math.sqrt(acc / (values.length || 1));
  else if (how === 'l2') acc = Math.sqrt(acc);
  return acc;
}

/**
 * Global scope: one threshold over all given layers (in iteration order), pruning exactly
 * prunedCount(totalWeights, sparsity) weights. With `normalize`, each layer's |w| is divided by
 * that layer's max / mean|w| / RMS / L2 norm first (a zero-norm layer scores 0 everywhere).
 */
export function globalMagnitudeMasks(
  layers: Map<string, WeightArray> | Array<{ name: string; values: WeightArray }>,
  sparsity: number,
  opts: { normalize?: GlobalNormalization } = {},
): Map<string, Mask> {
  const list = Array.isArray(layers) ? layers : [...layers].map(([name, values]) => ({ name, values }));
  const how = opts.normalize ?? 'none';
  const total = list.reduce((a, l) => a + l.values.length, 0);
  const all = new Float64Array(total);
  let off = 0;
  for (const { values } of list) {
    const nrm = layerNorm(values, how);
    for (let i = 0; i < values.length; i++) all[off + i] = nrm > 0 ? score(values[i]) / nrm : Number.isNaN(values[i]) ? Infinity : 0;
    off += values.length;
  }
  const mask = pruneSmallestK(all, prunedCount(total, sparsity));
  const out = new Map<string, Mask>();
  off = 0;
  for (const { name, values } of list) {
    if (out.has(name)) throw new MaskError(`duplicate layer ${name} in global pruning`);
    out.set(name, mask.slice(off, off + values.length));
    off += values.length;
  }
  return out;
}

/** Size of the "output unit" block at the end of a kernel: last axis, or the last two for depthwise [h,w,in,mult]. */
export function outputUnits(shape: readonly number[], depthwise = false): number {
  if (shape.length < 2) throw new MaskError(`kernel must have rank >= 2 (got shape [${shape}])`);
  return depthwise ? shape[shape.length - 2] * shape[shape.length - 1] : shape[shape.length - 1];
}

export type UnitNorm = 'l1' | 'l2';

/** L1 / L2 norm of every output unit (neuron / filter; for depthwise: output channel c*mult+m). */
export function unitNorms(values: WeightArray, shape: readonly number[], norm: UnitNorm = 'l1', depthwise = false): Float64Array {
  const u = outputUnits(shape, depthwise);
  checkShape(values, shape);
  const acc = new Float64Array(u);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    acc[i % u] += norm === 'l1' ? Math.abs(v) : v * v;
  }
  if (norm === 'l2') for (let j = 0; j < u; j++) acc[j] = Math.sqrt(acc[j]);
  return acc;
}

function checkShape(values: WeightArray, shape: readonly number[]): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== values.length) throw new MaskError(`kernel has ${values.length} values but shape [${shape}] needs ${n}`);
}

export interface StructuredMaskResult {
  /** Kernel mask (whole units zeroed). */
  mask: Mask;
  /** Per-unit keep flags (length = units); usable directly as the bias mask. */
  unitMask: Mask;
  /** Pruned unit indices, ascending (what removeUnits takes). */
  units: number[];
}

/**
 * Structured pruning: ranks whole output units (Dense neurons, conv filters; depthwise output
 * channels with `depthwise: true`) by L1/L2 norm of their kernel weights and prunes the weakest:
 * `count` of them, or prunedCount(units, sparsity) capped at units-1 (one unit always survives).
 * Ties: lower unit index pruned first.
 */
export function structuredMask(
  values: WeightArray,
  shape: readonly number[],
  opts: { sparsity?: number; count?: number; norm?: UnitNorm; depthwise?: boolean },
): StructuredMaskResult {
  const u = outputUnits(shape, opts.depthwise);
  const norms = unitNorms(values, shape, opts.norm ?? 'l1', opts.depthwise);
  let k: number;
  if (opts.count !== undefined) {
    if (!Number.isInteger(opts.count) || opts.count < 0 || opts.count >= u) throw new MaskError(`count must be an integer in [0, ${u - 1}] (got ${opts.count})`);
    k = opts.count;
  } else if (opts.sparsity !== undefined) k = Math.min(u - 1, prunedCount(u, opts.sparsity));
  else throw new MaskError('structuredMask needs sparsity or count');
  return unitsToMasks(pruneSmallestK(norms, k), values.length);
}

/** Kernel mask + unit list from per-unit keep flags (units = the last axis block of the kernel). */
export function unitsToMasks(unitMask: Mask, kernelSize: number): StructuredMaskResult {
  const u = unitMask.length;
  const mask = new Uint8Array(kernelSize);
  for (let i = 0; i < kernelSize; i++) mask[i] = unitMask[i % u];
  const units: number[] = [];
  for (let j = 0; j < u; j++) if (!unitMask[j]) units.push(j);
  return { mask, unitMask, units };
}

/**
 * N:M semi-structured sparsity along the input dimension: for every output (and every spatial tap
 * of a conv), each group of `m` consecutive input weights keeps its `n` largest |w| (ties: lower
 * input index kept). Axis default: rank-2 (Dense axis 0, Conv2D axis 2 = input channels,
 * SeparableConv2D pointwise axis 2; Conv2DTranspose axis 3 by its class). A trailing partial group of r < m inputs keeps min(n, r).
 * Pass className 'DepthwiseConv2D' and it refuses (depthwise kernels have no input dimension to group).
 */
export function nmMask(values: WeightArray, shape: readonly number[], n: number, m: number, opts: { axis?: number; className?: string } = {}): Mask {
  if (!Number.isInteger(m) || m < 1 || !Number.isInteger(n) || n < 0 || n > m) throw new MaskError(`n:m needs integers 0 <= n <= m, m >= 1 (got ${n}:${m})`);
  if (opts.className === 'DepthwiseConv2D') throw new MaskError('n:m sparsity is not defined for DepthwiseConv2D kernels (no input-channel dimension)');
  checkShape(values, shape);
  const rank = shape.length;
  if (rank < 2) throw new MaskError(`kernel must have rank >= 2 (got shape [${shape}])`);
  const axis = opts.axis ?? (opts.className !== undefined && Object.hasOwn(KERNEL_INPUT_AXIS, opts.className) ? KERNEL_INPUT_AXIS[opts.className] : rank - 2);
  if (axis < 0 || axis >= rank) throw new MaskError(`axis ${axis} out of range for shape [${shape}]`);
  const len = shape[axis];
  const stride = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const mask = new Uint8Array(values.length);
  const idx: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < stride; j++) {
      const base = o * len * stride + j;
      for (let g = 0; g < len; g += m) {
        idx.length = 0;
        for (let i = g; i < Math.min(len, g + m); i++) idx.push(base + i * stride);
        // Largest |w| first, ties -> lower index first; keep the first n.
        idx.sort((a, b) => score(values[b]) - score(values[a]) || a - b);
        const keep = Math.min(n, idx.length);
        for (let t = 0; t < keep; t++) mask[idx[t]] = 1;
      }
    }
  }
  return mask;
}

// ---------------------------------------------------------------------------------------------
// Model access

type LayerLike = tfType.layers.Layer;
type LayerVariable = LayerLike['weights'][number];

/** The weight TF-MOT prunes for each prunable class. */
export const KERNEL_WEIGHT: Record<string, string> = {
  Dense: 'kernel',
  Conv1D: 'kernel',
  Conv2D: 'kernel',
  GroupedConv2D: 'kernel',
  Conv3D: 'kernel',
  DepthwiseConv2D: 'depthwise_kernel',
  SeparableConv2D: 'pointwise_kernel',
  Conv2DTranspose: 'kernel',
};

/** Kernels whose input-channel axis is not the second to last (Conv2DTranspose: [kh, kw, out, in]). */
export const KERNEL_INPUT_AXIS: Record<string, number> = { Conv2DTranspose: 3 };

function weightSuffix(v: LayerVariable): string {
  const n = v.originalName;
  return n.slice(n.lastIndexOf('/') + 1);
}

/** The prunable kernel variable of a layer (kernel / depthwise_kernel / pointwise_kernel), if any. */
export function kernelVariable(layer: LayerLike): LayerVariable | undefined {
  const want = KERNEL_WEIGHT[layer.getClassName()];
  if (!want) return undefined;
  return layer.weights.find((w) => weightSuffix(w) === want);
}

/** The bias variable of a layer, if it has one. */
export function biasVariable(layer: LayerLike): LayerVariable | undefined {
  return layer.weights.find((w) => weightSuffix(w) === 'bias');
}

export interface KernelData {
  layer: string;
  className: string;
  values: Float32Array;
  shape: number[];
}

/** Copies a layer's prunable kernel out of the engine. */
export function readKernel(model: tfType.LayersModel, layerName: string): KernelData {
  const layer = model.getLayer(layerName);
  const v = kernelVariable(layer);
  if (!v) throw new MaskError(`layer ${layerName} (${layer.getClassName()}) has no prunable kernel`);
  return { layer: layerName, className: layer.getClassName(), values: v.read().dataSync() as Float32Array, shape: [...v.shape] as number[] };
}

/**
 * First-order Taylor importance |w · dL/dw| of every prunable kernel weight, summed over the
 * calibration batches (gradient of each batch's mean loss). `ys` are one-hot labels or integer
 * class ids. Default loss: categorical cross-entropy on the model's output (probabilities if the
 * last layer's activation is softmax, logits otherwise). Inference mode by default (deterministic).
 */
export function taylorImportance(
  tf: typeof tfType,
  model: tfType.LayersModel,
  xs: tfType.Tensor | tfType.Tensor[],
  ys: tfType.Tensor | tfType.Tensor[],
  opts: { layers?: string[]; loss?: (yTrue: tfType.Tensor, yPred: tfType.Tensor) => tfType.Scalar; training?: boolean } = {},
): Map<string, Float32Array> {
  const xb = Array.isArray(xs) ? xs : [xs];
  const yb = Array.isArray(ys) ? ys : [ys];
  if (xb.length !== yb.length || xb.length === 0) throw new MaskError(`taylorImportance needs as many label batches as input batches (got ${xb.length} and ${yb.length})`);
  const names = opts.layers ?? model.layers.filter((l) => kernelVariable(l)).map((l) => l.name);
  const kv = names.map((n) => {
    const v = kernelVariable(model.getLayer(n));
    if (!v) throw new MaskError(`layer ${n} has no prunable kernel`);
    return v;
  });
  const vars = kv.map((v) => v.read() as tfType.Variable);
  const last = model.layers[model.layers.length - 1];
  const probs = (last.getConfig() as { activation?: string }).activation === 'softmax';
  const numClasses = (model.outputs[0].shape[model.outputs[0].shape.length - 1] ?? 0) as number;
  const lossFn =
    opts.loss ??
    ((yTrue: tfType.Tensor, yPred: tfType.Tensor) =>
      probs ? tf.mean(tf.metrics.categoricalCrossentropy(yTrue, yPred)) as tfType.Scalar : tf.losses.softmaxCrossEntropy(yTrue, yPred) as tfType.Scalar);
  let acc: tfType.Tensor[] = vars.map((v) => tf.zeros(v.shape));
  try {
    for (let b = 0; b < xb.length; b++) {
      const next = tf.tidy(() => {
        let y = yb[b];
        if (y.rank === 1) y = tf.oneHot(tf.cast(y, 'int32'), numClasses);
        const { value, grads } = tf.variableGrads(() => lossFn(y, model.apply(xb[b], { training: opts.training ?? false }) as tfType.Tensor), vars);
        value.dispose();
        return vars.map((v, i) => tf.add(acc[i], tf.abs(tf.mul(v, grads[v.name]))));
      });
      tf.dispose(acc);
      acc = next;
    }
    const out = new Map<string, Float32Array>();
    names.forEach((n, i) => out.set(n, acc[i].dataSync() as Float32Array));
    return out;
  } finally {
    tf.dispose(acc);
  }
}

// ---------------------------------------------------------------------------------------------
// MaskSet

export interface LayerMask {
  kernel: Mask;
  /** Optional bias mask (structured pruning: zero the bias of removed units too). */
  bias?: Mask;
}

type GradList = Array<{ name: string; tensor: tfType.Tensor }>;

/** x * mask, with pruned entries +0 (not -0: -w * 0 = -0, and -0 + 0 = +0). */
function maskMul(tf: typeof tfType, x: tfType.Tensor, mask: tfType.Tensor): tfType.Tensor {
  return tf.add(tf.mul(x, mask), tf.scalar(0, x.dtype));
}

/**
 * Masks per layer name. `applyMasks(tf, model)` multiplies the kernels (and biases with a bias mask)
 * in place so pruned weights are exactly 0; `maskGradients(grads)` zeroes the gradients of pruned
 * weights (call it in transformGradients), so with both, retraining keeps zeros zero.
 * Gradients are matched by variable name (LayerVariable.name, e.g. `dense_1/kernel_3`), resolved by
 * the last `bind`/`applyMasks` call. Call `dispose()` when done (mask tensors are cached).
 */
export class MaskSet {
  private readonly masks = new Map<string, LayerMask>();
  private tf?: typeof tfType;
  private model?: tfType.LayersModel;
  /** variable name -> [layer, 'kernel' | 'bias'] */
  private varMap = new Map<string, [string, 'kernel' | 'bias']>();
  private readonly cache = new Map<string, tfType.Tensor>();

  set(layer: string, kernel: Mask, opts: { bias?: Mask } = {}): this {
    this.masks.set(layer, { kernel, bias: opts.bias });
    this.invalidate(layer);
    if (this.model && this.tf) this.bind(this.tf, this.model);
    return this;
  }

  get(layer: string): LayerMask | undefined {
    return this.masks.get(layer);
  }

  has(layer: string): boolean {
    return this.masks.has(layer);
  }

  delete(layer: string): boolean {
    this.invalidate(layer);
    const r = this.masks.delete(layer);
    if (this.model && this.tf) this.bind(this.tf, this.model);
    return r;
  }

  layers(): string[] {
    return [...this.masks.keys()];
  }

  get size(): number {
    return this.masks.size;
  }

  /** Fraction of pruned entries in each layer's kernel mask. */
  sparsity(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [l, m] of this.masks) {
      let z = 0;
      for (let i = 0; i < m.kernel.length; i++) if (!m.kernel[i]) z++;
      out.set(l, m.kernel.length ? z / m.kernel.length : 0);
    }
    return out;
  }

  /** Masks from the zeros a model's kernels already hold (e.g. to fine-tune a loaded pruned model). */
  static fromZeros(model: tfType.LayersModel, layers?: string[]): MaskSet {
    const ms = new MaskSet();
    for (const l of model.layers) {
      if (layers && !layers.includes(l.name)) continue;
      const v = kernelVariable(l);
      if (!v) continue;
      const data = v.read().dataSync();
      const m = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i++) m[i] = data[i] === 0 ? 0 : 1;
      ms.set(l.name, m);
    }
    return ms;
  }

  /** Resolves variables (and checks mask sizes) against `model`. */
  bind(tf: typeof tfType, model: tfType.LayersModel): this {
    if (this.model !== model) for (const t of this.cache.values()) t.dispose();
    if (this.model !== model) this.cache.clear();
    this.tf = tf;
    this.model = model;
    this.varMap = new Map();
    for (const [name, m] of this.masks) {
      let layer: LayerLike;
      try {
        layer = model.getLayer(name);
      } catch {
        throw new MaskError(`mask for layer ${name}, which the model does not have (layers: ${model.layers.map((l) => l.name).join(', ')})`);
      }
      const k = kernelVariable(layer);
      if (!k) throw new MaskError(`mask for layer ${name} (${layer.getClassName()}), which has no prunable kernel`);
      const size = (k.shape as number[]).reduce((a, b) => a * b, 1);
      if (m.kernel.length !== size) throw new MaskError(`mask for ${name} has ${m.kernel.length} entries, kernel [${k.shape}] has ${size}`);
      this.varMap.set(k.name, [name, 'kernel']);
      if (m.bias) {
        const b = biasVariable(layer);
        if (!b) throw new MaskError(`bias mask for layer ${name}, which has no bias`);
        if (m.bias.length !== b.shape[0]) throw new MaskError(`bias mask for ${name} has ${m.bias.length} entries, bias has ${b.shape[0]}`);
        this.varMap.set(b.name, [name, 'bias']);
      }
    }
    return this;
  }

  /** Multiplies the bound model's masked variables by their masks (pruned weights become exactly 0). */
  applyMasks(tf: typeof tfType, model: tfType.LayersModel): void {
    this.bind(tf, model);
    tf.tidy(() => {
      for (const [name, m] of this.masks) {
        const layer = model.getLayer(name);
        const k = kernelVariable(layer)!;
        k.write(maskMul(tf, k.read(), this.maskTensor(name, 'kernel', k.shape as number[])));
        if (m.bias) {
          const b = biasVariable(layer)!;
          b.write(maskMul(tf, b.read(), this.maskTensor(name, 'bias', b.shape as number[])));
        }
      }
    });
  }

  /**
   * Returns the gradients with pruned entries zeroed. Accepts the NamedTensorMap of
   * tf.variableGrads / optimizer.computeGradients or a `{name, tensor}[]` list; entries for
   * variables without a mask are passed through unchanged. The replaced (unmasked) gradient
   * tensors are DISPOSED; the returned container is new.
   */
  maskGradients(grads: tfType.NamedTensorMap): tfType.NamedTensorMap;
  maskGradients(grads: GradList): GradList;
  maskGradients(grads: tfType.NamedTensorMap | GradList): tfType.NamedTensorMap | GradList {
    const tf = this.tf;
    if (!tf || !this.model) {
      if (this.masks.size === 0) return Array.isArray(grads) ? [...grads] : { ...grads };
      throw new MaskError('MaskSet.maskGradients called before bind(tf, model) / applyMasks(tf, model)');
    }
    const one = (name: string, g: tfType.Tensor): tfType.Tensor => {
      const hit = this.varMap.get(name);
      if (!hit) return g;
      const out = tf.tidy(() => maskMul(tf, g, this.maskTensor(hit[0], hit[1], g.shape)));
      g.dispose();
      return out;
    };
    if (Array.isArray(grads)) return grads.map(({ name, tensor }) => ({ name, tensor: one(name, tensor) }));
    const out: tfType.NamedTensorMap = {};
    for (const [name, g] of Object.entries(grads)) setOwn(out, name, one(name, g));
    return out;
  }

  dispose(): void {
    for (const t of this.cache.values()) t.dispose();
    this.cache.clear();
  }

  private invalidate(layer: string): void {
    for (const part of ['kernel', 'bias']) {
      const key = `${layer}\u0000${part}`;
      this.cache.get(key)?.dispose();
      this.cache.delete(key);
    }
  }

  private maskTensor(layer: string, part: 'kernel' | 'bias', shape: number[]): tfType.Tensor {
    const key = `${layer}\u0000${part}`;
    let t = this.cache.get(key);
    if (!t) {
      const tf = this.tf!;
      const m = this.masks.get(layer)!;
      const src = part === 'kernel' ? m.kernel : m.bias!;
      t = tf.keep(tf.tensor(Float32Array.from(src), shape, 'float32'));
      this.cache.set(key, t);
    }
    return t;
  }
}
