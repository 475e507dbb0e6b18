import type * as tfType from '@tensorflow/tfjs';
import { ExportError } from './errors.js';
import { ACTIVATIONS, IDENTITY_LAYERS, LAYERS, staticLayerProblem } from './layers.js';

/**
 * The target-neutral op list every exporter writes from. Shapes are per sample in Keras layout
 * (NHWC for images); weights are in Keras layout with BatchNorm already folded in. Which Keras
 * layer becomes which ops is the table in ./layers.ts; this file holds the op types and the walk.
 */
export type Activation = 'none' | 'relu' | 'relu6';
export type Padding = 'same' | 'valid';

export interface IrTensor {
  id: number;
  /** Per-sample shape (no batch dimension), Keras layout. */
  shape: number[];
  /** The Keras layer whose output this tensor equals (after fusion, the last fused layer). */
  layer: string;
  /** A constant (an operand of an element-wise op); its shape then has no batch dimension either. */
  data?: Float32Array;
}

interface OpBase {
  /** The Keras layer that produced the op (the first one when several were fused). */
  layer: string;
  inputs: number[];
  output: number;
}

export interface ConvOp extends OpBase {
  kind: 'conv2d' | 'depthwise';
  /** conv2d: [kh, kw, cin / groups, cout]; depthwise: [kh, kw, cin, multiplier]. */
  kernelShape: [number, number, number, number];
  /**
   * conv2d only: the input's channels split into this many equal groups, each convolved with cout / groups of
   * the filters (output channel o reads group floor(o / (cout / groups))). Absent: 1.
   */
  groups?: number;
  kernel: Float32Array;
  /** One per output channel (zeros when the layer had none). */
  bias: Float32Array;
  strides: [number, number];
  dilation: [number, number];
  padding: Padding;
  activation: Activation;
  /** Whether a BatchNormalization was folded into the weights (then they differ from the layer's). */
  folded: boolean;
  /** Whether cross-layer equalization rescaled the weights (then they differ from the layer's too). */
  rescaled?: boolean;
}

/**
 * A transposed convolution (Keras Conv2DTranspose): each input position adds kernel x value into a
 * kh x kw window of the output, windows `strides` apart; 'same' / 'valid' crop as TF does (output
 * H*s, or H*s + max(k - s, 0)).
 */
export interface ConvTransposeOp extends OpBase {
  kind: 'conv_transpose';
  /** [kh, kw, cin, cout]: output channel last like conv2d (Keras stores [kh, kw, cout, cin]), so folding and per-channel scales read it alike. */
  kernelShape: [number, number, number, number];
  kernel: Float32Array;
  bias: Float32Array;
  strides: [number, number];
  padding: Padding;
  activation: Activation;
  folded: boolean;
  rescaled?: boolean;
}

export interface DenseOp extends OpBase {
  kind: 'dense';
  /** [in, out]. */
  kernelShape: [number, number];
  kernel: Float32Array;
  bias: Float32Array;
  activation: Activation;
  folded: boolean;
  rescaled?: boolean;
}

export interface PoolOp extends OpBase {
  kind: 'maxpool' | 'avgpool';
  pool: [number, number];
  strides: [number, number];
  padding: Padding;
}

/** One-input ops without parameters. gap/gmp: mean/max over H and W; mean_last: mean over the last axis, kept. */
export interface SimpleOp extends OpBase {
  kind: 'gap' | 'gmp' | 'mean_last' | 'softmax' | 'relu' | 'relu6' | 'sigmoid' | 'tanh' | 'elu' | 'hard_swish' | 'rsqrt';
}

export interface LeakyReluOp extends OpBase {
  kind: 'leaky_relu';
  alpha: number;
}

export interface GeluOp extends OpBase {
  kind: 'gelu';
  /** The tanh approximation (tfjs 'gelu_new') instead of the erf form. */
  approximate: boolean;
}

export interface ReshapeOp extends OpBase {
  kind: 'reshape';
  /** Per-sample target shape, fully resolved. */
  shape: number[];
}

export interface TransposeOp extends OpBase {
  kind: 'transpose';
  /** Per-sample permutation (output axis i = input axis perm[i]). */
  perm: number[];
}

/** Zero padding of H and W: [[top, bottom], [left, right]]. */
export interface PadOp extends OpBase {
  kind: 'pad';
  pads: [[number, number], [number, number]];
}

