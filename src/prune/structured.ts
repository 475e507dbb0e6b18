import type * as tfType from '@tensorflow/tfjs';
import { KERNEL_INPUT_AXIS, kernelVariable } from './masks.js';
import { setOwn } from '../util/own.js';
import { layerFromConfig, rebuildModel } from '../model/rebuild.js';
import { modelGraph, type ModelGraph } from '../compression/layer-by-layer.js';

/**
 * Physical removal of output units (Dense neurons, Conv2D / SeparableConv2D filters) and of the
 * matching inputs of every consumer, by rebuilding a smaller functional model.
 *
 * Channels are the last axis (channelsLast only). Removal propagates through:
 *   BatchNormalization (its 4 per-channel vectors are sliced), activations (Activation except
 *   softmax, ReLU, LeakyReLU, ELU, ThresholdedReLU), Dropout-like layers, pooling (incl. global),
 *   ZeroPadding2D / Cropping2D / UpSampling2D, Flatten (the matching flattened rows are removed),
 *   Rescaling (scalar), DepthwiseConv2D (removing channel c removes its depthwise channel(s)
 *   c*mult..c*mult+mult-1), a Reshape that keeps the channels on the last axis at their size
 *   ([C] -> [1, 1, C] before a squeeze-excitation conv), Concatenate on the last axis, and
 *   element-wise merges (Add, Multiply, ...) when every input lost the same channels;
 * and is absorbed by the next Dense / Conv1D / Conv2D / SeparableConv2D / Conv2DTranspose (input rows / channels removed).
 * Squeeze-and-excitation: at a Multiply whose other input is a gate (a removable layer reaching
 * only this Multiply through channel-wise layers: the excitation conv and its sigmoid /
 * hard-sigmoid), the gate loses the same units, which `removed` lists with the requested ones
 * (see gateRemoval). Anything else on the path (another Reshape, Softmax, LayerNormalization,
 * PReLU, a model output, ...) is refused with a StructuredRemovalError naming the layer.
 *
 * Exactness: the rebuilt model computes exactly what the original computes with the removed
 * units' outputs replaced by 0 at their consumers. So outputs are unchanged when the removed units
 * already produce 0 (kernel column AND bias zero, and a following BatchNorm mapping 0 to 0, i.e.
 * beta - gamma*mean/sqrt(var+eps) = 0; true for freshly initialised BN). Structured masks should
 * therefore zero the bias too (MaskSet.set(layer, mask, { bias: unitMask })). A gate's removed
 * units need not produce 0: the product channels they scale are removed with the other input's.
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
  /** Removed unit indices per layer (sorted, deduplicated), with the gates' (squeeze-excitation) that lose them too. */
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
  'ZeroPadding2D', 'Cropping2D', 'UpSampling2D', 'Activation', 'StochasticDepth', 'Rescaling',
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

/** The requested units per layer (sorted, deduplicated), checked against the model. */
function checkedRequest(model: tfType.LayersModel, remove: RemovalSpec): Map<string, number[]> {
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
  return req;
}

/** The walk's state: units to remove per layer, the kept channels of each planned layer's output. */
interface Walk {
  req: Map<string, number[]>;
  keepOf: Map<string, Keep | null>;
  /** Layers whose units are removed because another layer's are (a gate conv: see gateRemoval), and those layers. */
  derivedFrom: Map<string, string[]>;
}

/** A layer's new config and weights (null = copied unchanged), and the kept channels of its output. */
interface Plan {
  cfg: Cfg;
  weights: Array<{ data: Float32Array; shape: number[] }> | null;
  out: Keep | null;
}

/** What planning one layer sees: its inputs' kept channels, and how to refuse naming the removal that reached it. */
interface LayerCtx {
  layer: Layer;
  cls: string;
  cfg: Cfg;
  ins: Layer[];
  inKeeps: Array<Keep | null>;
  inKeep: Keep | null;
  refuse: (why: string) => never;
}

const inbound = (l: Layer): Layer[] => (l.inboundNodes[0]?.inboundLayers ?? []) as Layer[];
const weightsOf = (l: Layer) => l.weights.map((w) => ({ kind: suffix(w.originalName), data: w.read().dataSync() as Float32Array, shape: [...w.shape] as number[] }));

