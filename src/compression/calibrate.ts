import type * as tfType from '@tensorflow/tfjs';
import type { ActivationRange } from '../model/meta.js';
import { walkBatchSize } from '../engine/batching.js';
import { modelGraph, sampleBatch, sampleCount, type ModelGraph, type Samples } from './layer-by-layer.js';
import { inferencePlan, type InferencePlan } from '../engine/inference.js';
import { minMax } from './tensor-stats.js';
import { setOwn } from '../util/own.js';

/**
 * Activation calibration: run representative samples through the model's inference plan and
 * compute a quantization range for the model input (`__input__`) and each step's output (keyed by
 * the name of the layer it is the output of: for a fused conv block its activation or batch norm),
 * as stored in ModelMeta.activationRanges. These are the tensors the exporters quantize (each IR
 * tensor is labelled with the last layer fused into it, export/ir.ts). A ZeroPadding2D the plan folds
 * into the conv after it (no step computes its output) gets the statistics of its padded output all the
 * same, from its input's values plus the padding's zeros (an exporter that keeps it as a pad op needs them).
 *
 * Methods:
 *   minmax      observed min / max
 *   percentile  the (100 - p)-th and p-th percentiles (p default 99.99) from a 2048-bin histogram
 *   mse         the clipping range minimizing the int8 (asymmetric) quantization MSE over the
 *               observed distribution, searched over shrinking factors of the min/max range
 *   kl          the clipping range minimizing the KL divergence between the observed distribution and its
 *               quantized form (TensorRT's entropy calibration; two-signed data on |x|, symmetric)
 * Every range is widened to contain 0 (so 0 is exactly representable) and is never empty.
 * The statistics (RangeStat) and range rules are shared with the exporters' per-tensor calibration.
 */

export const CALIBRATION_METHODS = ['minmax', 'percentile', 'mse', 'kl'] as const;
export type CalibrationMethod = (typeof CALIBRATION_METHODS)[number];

export interface CalibrateOptions {
  method?: CalibrationMethod;
  /** For 'percentile'. Default 99.99. */
  percentile?: number;
  /** For 'mse': bits of the simulated quantizer. Default 8. */
  bits?: number;
  /** Default 64, lowered to fit the activation budget of a layer-by-layer walk (engine/batching.ts). */
  batchSize?: number;
  /** Use at most this many samples (the first ones). Default all. */
  maxSamples?: number;
  /** Histogram bins for 'percentile' / 'mse'. Default 2048. */
  bins?: number;
  /** Only these layer names (plus always `__input__`). Default every output of the inference graph. */
  layers?: string[];
  /**
   * Calibrate the tensors of the inference graph (default true): conv + batch norm + ReLU / ReLU6 run
   * fused with the batch norm folded (engine/inference.ts), as every exporter writes them, so a fused
   * block has one range, its last layer's, computed from the values the deployed graph computes. false:
   * every layer's own output, each layer run separately.
   */
  fuse?: boolean;
}

export const INPUT_KEY = '__input__';

/** What calibration keeps per tensor: min / max (pass 1), then a histogram over [min, max] (pass 2). */
export interface RangeStat {
  min: number;
  max: number;
  hist?: Float64Array;
  zeros: number;
  count: number;
}
type Stat = RangeStat;

export function newRangeStat(): RangeStat {
  return { min: Infinity, max: -Infinity, zeros: 0, count: 0 };
}

/** Pass 2: counts `values` into the histogram over [min, max] (exact zeros apart: they quantize exactly). */
export function observeHistogram(s: RangeStat, values: ArrayLike<number>, bins = 2048): void {
  if (!s.hist) s.hist = new Float64Array(bins);
  const hist = s.hist;
  const nb = hist.length;
  const width = (s.max - s.min) / nb;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    s.count++;
    if (v === 0) {
      s.zeros++;
      continue;
    }
    const b = width > 0 ? Math.min(nb - 1, Math.max(0, Math.floor((v - s.min) / width))) : 0;
    hist[b]++;
  }
}

export interface RangeRuleOptions {
  /** For 'percentile'. Default 99.99. */
  percentile?: number;
  /** Bits of the simulated quantizer ('mse', 'kl'). Default 8. */
  bits?: number;
}

