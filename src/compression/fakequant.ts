import type * as tfType from '@tensorflow/tfjs';
import type { ActivationRange, WeightQuant } from '../model/meta.js';
import { INPUT_KEY } from './calibrate.js';
import { walkBatchSize } from '../engine/batching.js';
import { modelGraph, sampleBatch, sampleCount, type ModelGraph, type Samples } from './layer-by-layer.js';
import { inferencePlan, type PlanHooks, type PlanStepOutput } from '../engine/inference.js';
import { diffSums, fakeQuant } from './tensor-stats.js';
import { decodeFloat16, encodeFloat16 } from '../util/float16.js';
import { kmeansQuantize, toKmeansWeightQuant, type KmeansInit } from './kmeans.js';
import {
  chooseQParams,
  codeRange,
  defaultChannelAxis,
  float16WeightQuant,
  quantizeLinear,
  toLinearWeightQuant,
  type KernelKind,
} from './linear.js';
import { setOwn } from '../util/own.js';

/**
 * Fake quantization: weights are replaced in place by their dequantized values (so evaluating the
 * model measures what the deployed integer model computes), activations are quantized/dequantized
 * per output of the inference graph while walking it (so full-int8 accuracy can be estimated).
 */

type Layer = tfType.layers.Layer;

export type WeightQuantSpec =
  | { method: 'linear'; bits: number; /** default true */ symmetric?: boolean; /** default true */ perChannel?: boolean; /** default: defaultChannelAxis */ axis?: number }
  | { method: 'kmeans'; bits: number; init?: KmeansInit; maxIter?: number; seed?: number }
  | { method: 'float16' };

export interface ErrorStats {
  /** ||x - ref||_2 / ||ref||_2 (0 when both are 0). */
  relL2: number;
  /** 10 log10(sum ref^2 / sum (x - ref)^2); Infinity when exact. */
  sqnrDb: number;
  maxAbs: number;
}

export interface QuantizedKernel {
  dequantized: Float32Array;
  quant: WeightQuant;
  /** Linear: codes q (Int32Array); k-means: indices; float16: the half bits (Uint16Array). */
  codes: Int32Array | Uint8Array | Uint16Array;
}

export interface AppliedWeightQuant {
  weightQuant: Record<string, WeightQuant>;
  codes: Record<string, Int32Array | Uint8Array | Uint16Array>;
  /** Weight error of each quantized kernel. */
  errors: Record<string, ErrorStats>;
}

export function errorStats(ref: ArrayLike<number>, approx: ArrayLike<number>): ErrorStats {
  if (ref.length !== approx.length) throw new Error(`errorStats: lengths ${ref.length} and ${approx.length} differ`);
  let s = 0;
  let e = 0;
  let maxAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = approx[i] - ref[i];
    s += ref[i] * ref[i];
    e += d * d;
    if (Math.abs(d) > maxAbs) maxAbs = Math.abs(d);
  }
  return { relL2: s > 0 ? Math.sqrt(e / s) : e > 0 ? Infinity : 0, sqnrDb: e > 0 ? 10 * Math.log10(s / e) : Infinity, maxAbs };
}

/** Index in layer.weights of the layer's kernel (`kernel`, `depthwise_kernel`), or -1. */
export function kernelIndex(layer: Layer): number {
  return layer.weights.findIndex((w) => /(^|\/)(depthwise_)?kernel(_\d+)?$/.test(w.originalName ?? w.name) || /kernel$/.test(w.name));
}

export function kernelKind(layer: Layer): KernelKind {
  const cls = layer.getClassName();
  if (cls === 'DepthwiseConv2D') return 'depthwise';
  if (cls === 'Conv2DTranspose') return 'conv_transpose';
  const k = kernelIndex(layer);
  return k >= 0 && layer.weights[k].shape.length === 4 ? 'conv2d' : 'dense';
}

/** Quantizes one kernel according to a spec. */
export function quantizeKernel(values: Float32Array, shape: number[], kind: KernelKind, spec: WeightQuantSpec): QuantizedKernel {
  switch (spec.method) {
    case 'linear': {
      const perChannel = spec.perChannel ?? true;
      const axis = perChannel ? (spec.axis ?? defaultChannelAxis(shape, kind)) : null;
      const r = quantizeLinear(values, shape, { bits: spec.bits, symmetric: spec.symmetric ?? true, axis });
      return { dequantized: r.dequantized, quant: toLinearWeightQuant(r), codes: r.q };
    }
    case 'kmeans': {
      const r = kmeansQuantize(values, { bits: spec.bits, init: spec.init, maxIter: spec.maxIter, seed: spec.seed });
      return { dequantized: r.dequantized, quant: toKmeansWeightQuant(r), codes: r.indices };
    }
    case 'float16': {
      const h = encodeFloat16(values);
      return { dequantized: decodeFloat16(h), quant: float16WeightQuant(), codes: h };
    }
    default:
      throw new Error(`unknown weight quantization method '${(spec as { method: string }).method}'`);
  }
}