/** A Reshape keeps channel c at channel c when the last axis is the same size before and after ([C] -> [1, 1, C]). */
function keepsChannelAxis(layer: Layer): boolean {
  const c = (inbound(layer)[0]?.outputShape as number[] | undefined)?.at(-1);
  return typeof c === 'number' && c === outShape(layer).at(-1);
}

/** Layers whose output channel c depends on input channel c only (the gate path of gateChain). */
function channelwise(layer: Layer): boolean {
  const cls = layer.getClassName();
  if (cls === 'Activation') return (layer.getConfig() as Cfg).activation !== 'softmax';
  return PASS_THROUGH.has(cls) || cls === 'BatchNormalization' || (cls === 'Reshape' && keepsChannelAxis(layer));
}

function planLayer(layer: Layer, walk: Walk): Plan {
  const cls = layer.getClassName();
  const ins = inbound(layer);
  const inKeeps = ins.map((l) => walk.keepOf.get(l.name) ?? null);
  const refuse = (why: string): never => {
    const src = [...new Set(inKeeps.filter((k): k is Keep => k !== null).flatMap((k) => k.sources))];
    throw new StructuredRemovalError(`structured removal of ${src.join(', ')} reaches layer ${layer.name} (${cls}): ${why}`, layer.name, src);
  };
  const c: LayerCtx = { layer, cls, cfg: { ...(layer.getConfig() as Cfg) }, ins, inKeeps, inKeep: inKeeps.find((k) => k !== null) ?? null, refuse };
  const units = walk.req.get(layer.name);
  if (cls === 'InputLayer') return { cfg: c.cfg, weights: null, out: null };
  if (CONSUMERS.has(cls) || units) return planWeighted(c, units, walk.derivedFrom.get(layer.name) ?? [layer.name]);
  if (inKeeps.every((k) => k === null)) return { cfg: c.cfg, weights: null, out: null };
  return planPassing(c);
}

/** A layer with a kernel: its input channels follow the removal that reaches it; `units` (if any) leave its output. */
function planWeighted(c: LayerCtx, units: number[] | undefined, sources: string[]): Plan {
  const { layer, cls, cfg, ins, inKeep, refuse } = c;
  if (ins.length !== 1) refuse('expected one input');
  channelsLast(layer, cfg);
  const w = weightsOf(layer);
  const inIdx = inKeep?.idx;
  const outSize = outShape(layer).at(-1)!;
  let outIdx: number[] | undefined;
  let out: Keep | null = null;
  let weights: Plan['weights'] = null;
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
      const chIdx = inKeep.idx.flatMap((ch) => range(mult).map((m) => ch * mult + m));
      weights = w.map((x) => (x.kind === 'depthwise_kernel' ? sliceAxis(x.data, x.shape, 2, inKeep.idx) : sliceAxis(x.data, x.shape, 0, chIdx)));
      out = { size: inKeep.size * mult, idx: chIdx, sources: inKeep.sources };
    }
  } else if (cls === 'SeparableConv2D') {
    const mult = (cfg.depthMultiplier as number) ?? 1;
    if (inKeep || outIdx) {
      const chIdx = inKeep ? inKeep.idx.flatMap((ch) => range(mult).map((m) => ch * mult + m)) : undefined;
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
      out = { size: outSize, idx: outIdx, sources };
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
      out = { size: outSize, idx: outIdx, sources };
    }
  }
  return { cfg, weights, out };
}