/** The range `method` picks from a stat (histogram needed for all but minmax), widened to contain 0. */
export function rangeFromStat(s: RangeStat, method: CalibrationMethod, opts: RangeRuleOptions = {}): ActivationRange {
  let r: ActivationRange;
  if (method === 'minmax' || !s.hist) r = { min: s.min, max: s.max };
  else if (method === 'percentile') r = percentileRange(s, opts.percentile ?? 99.99);
  else if (method === 'mse') r = mseRange(s, opts.bits ?? 8);
  else if (method === 'kl') r = klRange(s, opts.bits ?? 8);
  else throw new Error(`unknown calibration method '${method as string}'`);
  return widenRange(r);
}

export async function calibrateActivations(
  tf: typeof tfType,
  model: tfType.LayersModel,
  samples: Samples,
  opts: CalibrateOptions = {},
): Promise<Record<string, ActivationRange>> {
  const method = opts.method ?? 'minmax';
  const batchSize = walkBatchSize(model, opts.batchSize ?? 64);
  const bins = opts.bins ?? 2048;
  const n = Math.min(sampleCount(samples), opts.maxSamples ?? Infinity);
  if (n <= 0) throw new Error('calibration needs at least one sample');
  const graph = modelGraph(model);
  const plan = inferencePlan(tf, model, { fuse: opts.fuse ?? true });
  try {
    const outputs = new Set(plan.outputLayers);
    const wanted = opts.layers ? new Set(opts.layers) : null;
    const pads = foldedPads(graph, plan, wanted);
    const padNames = new Set([...pads.values()].flat().map((p) => p.layer));
    for (const name of wanted ?? []) {
      if (!outputs.has(name) && !padNames.has(name)) throw new Error(`calibration: layer '${name}' ${graph.steps.some((st) => st.layer.name === name) ? 'is fused into a conv block (its output is not a tensor of the inference graph); calibrate with fuse: false' : 'is not in the model'}`);
    }
    const stats = new Map<string, Stat>();

    // Streaming: one bounded batch at a time through the inference plan, each step's output observed as
    // it is produced and released as the walk goes on, so memory holds one batch's live activations.
    const pass = async (observe: (key: string, t: tfType.Tensor) => void) => {
      for (let start = 0; start < n; start += batchSize) {
        const x = sampleBatch(tf, samples, start, Math.min(n, start + batchSize));
        const walk = plan.walk(x, { onInput: (t) => void observe(INPUT_KEY, t) });
        try {
          for (let r = walk.next(); ; r = walk.next()) {
            if (r.done) {
              r.value.dispose();
              break;
            }
            if (!wanted || wanted.has(r.value.layer) || pads.has(r.value.layer)) observe(r.value.layer, r.value.outputs[0]);
          }
        } finally {
          walk.return(undefined as never);
          x.dispose();
        }
        await Promise.resolve();
      }
    };

    // Pass 1: min / max, one loop over each output (tensor-stats.ts); a layer whose range follows from
    // its input's (derivedRanges) is not reduced, its range is derived after the pass.
    const derived = new Map([...derivedRanges(graph, wanted)].filter(([name, d]) => outputs.has(name) && (d.from === INPUT_KEY || outputs.has(d.from))));
    const heads = softmaxHeads(graph, (k) => k === INPUT_KEY || outputs.has(k), wanted);
    /** Whether the walk's output `key` has a range of its own here (else it is observed for a folded pad only). */
    const own = (key: string) => key === INPUT_KEY || !wanted || wanted.has(key);
    await pass((key, t) => {
      for (const h of heads.get(key) ?? []) {
        let s = stats.get(h.key);
        if (!s) stats.set(h.key, (s = newRangeStat()));
        const logits = tf.tidy(() => (h.bias ? tf.add(tf.matMul(t as tfType.Tensor2D, h.kernel as tfType.Tensor2D), h.bias) : tf.matMul(t as tfType.Tensor2D, h.kernel as tfType.Tensor2D)));
        const [min, max] = minMax(tf, logits);
        logits.dispose();
        if (min < s.min) s.min = min;
        if (max > s.max) s.max = max;
      }
      const folded = pads.get(key) ?? [];
      const mine = own(key) && !derived.has(key);
      if (!mine && folded.length === 0) return;
      const [min, max] = minMax(tf, t);
      const widen = (name: string, lo: number, hi: number) => {
        let s = stats.get(name);
        if (!s) stats.set(name, (s = newRangeStat()));
        if (lo < s.min) s.min = lo;
        if (hi > s.max) s.max = hi;
      };
      if (mine) widen(key, min, max);
      // A folded pad's output: its input's values and, where it pads, zeros.
      for (const p of folded) {
        const zeros = paddingZeros(t.shape, p.pads) > 0;
        widen(p.layer, zeros ? Math.min(min, 0) : min, zeros ? Math.max(max, 0) : max);
      }
    });
    for (const [name, { from, map }] of derived) {
      const r = map(stats.get(from)!);
      stats.set(name, { ...newRangeStat(), min: r.min, max: r.max });
    }
    if (method !== 'minmax') {
      // Pass 2: histograms over [min, max] (exact zeros counted apart: they quantize exactly).
      await pass((key, t) => {
        const values = t.dataSync() as Float32Array;
        if (own(key)) observeHistogram(stats.get(key)!, values, bins);
        for (const p of pads.get(key) ?? []) {
          const s = stats.get(p.layer)!;
          observeHistogram(s, values, bins);
          const zeros = paddingZeros(t.shape, p.pads);
          s.zeros += zeros;
          s.count += zeros;
        }
      });
    }
    const out: Record<string, ActivationRange> = {};
    const logitsOf = new Map([...heads.values()].flat().map((h) => [h.layer, h.key]));
    // Keys in walk order (the input, then each step's, a softmax's logits or a folded pad before it), however obtained.
    const before = new Map([...logitsOf.entries(), ...plan.fused.filter((f) => f.zeroPadding).map((f) => [f.activation ?? f.batchNorm ?? f.conv, f.zeroPadding!] as const)]);
    const order = [INPUT_KEY, ...plan.outputLayers.flatMap((k) => (before.has(k) ? [before.get(k)!, k] : [k]))].filter((k) => stats.has(k));
    for (const key of order) {
      // The logits decide the prediction: minmax whatever the method (as the exporters keep them, export/int8-prep.ts).
      const rule = [...logitsOf.values()].includes(key) ? 'minmax' : method;
      setOwn(out, key, rangeFromStat(stats.get(key)!, rule, { percentile: opts.percentile, bits: opts.bits }));
    }
    return out;
  } finally {
    plan.dispose();
  }
}