/**
 * Quantizes the kernel of each layer named in `policy` and writes the dequantized values back into
 * the model (in place; other weights untouched). Returns the ModelMeta.weightQuant records, the codes
 * and the weight errors.
 */
export function applyWeightQuant(tf: typeof tfType, model: tfType.LayersModel, policy: Record<string, WeightQuantSpec>): AppliedWeightQuant {
  const out: AppliedWeightQuant = { weightQuant: {}, codes: {}, errors: {} };
  for (const [name, spec] of Object.entries(policy)) {
    const layer = model.layers.find((l) => l.name === name);
    if (!layer) throw new Error(`quantize: no layer named ${name}`);
    const k = kernelIndex(layer);
    if (k < 0) throw new Error(`quantize: layer ${name} (${layer.getClassName()}) has no kernel`);
    const weights = layer.getWeights();
    const kernel = weights[k];
    const values = kernel.dataSync() as Float32Array;
    const q = quantizeKernel(values, kernel.shape.slice(), kernelKind(layer), spec);
    setOwn(out.errors, name, errorStats(values, q.dequantized));
    tf.tidy(() => {
      const next = weights.slice();
      next[k] = tf.tensor(q.dequantized, kernel.shape, 'float32');
      layer.setWeights(next);
    });
    setOwn(out.weightQuant, name, q.quant);
    setOwn(out.codes, name, q.codes);
  }
  return out;
}

/** Quantize/dequantize a tensor with an asymmetric `bits` quantizer over `range` (signed codes), in one pass (tensor-stats.ts). */
export function fakeQuantTensor(tf: typeof tfType, x: tfType.Tensor, range: ActivationRange, bits = 8): tfType.Tensor {
  return fakeQuant(tf, x, range, bits);
}

export interface ActivationQuantOptions {
  /** Default 8. */
  bits?: number;
  /** Default 64. */
  batchSize?: number;
  maxSamples?: number;
  /**
   * Mimic converter fusion (default true): no quantization between a Conv/Dense/BatchNorm and a
   * following BatchNormalization / ReLU / Activation that is its only consumer, and none after
   * layers that keep their input's grid (Flatten, Reshape, MaxPooling, Dropout, ...).
   */
  fuse?: boolean;
}