/** A layer without a kernel that some removal reaches: it passes the removed channels on, or refuses. */
function planPassing(c: LayerCtx): Plan {
  const { layer, cls, cfg, ins, inKeeps, refuse } = c;
  const inKeep = c.inKeep!;
  const passed = (out: Keep, weights: Plan['weights'] = null): Plan => ({ cfg, weights, out });
  if (cls === 'BatchNormalization') {
    const axis = cfg.axis as number;
    const rank = outShape(layer).length;
    if (axis !== -1 && axis !== rank - 1) refuse(`BatchNormalization axis ${axis} is not the channel axis`);
    return passed(inKeep, weightsOf(layer).map((x) => sliceAxis(x.data, x.shape, 0, inKeep.idx)));
  }
  if (PASS_THROUGH.has(cls)) {
    if (cls === 'Activation' && cfg.activation === 'softmax') refuse('softmax normalises over the channels');
    channelsLast(layer, cfg);
    return passed(inKeep);
  }
  if (cls === 'Reshape') {
    if (!keepsChannelAxis(layer)) refuse(`it does not keep the ${inKeep.size} channels on the last axis (reshapes such as [C] -> [1, 1, C] pass them)`);
    const target = cfg.targetShape as number[];
    cfg.targetShape = [...target.slice(0, -1), target.at(-1) === -1 ? -1 : inKeep.idx.length];
    return passed(inKeep);
  }
  if (cls === 'Flatten') {
    const s = (ins[0].outputShape as number[]).slice(1);
    const ch = s.at(-1)!;
    if (ch !== inKeep.size) refuse(`expected ${inKeep.size} channels on the last axis, found ${ch}`);
    const positions = s.slice(0, -1).reduce((a, b) => a * b, 1);
    const idx: number[] = [];
    for (let p = 0; p < positions; p++) for (const k of inKeep.idx) idx.push(p * ch + k);
    return passed({ size: positions * ch, idx, sources: inKeep.sources });
  }
  if (cls === 'Concatenate') {
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
    return passed({ size: off, idx, sources });
  }
  if (ELEMENTWISE.has(cls)) {
    if (!inKeeps.every((k) => sameKeep(k, inKeep))) refuse('its inputs would lose different channels');
    return passed(inKeep);
  }
  return refuse('this layer type cannot pass removed channels through');
}

/** The channels a kept set leaves out. */
function removedOf(k: Keep | null, size: number): number[] {
  if (!k) return [];
  const kept = new Set(k.idx);
  return range(size).filter((j) => !kept.has(j));
}

/**
 * A gate: a removable layer (the excitation conv of a squeeze-and-excitation block) whose output
 * reaches the Multiply `mul` through channel-wise layers (sigmoid, hard-sigmoid's multiply-add and
 * ReLU, a Reshape to [1, 1, C]) and nothing else. `alsoReaches` names where the output goes besides.
 */
interface GateChain {
  conv: Layer;
  path: Layer[];
  alsoReaches?: string;
}

function gateChain(start: Layer, mul: Layer, graph: ModelGraph): GateChain | null {
  const path: Layer[] = [];
  let cur = start;
  while (!REMOVABLE.has(cur.getClassName())) {
    if (!channelwise(cur) || inbound(cur).length !== 1) return null;
    path.unshift(cur);
    cur = inbound(cur)[0];
  }
  const seq = [cur, ...path];
  const outputOf = new Map(graph.steps.map((s) => [s.layer.name, s.outputIds[0]]));
  for (let i = 0; i < seq.length; i++) {
    const id = outputOf.get(seq[i].name)!;
    const next = seq[i + 1] ?? mul;
    const users = graph.consumerLayers.get(id) ?? [];
    const others = users.filter((u) => u !== next).map((u) => u.name);
    if (graph.outputIds.includes(id)) others.push('the model output');
    if (others.length || users.length !== 1) return { conv: cur, path, alsoReaches: `${seq[i].name} also reaches ${others.join(', ') || `${next.name} twice`}` };
  }
  return { conv: cur, path };
}

/**
 * Removal through a squeeze-and-excitation Multiply: when one input `x` loses channels and the
 * other is a gate (gateChain) that loses no channel `x` keeps, the gate's conv loses the same
 * units as `x` (its kernel columns and bias entries). Exact: channel c of the product,
 * x_c * gate_c, is the only use of gate_c, and the product's channel c is dropped with x_c (0
 * when x_c is 0, whatever gate_c is). Returns the gate's layers to plan again (the walk planned them unchanged), or
 * undefined when `mul` is not such a merge (it is then planned, or refused, as any element-wise one).
 */
