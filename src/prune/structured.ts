import type * as tfType from '@tensorflow/tfjs';
import { KERNEL_INPUT_AXIS, kernelVariable } from './masks.js';
import { setOwn } from '../util/own.js';
import { layerFromConfig, rebuildModel } from '../model/rebuild.js';

/**
 * Physical removal of output units (Dense neurons, Conv2D / SeparableConv2D filters) and of the
 * matching inputs of every consumer, by rebuilding a smaller functional model.
 *
 * Channels are the last axis (channelsLast only). Removal propagates through:
 *   BatchNormalization (its 4 per-channel vectors are sliced), activations (Activation except
 *   softmax, ReLU, LeakyReLU, ELU, ThresholdedReLU), Dropout-like layers, pooling (incl. global),
 *   ZeroPadding2D / Cropping2D / UpSampling2D, Flatten (the matching flattened rows are removed),
 *   DepthwiseConv2D (removing channel c removes its depthwise channel(s) c*mult..c*mult+mult-1),
 *   Concatenate on the last axis, and element-wise merges (Add, Multiply, ...) when every input
 *   lost the same channels;
 * and is absorbed by the next Dense / Conv1D / Conv2D / SeparableConv2D / Conv2DTranspose (input rows / channels removed).
 * Anything else on the path (Reshape, Softmax, LayerNormalization, PReLU, a model output, ...)
 * is refused with a StructuredRemovalError naming the layer.
 *
 * Exactness: the rebuilt model computes exactly what the original computes with the removed
 * units' outputs replaced by 0 at their consumers. So outputs are unchanged when the removed units
 * already produce 0 (kernel column AND bias zero, and a following BatchNorm mapping 0 to 0, i.e.
 * beta - gamma*mean/sqrt(var+eps) = 0; true for freshly initialised BN). Structured masks should
 * therefore zero the bias too (MaskSet.set(layer, mask, { bias: unitMask })).
 */

export class StructuredRemovalError extends Error {
  constructor(
    message: string,
    readonly layer: string,
    /** The layers whose removal reached the refusing layer (when one did). */
    readonly sources: string[] = [layer],
  ) {
    super(message);
    this.name = 'StructuredRemovalError';
  }
}

export type RemovalSpec = Record<string, readonly number[]> | Map<string, readonly number[]>;

export interface RemovalResult {
  model: tfType.LayersModel;
  /** Removed unit indices per layer (sorted, deduplicated). */
  removed: Record<string, number[]>;
  paramsBefore: number;
  paramsAfter: number;
}

/** Kept channel indices of a layer output's last axis (null state = unchanged). */
interface Keep {
  size: number; // original channel count
  idx: number[]; // kept original indices, ascending
  sources: string[]; // the layers whose removal caused it
}

export const PASS_THROUGH = new Set([
  'ReLU', 'LeakyReLU', 'ELU', 'ThresholdedReLU', 'Dropout', 'SpatialDropout1D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout',
  'MaxPooling1D', 'MaxPooling2D', 'MaxPooling3D', 'AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D',
  'GlobalAveragePooling1D', 'GlobalAveragePooling2D', 'GlobalMaxPooling1D', 'GlobalMaxPooling2D',
  'ZeroPadding2D', 'Cropping2D', 'UpSampling2D', 'Activation',
]);
export const ELEMENTWISE = new Set(['Add', 'Multiply', 'Average', 'Maximum', 'Minimum', 'Subtract']);
export const REMOVABLE = new Set(['Dense', 'Conv1D', 'Conv2D', 'SeparableConv2D']);
export const CONSUMERS = new Set(['Dense', 'Conv1D', 'Conv2D', 'SeparableConv2D', 'DepthwiseConv2D', 'Conv2DTranspose']);

type Layer = tfType.layers.Layer;
type Cfg = Record<string, unknown>;

function suffix(originalName: string): string {
  return originalName.slice(originalName.lastIndexOf('/') + 1);
}