/** A ZeroPadding2D the plan folds into a conv: its name and padding [[top, bottom], [left, right]]. */
interface FoldedPad {
  layer: string;
  pads: [[number, number], [number, number]];
}

/**
 * The ZeroPadding2D layers the plan folds into the conv after them (plan.fused; `wanted` ones only), by the key of
 * their input as the walk yields it (a step's output or the model input): a zero-padded tensor's statistics are its
 * input's values plus the padding's zeros.
 */
function foldedPads(graph: ModelGraph, plan: InferencePlan, wanted: Set<string> | null): Map<string, FoldedPad[]> {
  const producer = new Map<number, string>(graph.inputs.map((i) => [i.id, INPUT_KEY]));
  for (const st of graph.steps) if (st.outputIds.length === 1) producer.set(st.outputIds[0], st.layer.name);
  const yielded = new Set([INPUT_KEY, ...plan.outputLayers]);
  const out = new Map<string, FoldedPad[]>();
  for (const f of plan.fused) {
    const st = f.zeroPadding !== undefined && (!wanted || wanted.has(f.zeroPadding)) ? graph.steps.find((s) => s.layer.name === f.zeroPadding) : undefined;
    const from = st ? producer.get(st.inputIds[0]) : undefined;
    if (!st || from === undefined || !yielded.has(from)) continue;
    const pads = st.layer.getConfig().padding as FoldedPad['pads'];
    out.set(from, [...(out.get(from) ?? []), { layer: st.layer.name, pads }]);
  }
  return out;
}

/** The zeros a padding adds to an NHWC tensor of `shape`. */
function paddingZeros(shape: number[], [[t, b], [l, r]]: FoldedPad['pads']): number {
  const [n, h, w, c] = shape;
  return n * c * ((h + t + b) * (w + l + r) - h * w);
}

/**
 * The key of a Dense layer's logits (its matMul + bias, before its activation): the label the export IR
 * gives that tensor (`<layer>#dense`, export/ir.ts), under which the exporters look its range up.
 */
export function logitsKey(layer: string): string {
  return `${layer}#dense`;
}

interface SoftmaxHead {
  layer: string;
  key: string;
  kernel: tfType.Tensor;
  bias?: tfType.Tensor;
}