function gateRemoval(mul: Layer, walk: Walk, graph: ModelGraph): Layer[] | undefined {
  const ins = inbound(mul);
  if (ins.length !== 2) return undefined;
  const keeps = ins.map((l) => walk.keepOf.get(l.name) ?? null);
  if (sameKeep(keeps[0], keeps[1])) return undefined;
  // Either input may be the gate; `x` is the other one, which loses channels.
  const candidates = [0, 1].flatMap((g) => {
    const x = keeps[1 - g];
    const chain = x ? gateChain(ins[g], mul, graph) : null;
    if (!x || !chain || outShape(chain.conv).at(-1) !== x.size) return [];
    return [{ x, chain, other: ins[1 - g].name, units: removedOf(x, x.size), own: removedOf(keeps[g], x.size) }];
  });
  const fit = candidates.find((c) => !c.chain.alsoReaches && c.own.every((j) => c.units.includes(j)));
  if (fit) {
    walk.req.set(fit.chain.conv.name, fit.units);
    walk.derivedFrom.set(fit.chain.conv.name, fit.x.sources);
    return [fit.chain.conv, ...fit.chain.path];
  }
  const c = candidates[0];
  if (!c) return undefined;
  const name = c.chain.conv.name;
  const refuse = (why: string, sources: string[]): never => {
    throw new StructuredRemovalError(`structured removal of ${sources.join(', ')} reaches layer ${mul.name} (Multiply): ${why}`, mul.name, sources);
  };
  if (c.chain.alsoReaches) return refuse(`its inputs would lose different channels, and the gate ${name} cannot lose the same units: ${c.chain.alsoReaches}`, c.x.sources);
  return refuse(`the gate ${name} (squeeze-excitation) can only lose the channels its other input ${c.other} loses; leave ${name} out of the selection (it loses the same units as ${c.x.sources.join(', ')} without it)`, [name]);
}

/**
 * Rebuilds `model` without the given output units. `remove` maps a Dense / Conv1D / Conv2D /
 * SeparableConv2D layer name to the unit (neuron / filter) indices to drop. Throws
 * StructuredRemovalError (naming the layer) when the removal is not supported or would change the
 * model's output shape. The original model is left untouched.
 */
export function removeUnits(tf: typeof tfType, model: tfType.LayersModel, remove: RemovalSpec, opts: { name?: string } = {}): RemovalResult {
  const req = checkedRequest(model, remove);
  for (const l of model.layers) {
    if (l.inboundNodes.length > 1) throw new StructuredRemovalError(`layer ${l.name} is shared (called ${l.inboundNodes.length} times); structured removal handles single-use layers only`, l.name);
    const cls = l.getClassName();
    if (cls === 'Sequential' || cls === 'Model' || cls === 'Functional') throw new StructuredRemovalError(`nested model ${l.name} is not supported by structured removal`, l.name);
  }

  // ---- 1. propagate kept-channel sets and plan every layer's new config and weights ----
  const walk: Walk = { req: new Map(req), keepOf: new Map(), derivedFrom: new Map() };
  const plans = new Map<string, Plan>();
  const replan = (layer: Layer) => {
    const plan = planLayer(layer, walk);
    walk.keepOf.set(layer.name, plan.out);
    plans.set(layer.name, plan);
  };
  const graph = modelGraph(model);
  for (const layer of model.layers) {
    if (layer.getClassName() === 'Multiply') gateRemoval(layer, walk, graph)?.forEach(replan);
    replan(layer);
  }

  // (model.inputs / model.outputs also work for tf.Sequential, whose inputLayers / outputLayers are empty)
  const outputLayers = model.outputs.map((t) => t.sourceLayer as Layer);
  for (const ol of outputLayers) {
    const k = walk.keepOf.get(ol.name);
    if (k) throw new StructuredRemovalError(`structured removal of ${k.sources.join(', ')} would change the model output (reaches output layer ${ol.name})`, k.sources[0], k.sources);
  }

  // ---- 2. rebuild: every layer from its planned config, with its planned (or unchanged) weights ----
  const rebuilt = rebuildModel(tf, model, (layer, arg) => {
    const plan = plans.get(layer.name)!;
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
  for (const [k, v] of walk.req) setOwn(removed, k, v);
  return { model: rebuilt, removed, paramsBefore: countParams(model), paramsAfter: countParams(rebuilt) };
}