/** A per-sample box: `size` elements from `begin` on every axis. */
export interface SliceOp extends OpBase {
  kind: 'slice';
  begin: number[];
  size: number[];
}

/** Nearest-neighbour resize of H and W to `size` (integer factors: each pixel repeated). */
export interface ResizeOp extends OpBase {
  kind: 'resize';
  size: [number, number];
}

/** Element-wise with numpy broadcasting; an input may be a constant tensor. */
export interface BinaryOp extends OpBase {
  kind: 'add' | 'sub' | 'mul' | 'max' | 'min';
  activation: Activation;
}
/** @deprecated the former name of BinaryOp with kind 'add'. */
export type AddOp = BinaryOp;

export interface ConcatOp extends OpBase {
  kind: 'concat';
  /** Per-sample axis (0-based, non-negative). */
  axis: number;
}

export type IrOp = ConvOp | ConvTransposeOp | DenseOp | PoolOp | SimpleOp | LeakyReluOp | GeluOp | ReshapeOp | TransposeOp | PadOp | SliceOp | ResizeOp | BinaryOp | ConcatOp;
export type WeightOp = ConvOp | ConvTransposeOp | DenseOp;

export interface IrGraph {
  name: string;
  tensors: IrTensor[];
  ops: IrOp[];
  input: number;
  output: number;
}

/** An op before it has an output tensor (the layer defaults to the one being converted). */
export type OpSpec = IrOp extends infer O ? (O extends IrOp ? Omit<O, 'output' | 'layer'> & { layer?: string } : never) : never;

/** A layer as the table sees it: its config (tfjs camelCase) and the IR tensors it reads. */
export interface LayerNode {
  name: string;
  className: string;
  config: Record<string, unknown>;
}

/** What a layer-table entry gets to build its ops. */
export interface IrBuilder {
  readonly target: string;
  readonly layer: LayerNode;
  fail(message: string): never;
  /** The layer's input tensors. */
  inputs(): number[];
  /** The layer's single input tensor (fails otherwise). */
  input(): number;
  shape(t: number): number[];
  /** The layer's weight by its short name (`kernel`, `bias`, `gamma`...), as float32 data and shape. */
  weight(name: string): { data: Float32Array; shape: number[] } | undefined;
  /** Appends an op writing a new tensor of `shape`; `suffix` labels an intermediate (`layer#suffix`). */
  emit(op: OpSpec, shape: number[], suffix?: string): number;
  /** A constant tensor (per-sample shape, broadcast against the other operand). */
  constant(data: Float32Array, shape: number[], suffix: string): number;
  /** The op that produced `t` when `t` feeds only this layer (so it may be changed or fused). */
  fusable(t: number): IrOp | undefined;
  /** Removes an op previously returned by fusable (its input then stands for its output). */
  remove(op: IrOp): void;
  /** Applies a Keras/tfjs activation (by name) to `t`, fusing relu/relu6 into `t`'s producer where it can. */
  activation(t: number, name: unknown): number;
}

/** Converts one Keras layer class into IR ops; returns the tensor equal to the layer's output. */
export type LayerConversion = (b: IrBuilder) => number;

interface LayerConfig {
  name: string;
  className: string;
  config: Record<string, unknown>;
  inboundNodes: Array<Array<[string, number, number, unknown?]>>;
}

export function pair(v: unknown, fallback?: [number, number]): [number, number] {
  if (v === null || v === undefined) {
    if (fallback) return fallback;
    throw new Error('missing pair');
  }
  if (typeof v === 'number') return [v, v];
  const a = v as number[];
  return [a[0], a.length > 1 ? a[1] : a[0]];
}

export function outSize(inp: number, k: number, s: number, d: number, padding: Padding): number {
  const eff = (k - 1) * d + 1;
  return padding === 'same' ? Math.ceil(inp / s) : Math.floor((inp - eff) / s) + 1;
}

/** Output size of a transposed convolution along one dimension (Keras's deconv_output_length without output_padding). */
export function transposeOutSize(inp: number, k: number, s: number, padding: Padding): number {
  return padding === 'same' ? inp * s : inp * s + Math.max(k - s, 0);
}

/**
 * Where a transposed convolution's full result ((inp - 1) * s + k values) is cropped to `transposeOutSize`:
 * [before, after] cropped (TF's SAME split, the larger half after), and `extra` positions appended
 * past the end (valid, or same with k < s: they get only the bias).
 */