/**
 * Dense layers with a softmax activation on a rank-2 input that the walk observes, by that input's key: their
 * logits (input x kernel + bias, the tensor a softmax op reads in every exported graph) are computed from it
 * during calibration, so an int8 export needs no calibration pass of its own for them. The weights are the
 * layer's own variables (not to be disposed).
 */
function softmaxHeads(graph: ModelGraph, observed: (key: string) => boolean, wanted: Set<string> | null): Map<string, SoftmaxHead[]> {
  const producer = new Map<number, string>(graph.inputs.map((i) => [i.id, INPUT_KEY]));
  for (const st of graph.steps) if (st.outputIds.length === 1) producer.set(st.outputIds[0], st.layer.name);
  const out = new Map<string, SoftmaxHead[]>();
  for (const st of graph.steps) {
    const layer = st.layer;
    if (layer.getClassName() !== 'Dense' || (layer.getConfig() as { activation?: string }).activation !== 'softmax') continue;
    if (wanted && !wanted.has(layer.name)) continue;
    const from = st.inputIds.length === 1 ? producer.get(st.inputIds[0]) : undefined;
    // inputShapes: one shape, or a list of one per input.
    const shapes = (layer as unknown as { inboundNodes: Array<{ inputShapes: unknown }> }).inboundNodes[0]?.inputShapes;
    const inShape = Array.isArray(shapes) && Array.isArray(shapes[0]) ? (shapes.length === 1 ? shapes[0] : undefined) : shapes;
    if (from === undefined || !observed(from) || !Array.isArray(inShape) || inShape.length !== 2) continue;
    const [kernel, bias] = layer.getWeights();
    out.set(from, [...(out.get(from) ?? []), { layer: layer.name, key: logitsKey(layer.name), kernel, ...(bias ? { bias } : {}) }]);
  }
  return out;
}

/** A layer's output range as a function of its input's: exact for a monotone element-wise layer. */
type RangeMap = (r: ActivationRange) => ActivationRange;

/**
 * Layers whose output range over any set of samples follows exactly from their input's: ReLU (capped or
 * not) and relu / relu6 / linear activations are monotone element-wise, so the min / max of their outputs
 * are the function of the min / max of their inputs (computed in float32 like the kernels), and reducing
 * their (large) outputs on the engine is skipped. By layer name, with the key of the input's range.
 */
export function derivedRanges(graph: ModelGraph, wanted: Set<string> | null): Map<string, { from: string; map: RangeMap }> {
  const producer = new Map<number, string>(graph.inputs.map((i) => [i.id, INPUT_KEY]));
  for (const st of graph.steps) if (st.outputIds.length === 1) producer.set(st.outputIds[0], st.layer.name);
  const out = new Map<string, { from: string; map: RangeMap }>();
  for (const st of graph.steps) {
    if (wanted && !wanted.has(st.layer.name)) continue;
    const from = st.inputIds.length === 1 ? producer.get(st.inputIds[0]) : undefined;
    const map = from !== undefined && st.outputIds.length === 1 ? monotoneMap(st.layer) : undefined;
    // The input's range must be one this calibration has (observed or itself derived).
    if (!map || from === undefined || (wanted && from !== INPUT_KEY && !wanted.has(from))) continue;
    out.set(st.layer.name, { from, map });
  }
  return out;
}

function monotoneMap(layer: tfType.layers.Layer): RangeMap | undefined {
  const cls = layer.getClassName();
  const cfg = layer.getConfig() as { maxValue?: number | null; activation?: string };
  const relu = (cap?: number): RangeMap => {
    const c = cap === undefined ? Infinity : Math.fround(cap);
    const f = (v: number) => Math.min(Math.max(v, 0), c);
    return (r) => ({ min: f(r.min), max: f(r.max) });
  };
  if (cls === 'ReLU') return relu(cfg.maxValue ?? undefined);
  if (cls === 'Activation' && cfg.activation === 'relu') return relu();
  if (cls === 'Activation' && cfg.activation === 'relu6') return relu(6);
  if (cls === 'Activation' && cfg.activation === 'linear') return (r) => ({ ...r });
  return undefined;
}

/** Contains 0, finite, non-empty. */
export function widenRange(r: ActivationRange): ActivationRange {
  let min = Math.min(0, Number.isFinite(r.min) ? r.min : 0);
  let max = Math.max(0, Number.isFinite(r.max) ? r.max : 0);
  if (max === min) max = min + 1e-6;
  return { min, max };
}