const FUSABLE_PRODUCERS = new Set(['Conv2D', 'GroupedConv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'Conv2DTranspose', 'Dense', 'BatchNormalization']);
const FUSABLE_CONSUMERS = new Set(['BatchNormalization', 'ReLU', 'Activation']);
const PASSTHROUGH = new Set(['Flatten', 'Reshape', 'MaxPooling2D', 'MaxPooling1D', 'GlobalMaxPooling2D', 'GlobalMaxPooling1D', 'Dropout', 'SpatialDropout2D', 'Permute']);

/** Names of layers whose output the simulated converter would quantize. */
export function quantizedOutputLayers(graph: ModelGraph, fuse = true): Set<string> {
  const out = new Set<string>();
  for (const step of graph.steps) {
    const cls = step.layer.getClassName();
    if (fuse) {
      if (PASSTHROUGH.has(cls)) continue;
      if (FUSABLE_PRODUCERS.has(cls) && step.outputIds.length === 1) {
        const consumers = graph.consumerLayers.get(step.outputIds[0]) ?? [];
        const isOutput = graph.outputIds.includes(step.outputIds[0]);
        if (!isOutput && consumers.length === 1 && FUSABLE_CONSUMERS.has(consumers[0].getClassName())) continue;
      }
    }
    out.add(step.layer.name);
  }
  return out;
}

/** Plan hooks fake-quantizing the input and each quantized output (quantizedOutputLayers) that has a range. */
function activationHooks(tf: typeof tfType, graph: ModelGraph, ranges: Record<string, ActivationRange>, bits: number, fuse: boolean): PlanHooks {
  const quantized = quantizedOutputLayers(graph, fuse);
  return {
    onInput: (t) => (ranges[INPUT_KEY] ? fakeQuant(tf, t, ranges[INPUT_KEY], bits) : undefined),
    onOutput: (layer, t) => (quantized.has(layer) && ranges[layer] ? fakeQuant(tf, t, ranges[layer], bits) : undefined),
  };
}

/** Runs `walk` to its end, handing each step to `visit`; returns the model output (caller disposes). */
function drain(walk: Generator<PlanStepOutput, tfType.Tensor, void>, visit?: (s: PlanStepOutput) => void): tfType.Tensor {
  try {
    for (;;) {
      const r = walk.next();
      if (r.done) return r.value;
      visit?.(r.value);
    }
  } finally {
    walk.return(undefined as never);
  }
}

/**
 * Predictions of the model with every layer output (and the input) fake-quantized to `bits` with
 * the calibrated ranges: an estimate of full-integer accuracy. Layers without a range run in float.
 * Returns the model's (first) output for all samples, concatenated; the caller disposes it.
 */
export async function predictWithActivationQuant(
  tf: typeof tfType,
  model: tfType.LayersModel,
  samples: Samples,
  ranges: Record<string, ActivationRange>,
  opts: ActivationQuantOptions = {},
): Promise<tfType.Tensor> {
  const graph = modelGraph(model);
  const hooks = activationHooks(tf, graph, ranges, opts.bits ?? 8, opts.fuse ?? true);
  const batchSize = walkBatchSize(model, opts.batchSize ?? 64);
  const n = Math.min(sampleCount(samples), opts.maxSamples ?? Infinity);
  const parts: tfType.Tensor[] = [];
  const plan = inferencePlan(tf, model);
  try {
    for (let start = 0; start < n; start += batchSize) {
      const x = sampleBatch(tf, samples, start, Math.min(n, start + batchSize));
      parts.push(drain(plan.walk(x, hooks)));
      x.dispose();
      await Promise.resolve();
    }
  } finally {
    plan.dispose();
  }
  const all = tf.concat(parts, 0);
  parts.forEach((p) => p.dispose());
  return all;
}

/** Fraction of samples whose argmax prediction equals the label. */
export function accuracyOf(predictions: tfType.Tensor, labels: ArrayLike<number>): number {
  const pred = predictions.argMax(-1);
  const p = pred.dataSync();
  pred.dispose();
  let ok = 0;
  for (let i = 0; i < p.length; i++) if (p[i] === labels[i]) ok++;
  return p.length > 0 ? ok / p.length : 0;
}

export interface LayerErrorRow {
  /** The step's first layer: a layer, or the conv of a fused conv block (whose kernel `weight` compares; not its folded ZeroPadding2D). */
  layer: string;
  /** For a fused conv block: its layers (zero padding, conv, batch norm, activation); `output` is the last one's. */
  block?: string[];
  /** Kernel error (when both models have a kernel of the same shape for this layer). */
  weight?: ErrorStats;
  /** Error of the step's output on the samples, accumulated over all of them. */
  output: ErrorStats;
}

export interface ErrorReportOptions {
  /** Fake-quantize activations of the candidate with these ranges. */
  activationRanges?: Record<string, ActivationRange>;
  bits?: number;
  fuse?: boolean;
  /** Default 64, lowered to fit the activation budget (engine/batching.ts). */
  batchSize?: number;
  /** Samples walked (the first ones). Default 256. */
  maxSamples?: number;
  /**
   * Per-layer errors accumulate over the first this many of the walked samples (default all of them);
   * the rest are walked for `onOutputs` only, so a large test split gives accuracies over every sample
   * and a per-layer report of bounded cost.
   */
  errorSamples?: number;
  /**
   * Called with each batch's model outputs (reference, candidate) before they are disposed, so a
   * caller derives accuracies from the same pass instead of evaluating both models again.
   */
  onOutputs?: (start: number, reference: tfType.Tensor, candidate: tfType.Tensor) => void;
}

/**
 * Per-layer error of `candidate` (quantized / factorized, optionally with activation fake-quant)
 * against `reference` (float): relative L2 and SQNR of kernels and of the outputs of the inference
 * graph (engine/inference.ts: a conv block with its batch norm and ReLU is one step, batch norm folded,
 * as deployed). Steps are matched by their output layer's name; a factorized `<name>_v` output is
 * compared with `<name>`.
 *
 * Streaming: both plans walk one bounded batch side by side; a reference output is held only until
 * the candidate reaches the matching step, and each comparison is one pass over the two outputs
 * (tensor-stats.ts), so memory is a few steps' activations of one batch.
 */
export async function layerErrorReport(
  tf: typeof tfType,
  reference: tfType.LayersModel,
  candidate: tfType.LayersModel,
  samples: Samples,
  opts: ErrorReportOptions = {},
): Promise<LayerErrorRow[]> {
  const candGraph = modelGraph(candidate);
  const hooks = opts.activationRanges ? activationHooks(tf, candGraph, opts.activationRanges, opts.bits ?? 8, opts.fuse ?? true) : {};
  const refPlan = inferencePlan(tf, reference);
  const candPlan = inferencePlan(tf, candidate);
  try {
    const refNames = new Set(refPlan.outputLayers);
    const candToRef = (name: string): string | null =>
      refNames.has(name) ? name : name.endsWith('_v') && refNames.has(name.slice(0, -2)) ? name.slice(0, -2) : null;
    const compared = new Set(candPlan.outputLayers.map(candToRef).filter((n): n is string => n !== null));
    const acc = new Map<string, { s: number; e: number; max: number }>();
    const blocks = new Map<string, readonly string[]>();
    // Two walks side by side (the reference's outputs held until the candidate reaches the same step).
    const batchSize = Math.min(walkBatchSize(reference, opts.batchSize ?? 64, 2), walkBatchSize(candidate, opts.batchSize ?? 64, 2));
    const n = Math.min(sampleCount(samples), opts.maxSamples ?? 256);
    const errorSamples = Math.min(n, opts.errorSamples ?? n);
    for (let start = 0; start < n; start += batchSize) {
      const end = Math.min(n, start + batchSize);
      const measured = Math.max(0, Math.min(end, errorSamples) - start);
      const x = sampleBatch(tf, samples, start, end);
      const refWalk = refPlan.walk(x);
      const candWalk = candPlan.walk(x, hooks);
      const held = new Map<string, tfType.Tensor>();
      let refOut: tfType.Tensor | undefined;
      /** Advances the reference walk until `name`'s output is held (or the walk ends). */
      const reach = (name: string) => {
        while (!held.has(name) && !refOut) {
          const r = refWalk.next();
          if (r.done) refOut = r.value;
          else {
            blocks.set(r.value.layer, r.value.layers);
            if (compared.has(r.value.layer)) held.set(r.value.layer, r.value.outputs[0].clone());
          }
        }
      };
      try {
        for (;;) {
          const c = candWalk.next();
          if (c.done) {
            reach('\0end');
            try {
              opts.onOutputs?.(start, refOut!, c.value);
            } finally {
              c.value.dispose();
            }
            break;
          }
          const refName = candToRef(c.value.layer);
          if (!refName) continue;
          reach(refName);
          const r = held.get(refName);
          const q = c.value.outputs[0];
          if (r && r.size === q.size && measured > 0) {
            // The batch's first `measured` samples (all of it but at the errorSamples boundary).
            const d = diffSums(tf, r, q, (r.size / (end - start)) * measured);
            const a = acc.get(refName) ?? { s: 0, e: 0, max: 0 };
            a.s += d.refSq;
            a.e += d.errSq;
            if (d.maxAbs > a.max) a.max = d.maxAbs;
            acc.set(refName, a);
          }
          r?.dispose();
          held.delete(refName);
        }
      } finally {
        candWalk.return(undefined as never);
        refWalk.return(undefined as never);
        refOut?.dispose();
        for (const t of held.values()) t.dispose();
        x.dispose();
      }
      await Promise.resolve();
    }
    return errorRows(reference, candidate, refPlan.outputLayers, blocks, acc);
  } finally {
    refPlan.dispose();
    candPlan.dispose();
  }
}

/** The report's rows, in the reference's step order: output errors from the sums, kernel errors compared here. */
function errorRows(
  reference: tfType.LayersModel,
  candidate: tfType.LayersModel,
  order: readonly string[],
  blocks: Map<string, readonly string[]>,
  acc: Map<string, { s: number; e: number; max: number }>,
): LayerErrorRow[] {
  const rows: LayerErrorRow[] = [];
  for (const out of order) {
    const a = acc.get(out);
    if (!a) continue;
    const block = blocks.get(out) ?? [out];
    // A fused conv block's conv (after the ZeroPadding2D folded into it, if any); any other step's first layer.
    const name = block.length > 1 && reference.getLayer(block[0]).getClassName() === 'ZeroPadding2D' ? block[1] : block[0];
    const row: LayerErrorRow = {
      layer: name,
      ...(block.length > 1 ? { block: block.slice() } : {}),
      output: {
        relL2: a.s > 0 ? Math.sqrt(a.e / a.s) : a.e > 0 ? Infinity : 0,
        sqnrDb: a.e > 0 ? 10 * Math.log10(a.s / a.e) : Infinity,
        maxAbs: a.max,
      },
    };
    const rl = reference.getLayer(name);
    const cl = candidate.layers.find((l) => l.name === name);
    const rk = kernelIndex(rl);
    if (cl && rk >= 0) {
      const ck = kernelIndex(cl);
      const rw = rl.weights[rk];
      const cw = ck >= 0 ? cl.weights[ck] : undefined;
      if (cw && cw.shape.join(',') === rw.shape.join(',')) {
        row.weight = errorStats(rw.read().dataSync(), cw.read().dataSync());
      }
    }
    rows.push(row);
  }
  return rows;
}

/** A deep copy of a model (topology and weights), e.g. to keep a float reference before quantizing. */
export async function cloneModel(tf: typeof tfType, model: tfType.LayersModel): Promise<tfType.LayersModel> {
  let saved: tfType.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!saved) throw new Error('cloneModel: model could not be serialised');
  return tf.loadLayersModel(tf.io.fromMemory(saved));
}