export function transposeCrop(inp: number, k: number, s: number, padding: Padding): { crop: [number, number]; extra: number } {
  const total = (inp - 1) * s + k - transposeOutSize(inp, k, s, padding);
  if (total <= 0) return { crop: [0, 0], extra: -total };
  const before = Math.floor(total / 2);
  return { crop: [before, total - before], extra: 0 };
}

/** TF 'SAME' padding: [before, after] for one spatial dimension. */
export function samePads(inp: number, k: number, s: number, d: number): [number, number] {
  const eff = (k - 1) * d + 1;
  const out = Math.ceil(inp / s);
  const total = Math.max((out - 1) * s + eff - inp, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

export function shapeSize(s: number[]): number {
  return s.reduce((a, b) => a * b, 1);
}

/** The layer list of a tfjs model's config, with the implicit input of a Sequential made explicit. */
function layerList(model: tfType.LayersModel, fail: (layer: string | undefined, msg: string) => never): { layers: LayerConfig[]; outputs: string[] } {
  const cfg = (model as unknown as { getConfig(): Record<string, unknown> }).getConfig();
  const layers = cfg.layers as LayerConfig[];
  if (!Array.isArray(layers)) fail(undefined, 'model config has no layer list');
  const sequential = !layers.some((l) => Array.isArray(l.inboundNodes));
  if (!sequential) return { layers, outputs: (cfg.outputLayers as Array<[string, number, number]>).map((o) => o[0]) };
  const chain: LayerConfig[] = [{ name: '__input__', className: 'InputLayer', config: { batchInputShape: model.inputs[0].shape }, inboundNodes: [] }];
  let prev = '__input__';
  for (const l of layers) {
    if (l.className === 'InputLayer') continue;
    const name = (l.config.name as string) ?? l.name;
    chain.push({ ...l, name, inboundNodes: [[[prev, 0, 0]]] });
    prev = name;
  }
  return { layers: chain, outputs: [prev] };
}

/**
 * Walks a functional (or sequential) tf.LayersModel into an IrGraph for `target` (used only in
 * error messages). Each layer goes through its entry in LAYERS; anything that cannot be expressed
 * exactly throws an ExportError naming the layer.
 */
export function buildIr(model: tfType.LayersModel, target: string): IrGraph {
  const fail = (layer: string | undefined, msg: string): never => {
    throw new ExportError(target, layer, msg);
  };
  const { layers, outputs } = layerList(model, fail);
  if (outputs.length !== 1) fail(undefined, `models with ${outputs.length} outputs are not supported; export one output`);
  const byName = new Map<string, tfType.layers.Layer>();
  for (const l of model.layers) byName.set(l.name, l);

  // Consumers of each layer's output (for fusion decisions).
  const consumers = new Map<string, number>();
  for (const l of layers) {
    if (l.inboundNodes.length > 1) fail(l.name, `a shared layer (called ${l.inboundNodes.length} times) is not supported; give each call its own layer`);
    for (const node of l.inboundNodes) for (const [src] of node) consumers.set(src, (consumers.get(src) ?? 0) + 1);
  }
  for (const o of outputs) consumers.set(o, (consumers.get(o) ?? 0) + 1);

  const tensors: IrTensor[] = [];
  const ops: IrOp[] = [];
  const tensorOf = new Map<string, number>();
  const producer = new Map<number, IrOp>();
  let input = -1;
  const newTensor = (shape: number[], layer: string, data?: Float32Array): number => {
    tensors.push({ id: tensors.length, shape, layer, ...(data ? { data } : {}) });
    return tensors.length - 1;
  };

  for (const l of layers) {
    const c = l.config;
    const problem = staticLayerProblem(l.className, c);
    if (problem) fail(l.name, problem);
    if (l.className === 'InputLayer') {
      if (input >= 0) fail(l.name, 'models with more than one input are not supported');
      const shape = (c.batchInputShape as Array<number | null>).slice(1);
      if (shape.some((d) => d === null)) fail(l.name, `input shape [${shape}] has unknown dimensions; give a fixed per-sample shape`);
      input = newTensor(shape as number[], '__input__');
      tensorOf.set(l.name, input);
      continue;
    }
    const convert = IDENTITY_LAYERS.has(l.className) ? (b: IrBuilder) => b.input() : LAYERS[l.className].ir;
    const b = builderFor(l);
    const out = convert(b);
    if (tensors[out].layer !== l.name && !tensors[out].data) tensors[out].layer = l.name;
    tensorOf.set(l.name, out);
  }

  function builderFor(l: LayerConfig): IrBuilder {
    const node: LayerNode = { name: l.name, className: l.className, config: l.config };
    const layerFail = (msg: string): never => fail(l.name, msg);
    const ins = (): number[] =>
      (l.inboundNodes[0] ?? []).map(([src]) => {
        const t = tensorOf.get(src);
        if (t === undefined) layerFail(`input '${src}' was not produced before this layer`);
        return t as number;
      });
    const b: IrBuilder = {
      target,
      layer: node,
      fail: layerFail,
      inputs: ins,
      input() {
        const xs = ins();
        if (xs.length !== 1) layerFail(`expected one input, got ${xs.length}`);
        return xs[0];
      },
      shape: (t) => tensors[t].shape,
      weight(name) {
        const layer = byName.get(l.name);
        if (!layer) return undefined;
        const i = layer.weights.findIndex((w) => w.originalName.split('/').pop() === name);
        if (i < 0) return undefined;
        const t = layer.weights[i].read();
        return { data: Float32Array.from(t.dataSync() as Float32Array), shape: t.shape.slice() };
      },
      emit(op, shape, suffix) {
        // Intermediates are labelled `layer#step`; the walk relabels the layer's output tensor.
        const out = newTensor(shape, `${l.name}#${suffix ?? op.kind}`);
        const full = { layer: l.name, ...op, output: out } as IrOp;
        ops.push(full);
        producer.set(out, full);
        return out;
      },
      constant: (data, shape, suffix) => newTensor(shape, `${l.name}#${suffix}`, data),
      fusable(t) {
        const op = producer.get(t);
        if (!op) return undefined;
        if (tensors[t].layer === l.name || tensors[t].layer.startsWith(`${l.name}#`)) return op;
        if ((consumers.get(tensors[t].layer) ?? 0) !== 1) return undefined;
        return op;
      },
      remove(op) {
        const i = ops.indexOf(op);
        if (i >= 0) ops.splice(i, 1);
        producer.delete(op.output);
      },
      activation(t, name) {
        return applyActivation(b, t, name);
      },
    };
    return b;
  }

  const output = tensorOf.get(outputs[0]);
  if (input < 0 || output === undefined) fail(undefined, 'model has no input or output');
  // Drop tensors no op reads or writes (e.g. the output of a ZeroPadding2D folded into a conv).
  return compact({ name: model.name, tensors, ops, input, output: output as number });
}

/** Renumbers tensors so that only the input, constants read by ops and op outputs remain. */
function compact(g: IrGraph): IrGraph {
  const used = new Set<number>([g.input, g.output]);
  for (const op of g.ops) {
    used.add(op.output);
    for (const i of op.inputs) used.add(i);
  }
  if (used.size === g.tensors.length) return g;
  const map = new Map<number, number>();
  const tensors: IrTensor[] = [];
  for (const t of g.tensors) {
    if (!used.has(t.id)) continue;
    map.set(t.id, tensors.length);
    tensors.push({ ...t, id: tensors.length });
  }
  const ops = g.ops.map((op) => ({ ...op, inputs: op.inputs.map((i) => map.get(i) as number), output: map.get(op.output) as number }) as IrOp);
  return { name: g.name, tensors, ops, input: map.get(g.input) as number, output: map.get(g.output) as number };
}

function applyActivation(b: IrBuilder, t: number, raw: unknown): number {
  const name = String(raw ?? 'linear');
  const entry = ACTIVATIONS[name];
  if (!entry) return b.fail(`activation '${name}' is not supported; use one of ${Object.keys(ACTIVATIONS).join(', ')}`);
  if (entry.fuse) {
    const prev = b.fusable(t);
    const fusesInto = prev && (prev.kind === 'conv2d' || prev.kind === 'depthwise' || prev.kind === 'conv_transpose' || prev.kind === 'dense' || prev.kind === 'add');
    if (fusesInto && (prev as WeightOp | BinaryOp).activation === 'none') {
      (prev as WeightOp | BinaryOp).activation = entry.fuse;
      return t;
    }
  }
  return entry.ir(b, t);
}