function binEdges(s: Stat): { width: number; bins: number } {
  const bins = s.hist!.length;
  return { width: (s.max - s.min) / bins, bins };
}

function percentileRange(s: Stat, p: number): ActivationRange {
  if (!(p > 50 && p <= 100)) throw new Error(`percentile must be in (50, 100], got ${p}`);
  const { width, bins } = binEdges(s);
  if (!(width > 0)) return { min: s.min, max: s.max };
  const total = s.count;
  const tail = ((100 - p) / 100) * total;
  const zeroBin = Math.min(bins - 1, Math.max(0, Math.floor((0 - s.min) / width)));
  const counts = Float64Array.from(s.hist!);
  if (s.min <= 0 && s.max >= 0) counts[zeroBin] += s.zeros;
  // lower: first bin where the cumulative count exceeds the tail; upper symmetric.
  let acc = 0;
  let lo = 0;
  for (; lo < bins; lo++) {
    acc += counts[lo];
    if (acc > tail) break;
  }
  acc = 0;
  let hi = bins - 1;
  for (; hi >= 0; hi--) {
    acc += counts[hi];
    if (acc > tail) break;
  }
  const min = lo === 0 ? s.min : s.min + lo * width;
  const max = hi === bins - 1 ? s.max : s.min + (hi + 1) * width;
  return { min, max: Math.max(min, max) };
}

/** Expected squared error of asymmetric `bits` quantization with range [a, b] over the histogram. */
export function histogramQuantMse(hist: ArrayLike<number>, histMin: number, histMax: number, a: number, b: number, bits: number): number {
  const bins = hist.length;
  const width = (histMax - histMin) / bins;
  const lo = Math.min(a, 0);
  const hi = Math.max(b, 0);
  const scale = (hi - lo) / (2 ** bits - 1);
  const inside = (scale * scale) / 12;
  let err = 0;
  for (let i = 0; i < bins; i++) {
    const c = hist[i];
    if (c === 0) continue;
    const x = histMin + (i + 0.5) * width;
    if (x < lo) err += c * ((lo - x) ** 2 + inside);
    else if (x > hi) err += c * ((x - hi) ** 2 + inside);
    else err += c * inside;
  }
  return err;
}

function mseRange(s: Stat, bits: number): ActivationRange {
  return mseClipRange(s.hist!, s.min, s.max, bits);
}

/**
 * The clipping range [a, b] (a = shrink * min, b = shrink' * max on a 128 x 128 grid) minimizing
 * `histogramQuantMse` for a histogram of non-zero values over [histMin, histMax].
 */
export function mseClipRange(hist: ArrayLike<number>, histMin: number, histMax: number, bits: number): ActivationRange {
  const bins = hist.length;
  const width = (histMax - histMin) / bins;
  const s = { min: histMin, max: histMax };
  if (!(width > 0)) return { min: s.min, max: s.max };
  // Prefix sums over bin centres x_i: count, sum x, sum x^2, so each candidate costs O(log bins).
  const C = new Float64Array(bins + 1);
  const S1 = new Float64Array(bins + 1);
  const S2 = new Float64Array(bins + 1);
  for (let i = 0; i < bins; i++) {
    const x = s.min + (i + 0.5) * width;
    C[i + 1] = C[i] + hist[i];
    S1[i + 1] = S1[i] + hist[i] * x;
    S2[i + 1] = S2[i] + hist[i] * x * x;
  }
  // index of the first bin whose centre is >= v
  const firstAtOrAbove = (v: number) => Math.min(bins, Math.max(0, Math.ceil((v - s.min) / width - 0.5)));
  const total = C[bins];
  const mse = (a: number, b: number): number => {
    const scale = (b - a) / (2 ** bits - 1);
    const ia = firstAtOrAbove(a);
    let ib = firstAtOrAbove(b);
    // bins with centre exactly at b are inside
    while (ib < bins && s.min + (ib + 0.5) * width <= b) ib++;
    const below = a * a * C[ia] - 2 * a * S1[ia] + S2[ia];
    const cAbove = total - C[ib];
    const s1Above = S1[bins] - S1[ib];
    const s2Above = S2[bins] - S2[ib];
    const above = s2Above - 2 * b * s1Above + b * b * cAbove;
    return below + above + (total * scale * scale) / 12;
  };
  const lo0 = Math.min(0, s.min);
  const hi0 = Math.max(0, s.max);
  let best = { min: lo0, max: hi0 };
  let bestErr = Infinity;
  // Independent shrink factors for each side (one side is fixed at 0 for one-signed data).
  const steps = 128;
  const fa = lo0 < 0 ? steps : 1;
  const fb = hi0 > 0 ? steps : 1;
  for (let i = 1; i <= fa; i++) {
    const a = lo0 * (i / fa);
    for (let j = 1; j <= fb; j++) {
      const b = hi0 * (j / fb);
      const e = mse(a, b);
      if (e < bestErr) {
        bestErr = e;
        best = { min: a, max: b };
      }
    }
  }
  return best;
}