/** Copies `data` (row-major, `shape`) keeping only `idx` along `axis`. */
export function sliceAxis(data: Float32Array, shape: readonly number[], axis: number, idx: readonly number[]): { data: Float32Array; shape: number[] } {
  const len = shape[axis];
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const out = new Float32Array(outer * idx.length * inner);
  let o = 0;
  for (let a = 0; a < outer; a++) {
    for (const i of idx) {
      const start = (a * len + i) * inner;
      out.set(data.subarray(start, start + inner), o);
      o += inner;
    }
  }
  const ns = [...shape];
  ns[axis] = idx.length;
  return { data: out, shape: ns };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function sameKeep(a: Keep | null, b: Keep | null): boolean {
  if (a === null || b === null) return a === b;
  return a.size === b.size && a.idx.length === b.idx.length && a.idx.every((v, i) => v === b.idx[i]);
}

function outShape(layer: Layer): number[] {
  const s = layer.outputShape;
  if (Array.isArray(s[0])) throw new StructuredRemovalError(`layer ${layer.name} has several outputs, which structured removal does not handle`, layer.name);
  return s as number[];
}

function channelsLast(layer: Layer, cfg: Cfg): void {
  if (cfg.dataFormat !== undefined && cfg.dataFormat !== 'channelsLast') {
    throw new StructuredRemovalError(`layer ${layer.name} (${layer.getClassName()}) uses dataFormat ${String(cfg.dataFormat)}; structured removal needs channelsLast`, layer.name);
  }
}

/** Total number of weight scalars in a model. */
export function countParams(model: tfType.LayersModel): number {
  return model.weights.reduce((a, w) => a + (w.shape as number[]).reduce((x, y) => x * y, 1), 0);
}

/** Units whose kernel column is entirely zero (candidates for removeUnits), per removable layer. */
export function zeroUnits(model: tfType.LayersModel, layers?: string[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const l of model.layers) {
    if (!REMOVABLE.has(l.getClassName()) || (layers && !layers.includes(l.name))) continue;
    const v = kernelVariable(l);
    if (!v) continue;
    const data = v.read().dataSync();
    const u = v.shape[v.shape.length - 1] as number;
    const nz = new Uint8Array(u);
    for (let i = 0; i < data.length; i++) if (data[i] !== 0) nz[i % u] = 1;
    const dead = range(u).filter((j) => !nz[j]);
    if (dead.length) setOwn(out, l.name, dead);
  }
  return out;
}

/**
 * Rebuilds `model` without the given output units. `remove` maps a Dense / Conv1D / Conv2D /
 * SeparableConv2D layer name to the unit (neuron / filter) indices to drop. Throws
 * StructuredRemovalError (naming the layer) when the removal is not supported or would change the
 * model's output shape. The original model is left untouched.
 */
/**
 * The selected layers whose units cannot be removed on their own, found before any pruning by
 * removing a different unit of each (so layers whose outputs meet in an Add, as in every residual
 * network, lose different channels as pruning would make them): each refusal names the layers
 * that reached it, which are set aside and the rest tried again.
 */
export function removalBlockers(tf: typeof tfType, model: tfType.LayersModel, names: readonly string[]): Array<{ layers: string[]; why: string }> {
  const blocked: Array<{ layers: string[]; why: string }> = [];
  let left = names.filter((n) => outShape(model.getLayer(n)).at(-1)! > 1);
  for (let round = 0; round < names.length && left.length; round++) {
    try {
      removeUnits(tf, model, Object.fromEntries(left.map((n, i) => [n, [i % outShape(model.getLayer(n)).at(-1)!]]))).model.dispose();
      break;
    } catch (e) {
      if (!(e instanceof StructuredRemovalError)) throw e;
      const layers = e.sources.filter((n) => left.includes(n));
      if (!layers.length) break;
      blocked.push({ layers, why: e.message });
      left = left.filter((n) => !layers.includes(n));
    }
  }
  return blocked;
}

export function removeUnits(tf: typeof tfType, model: tfType.LayersModel, remove: RemovalSpec, opts: { name?: string } = {}): RemovalResult {
  const req = new Map<string, number[]>();
  for (const [name, units] of remove instanceof Map ? remove : Object.entries(remove)) {
    const u = [...new Set(units)].sort((a, b) => a - b);
    if (u.length) req.set(name, u);
  }
  const layerNames = new Set(model.layers.map((l) => l.name));
  for (const [name, units] of req) {
    if (!layerNames.has(name)) throw new StructuredRemovalError(`structured removal: no layer named ${name} (layers: ${model.layers.map((l) => l.name).join(', ')})`, name);
    const layer = model.getLayer(name);
    const cls = layer.getClassName();
    if (cls === 'DepthwiseConv2D') throw new StructuredRemovalError(`cannot remove channels of ${name} (DepthwiseConv2D) directly: remove the filters of the layer producing its input instead`, name);
    if (!REMOVABLE.has(cls)) throw new StructuredRemovalError(`cannot remove units of ${name} (${cls}); removable classes: ${[...REMOVABLE].join(', ')}`, name);
    const n = outShape(layer).at(-1)!;
    for (const j of units) if (!Number.isInteger(j) || j < 0 || j >= n) throw new StructuredRemovalError(`unit index ${j} out of range for ${name} (${n} units)`, name);
    if (units.length >= n) throw new StructuredRemovalError(`cannot remove all ${n} units of ${name}`, name);
  }

  for (const l of model.layers) {
    if (l.inboundNodes.length > 1) throw new StructuredRemovalError(`layer ${l.name} is shared (called ${l.inboundNodes.length} times); structured removal handles single-use layers only`, l.name);
    const cls = l.getClassName();
    if (cls === 'Sequential' || cls === 'Model' || cls === 'Functional') throw new StructuredRemovalError(`nested model ${l.name} is not supported by structured removal`, l.name);
  }

  // ---- 1. propagate kept-channel sets and plan every layer's new config and weights ----
  const keepOf = new Map<string, Keep | null>();
  interface Plan {
    layer: Layer;
    cfg: Cfg;
    weights: Array<{ data: Float32Array; shape: number[] }> | null; // null = copy unchanged
  }
  const plans: Plan[] = [];
  const inbound = (l: Layer): Layer[] => (l.inboundNodes[0]?.inboundLayers ?? []) as Layer[];
  const weightsOf = (l: Layer) =>
    l.weights.map((w) => ({ kind: suffix(w.originalName), data: w.read().dataSync() as Float32Array, shape: [...w.shape] as number[] }));

  for (const layer of model.layers) {
    const cls = layer.getClassName();
    const cfg = { ...(layer.getConfig() as Cfg) };
    const ins = inbound(layer);
    const inKeeps = ins.map((l) => keepOf.get(l.name) ?? null);
    const inKeep = inKeeps.find((k) => k !== null) ?? null;
    const units = req.get(layer.name);
    const refuse = (why: string): never => {
      const src = inKeeps.filter((k): k is Keep => k !== null).flatMap((k) => k.sources);
      throw new StructuredRemovalError(
        `structured removal of ${[...new Set(src)].join(', ')} reaches layer ${layer.name} (${cls}): ${why}`,
        layer.name,
        [...new Set(src)],
      );
    };
    let out: Keep | null = null;
    let weights: Plan['weights'] = null;

    if (cls === 'InputLayer') {
      // nothing
    } else if (CONSUMERS.has(cls) || units) {
      if (ins.length !== 1) refuse('expected one input');
      channelsLast(layer, cfg);
      const w = weightsOf(layer);
      const inIdx = inKeep?.idx;
      const outSize = outShape(layer).at(-1)!;
      let outIdx: number[] | undefined;
      if (units) {
        const drop = new Set(units);
        outIdx = range(outSize).filter((j) => !drop.has(j));
        if (cls === 'Dense' || cls === 'SeparableConv2D' || /^Conv/.test(cls)) {
          if (cfg.activation === 'softmax') throw new StructuredRemovalError(`cannot remove units of ${layer.name}: its softmax activation normalises over all units`, layer.name);
        }
      }
      const k0 = w.find((x) => x.kind === 'kernel' || x.kind === 'depthwise_kernel')!;
      // The kernel's input-channel axis: second to last, except Conv2DTranspose's [kh, kw, out, in].
      const inAxis = Object.hasOwn(KERNEL_INPUT_AXIS, cls) ? KERNEL_INPUT_AXIS[cls] : k0.shape.length - 2;
      if (inKeep && inKeep.size !== k0.shape[inAxis]) {
        refuse(`input channel bookkeeping mismatch (${inKeep.size} channels expected)`);
      }
      if (cls === 'DepthwiseConv2D') {
        const mult = (cfg.depthMultiplier as number) ?? 1;
        if (inKeep) {
          const chIdx = inKeep.idx.flatMap((c) => range(mult).map((m) => c * mult + m));
          weights = w.map((x) => (x.kind === 'depthwise_kernel' ? sliceAxis(x.data, x.shape, 2, inKeep.idx) : sliceAxis(x.data, x.shape, 0, chIdx)));
          out = { size: inKeep.size * mult, idx: chIdx, sources: inKeep.sources };
        }
      } else if (cls === 'SeparableConv2D') {
        const mult = (cfg.depthMultiplier as number) ?? 1;
        if (inKeep || outIdx) {
          const chIdx = inKeep ? inKeep.idx.flatMap((c) => range(mult).map((m) => c * mult + m)) : undefined;
          weights = w.map((x) => {
            let r = { data: x.data, shape: x.shape };
            if (x.kind === 'depthwise_kernel' && inIdx) r = sliceAxis(r.data, r.shape, 2, inIdx);
            if (x.kind === 'pointwise_kernel') {
              if (chIdx) r = sliceAxis(r.data, r.shape, 2, chIdx);
              if (outIdx) r = sliceAxis(r.data, r.shape, 3, outIdx);
            }
            if (x.kind === 'bias' && outIdx) r = sliceAxis(r.data, r.shape, 0, outIdx);
            return r;
          });
        }
        if (outIdx) {
          cfg.filters = outIdx.length;
          out = { size: outSize, idx: outIdx, sources: [layer.name] };
        }
      } else {
        // Dense / Conv1D / Conv2D: kernel [..., in, out], bias [out]; Conv2DTranspose (input channels only): kernel [kh, kw, out, in]
        if (inKeep || outIdx) {
          weights = w.map((x) => {
            let r = { data: x.data, shape: x.shape };
            if (x.kind === 'kernel') {
              if (inIdx) r = sliceAxis(r.data, r.shape, inAxis, inIdx);
              if (outIdx) r = sliceAxis(r.data, r.shape, r.shape.length - 1, outIdx);
            } else if (x.kind === 'bias' && outIdx) r = sliceAxis(r.data, r.shape, 0, outIdx);
            return r;
          });
        }
        if (outIdx) {
          if (cls === 'Dense') cfg.units = outIdx.length;
          else cfg.filters = outIdx.length;
          out = { size: outSize, idx: outIdx, sources: [layer.name] };
        }
      }
    } else if (inKeeps.every((k) => k === null)) {
      // untouched path
    } else if (cls === 'BatchNormalization') {
      const axis = cfg.axis as number;
      const rank = outShape(layer).length;
      if (axis !== -1 && axis !== rank - 1) refuse(`BatchNormalization axis ${axis} is not the channel axis`);
      weights = weightsOf(layer).map((x) => sliceAxis(x.data, x.shape, 0, inKeep!.idx));
      out = inKeep;
    } else if (PASS_THROUGH.has(cls)) {
      if (cls === 'Activation' && cfg.activation === 'softmax') refuse('softmax normalises over the channels');
      channelsLast(layer, cfg);
      out = inKeep;
    } else if (cls === 'Flatten') {
      const s = (ins[0].outputShape as number[]).slice(1);
      const c = s.at(-1)!;
      if (c !== inKeep!.size) refuse(`expected ${inKeep!.size} channels on the last axis, found ${c}`);
      const positions = s.slice(0, -1).reduce((a, b) => a * b, 1);
      const idx: number[] = [];
      for (let p = 0; p < positions; p++) for (const ch of inKeep!.idx) idx.push(p * c + ch);
      out = { size: positions * c, idx, sources: inKeep!.sources };
    } else if (cls === 'Concatenate') {
      const rank = outShape(layer).length;
      const axis = (cfg.axis as number) ?? -1;
      if (axis !== -1 && axis !== rank - 1) refuse(`Concatenate on axis ${axis}, not the channel axis`);
      const idx: number[] = [];
      let off = 0;
      const sources: string[] = [];
      ins.forEach((l, i) => {
        const size = (l.outputShape as number[]).at(-1)!;
        const k = inKeeps[i];
        for (const j of k ? k.idx : range(size)) idx.push(off + j);
        if (k) sources.push(...k.sources);
        off += size;
      });
      out = { size: off, idx, sources };
    } else if (ELEMENTWISE.has(cls)) {
      if (!inKeeps.every((k) => sameKeep(k, inKeep))) refuse('its inputs would lose different channels');
      out = inKeep;
    } else {
      refuse('this layer type cannot pass removed channels through');
    }
    keepOf.set(layer.name, out);
    plans.push({ layer, cfg, weights });
  }

  // (model.inputs / model.outputs also work for tf.Sequential, whose inputLayers / outputLayers are empty)
  const outputLayers = model.outputs.map((t) => t.sourceLayer as Layer);
  for (const ol of outputLayers) {
    const k = keepOf.get(ol.name);
    if (k) throw new StructuredRemovalError(`structured removal of ${k.sources.join(', ')} would change the model output (reaches output layer ${ol.name})`, k.sources[0], k.sources);
  }

  // ---- 2. rebuild: every layer from its planned config, with its planned (or unchanged) weights ----
  const planOf = new Map(plans.map((p) => [p.layer.name, p]));
  const rebuilt = rebuildModel(tf, model, (layer, arg) => {
    const plan = planOf.get(layer.name)!;
    const nl = layerFromConfig(tf, layer.getClassName(), plan.cfg, layer.name);
    const y = nl.apply(arg) as tfType.SymbolicTensor;
    const setWeights = () => {
      if (layer.weights.length === 0) return;
      const ws = plan.weights ?? layer.weights.map((w) => ({ data: w.read().dataSync() as Float32Array, shape: [...w.shape] as number[] }));
      const ts = ws.map((w) => tf.tensor(w.data, w.shape, 'float32'));
      try {
        nl.setWeights(ts);
      } finally {
        tf.dispose(ts);
      }
    };
    return { outputs: [y], setWeights };
  }, opts.name ?? model.name);

  const removed: Record<string, number[]> = {};
  for (const [k, v] of req) setOwn(removed, k, v);
  return { model: rebuilt, removed, paramsBefore: countParams(model), paramsAfter: countParams(rebuilt) };
}