/**
 * TensorRT-style entropy calibration: the threshold t whose clipped, `levels`-level quantized histogram Q is
 * closest to the observed P in KL(P || Q) (outliers folded into the last kept bin). One-signed data (ReLU
 * outputs) uses the grid's 2^bits - 1 steps on [0, t]; two-signed data is folded to |x| with half of them
 * and clipped symmetrically to [-t, t] (within [min, max]).
 */
function klRange(s: Stat, bits: number): ActivationRange {
  const hist = s.hist!;
  const bins = hist.length;
  const width = (s.max - s.min) / bins;
  if (!(width > 0)) return { min: s.min, max: s.max };
  const oneSigned = s.min >= 0 || s.max <= 0;
  const sign = s.max <= 0 && s.min < 0 ? -1 : 1;
  const top = Math.max(Math.abs(s.min), Math.abs(s.max));
  // |x| histogram over [0, top] with `bins` bins (bin centres of the signed histogram re-binned).
  const abs = new Float64Array(bins);
  const aw = top / bins;
  for (let i = 0; i < bins; i++) {
    if (!hist[i]) continue;
    const x = Math.abs(s.min + (i + 0.5) * width);
    abs[Math.min(bins - 1, Math.floor(x / aw))] += hist[i];
  }
  const levels = oneSigned ? 2 ** bits - 1 : 2 ** (bits - 1) - 1;
  const t = klThreshold(abs, levels) * aw;
  if (oneSigned) return sign > 0 ? { min: 0, max: t } : { min: -t, max: 0 };
  return { min: Math.max(s.min, -t), max: Math.min(s.max, t) };
}

/** The number of leading bins (>= levels) to keep for the least KL divergence (TensorRT's search). */
export function klThreshold(hist: Float64Array, levels: number): number {
  const bins = hist.length;
  if (bins <= levels) return bins;
  let best = bins;
  let bestKl = Infinity;
  // Candidate thresholds every `step` bins (about 128 of them), as TensorRT's 2048-bin search strides.
  const step = Math.max(1, Math.floor((bins - levels) / 128));
  const suffix = new Float64Array(bins + 1);
  for (let i = bins - 1; i >= 0; i--) suffix[i] = suffix[i + 1] + hist[i];
  const p = new Float64Array(bins);
  const q = new Float64Array(bins);
  for (let i = levels; i <= bins; i = i === bins ? bins + 1 : Math.min(bins, i + step)) {
    // P: the first i bins, the rest folded into bin i-1.
    for (let j = 0; j < i; j++) p[j] = hist[j];
    p[i - 1] += suffix[i];
    // Q: P's first i bins merged into `levels` groups, each spread evenly over its non-empty bins.
    q.fill(0, 0, i);
    const per = i / levels;
    for (let g = 0; g < levels; g++) {
      const a = Math.floor(g * per);
      const b = g === levels - 1 ? i : Math.floor((g + 1) * per);
      let sum = 0;
      let nz = 0;
      for (let j = a; j < b; j++) {
        sum += hist[j];
        if (hist[j] > 0) nz++;
      }
      if (nz) for (let j = a; j < b; j++) if (hist[j] > 0) q[j] = sum / nz;
    }
    let ps = 0;
    let qs = 0;
    for (let j = 0; j < i; j++) (ps += p[j]), (qs += q[j]);
    if (!(ps > 0) || !(qs > 0)) continue;
    let kl = 0;
    for (let j = 0; j < i; j++) {
      if (p[j] <= 0) continue;
      const pj = p[j] / ps;
      const qj = q[j] / qs;
      kl += qj > 0 ? pj * Math.log(pj / qj) : pj * 30; // an empty Q bin where P has mass: a large penalty
    }
    if (kl < bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  return best;
}
