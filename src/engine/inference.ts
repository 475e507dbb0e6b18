import type * as tfType from '@tensorflow/tfjs';
import { modelGraph, type ModelGraph } from '../compression/layer-by-layer.js';
import { packGemmB } from './simd/conv.wat.js';
import { packedConv } from './kernels/conv2d.js';
import { DEPTHWISE_GROUP_MAX_CHANNELS, depthwiseGroupFilter, depthwiseGrouped } from '../model/custom-layers.js';

/**
 * Inference of a tf.LayersModel as a plan of fused ops (what model.predict computes, faster):
 * - Conv2D / DepthwiseConv2D -> BatchNormalization -> ReLU / ReLU6 / linear runs as ONE fused conv
 *   (tfjs's fused conv2d / depthwiseConv2d: bias and activation applied in the conv's own output
 *   pass, XNNPACK on wasm) with the batch norm folded into the conv's weights and bias:
 *   s = gamma / sqrt(variance + eps), W' = W * s (per output channel), b' = (b - mean) * s + beta;
 * - a conv followed only by such an activation (no batch norm) fuses the activation the same way;
 * - a ZeroPadding2D read only by such a conv (Keras applications' `correct_pad` before a stride-2 'valid'
 *   conv, the importers' explicit pads) folds into the conv's own padding: the conv runs on the unpadded
 *   input with explicit padding (pad + the conv's own), without the padded copy (its values are zeros
 *   either way, so this is exact);
 * - a Dense on a rank-4 (or rank-3) input runs as the 1x1 conv it equals (with the same fusions);
 * - Reshape -> Cropping2D -> Reshape slicing the last axis (the ONNX importer's channel slice) runs as one slice;
 * - every other layer runs as its own layer.apply (training: false), so any layer model.predict
 *   supports runs here too;
 * - each intermediate tensor is freed after its last consumer (model.apply holds every layer's output
 *   until the pass ends).
 * Folding is exact algebra but rounds differently from the unfolded ops (float32: ~1e-6 relative).
 * A plan holds folded copies of the weights as of its creation: make a new plan after the weights
 * change (plans are cheap: one pass over the conv weights), dispose it when done. Training never uses
 * plans (it needs the batch statistics and the unfolded variables).
 */
export interface InferencePlan {
  /** The model's output for `x` (first output of a multi-output model). Caller disposes it. */
  predict(x: tfType.Tensor): tfType.Tensor;
  /**
   * The same pass one step at a time: yields each step's output(s) with the name of the Keras layer
   * whose output it equals (for a fused step, its last layer: the activation or batch norm), valid until
   * the walk resumes; returns the model's output (caller disposes). `hooks` may replace the input or a
   * step's output (e.g. fake-quantize it) or just observe it. Two plans of the same model walked side by
   * side step in lockstep. A walk abandoned before its end must be closed with `return()`.
   */
  walk(x: tfType.Tensor, hooks?: PlanHooks): Generator<PlanStepOutput, tfType.Tensor, void>;
  /** The layer names the walk yields, in order (after `__input__`, which only `onInput` sees). */
  readonly outputLayers: readonly string[];
  /** Conv layers whose zero padding, batch norm and/or activation were fused into them, by conv layer name. */
  readonly fused: ReadonlyArray<FusedConv>;
  dispose(): void;
}

/** A conv step of the plan and the layers fused into it (each absent where none was). */
export interface FusedConv {
  conv: string;
  /** The ZeroPadding2D before the conv, folded into its padding (its output is no step's: it is never computed). */
  zeroPadding?: string;
  batchNorm?: string;
  activation?: string;
}

export interface PlanHooks {
  onInput?: (t: tfType.Tensor) => tfType.Tensor | void;
  /** Called inside a tf.tidy: a returned tensor replaces the output, intermediates are freed. */
  onOutput?: (layer: string, t: tfType.Tensor) => tfType.Tensor | void;
}

export interface PlanStepOutput {
  /** The Keras layer whose output the step's (first) output equals. */
  layer: string;
  /** Every layer the step computes (a fused conv: zero padding, conv, batch norm, activation), in order. */
  layers: readonly string[];
  outputs: tfType.Tensor[];
}

/** Options of inferencePlan. */
export interface PlanOptions {
  /** false: every layer runs as its own step (each layer's output is observable). Default true. */
  fuse?: boolean;
}

type Layer = tfType.layers.Layer;
type Tensor = tfType.Tensor;
type FusedActivation = 'linear' | 'relu' | 'relu6';
/** tfjs's explicit conv padding, NHWC: [[0, 0], [top, bottom], [left, right], [0, 0]]. */
type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

interface Step {
  inputIds: number[];
  outputIds: number[];
  /** The layers the step computes, in order; the last one's output is the step's. */
  layers: string[];
  run(inputs: Tensor[]): Tensor[];
}

interface ConvConfig {
  kind: 'conv' | 'depthwise';
  /** A Dense layer applied per pixel (rank-4 input) or per row (rank 3): the 1x1 conv it equals. */
  dense?: boolean;
  /** A GroupedConv2D's groups (one fused conv per group, concatenated); absent: 1. */
  groups?: number;
  strides: [number, number];
  padding: 'same' | 'valid' | ExplicitPadding;
  dilations: [number, number];
  activation: FusedActivation;
}

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [v[0], v[1] ?? v[0]] : [Number(v ?? 1), Number(v ?? 1)]);

/** The activation a layer applies, as a fused-op activation, or undefined if it is none of those. */
function activationOf(name: unknown): FusedActivation | undefined {
  return name === 'relu' || name === 'relu6' || name === 'linear' ? name : undefined;
}

/** A ReLU / Activation layer expressible as a fused activation. */
function standaloneActivation(layer: Layer): FusedActivation | undefined {
  const cls = layer.getClassName();
  const cfg = layer.getConfig();
  if (cls === 'ReLU') return cfg.maxValue == null ? 'relu' : cfg.maxValue === 6 ? 'relu6' : undefined;
  if (cls === 'Activation') return activationOf(cfg.activation);
  return undefined;
}

/**
 * A channels-last 2-D conv or depthwise conv the fused ops can run, with its own activation; a Dense
 * layer on a rank-4 input [N, H, W, K] (ConvNeXt's pointwise Linear) or rank-3 [N, T, K] as the 1x1
 * conv it equals, so that it runs in the same GEMM as a 1x1 conv instead of a generic matrix product.
 */
function convConfig(layer: Layer, inputShapes: ReadonlyArray<ReadonlyArray<number | null>>): ConvConfig | undefined {
  const cls = layer.getClassName();
  if (cls === 'Dense') {
    const rank = inputShapes.length === 1 ? inputShapes[0].length : undefined;
    const activation = activationOf(layer.getConfig().activation);
    if ((rank !== 3 && rank !== 4) || activation === undefined) return undefined;
    return { kind: 'conv', dense: true, strides: [1, 1], padding: 'valid', dilations: [1, 1], activation };
  }
  if (cls !== 'Conv2D' && cls !== 'GroupedConv2D' && cls !== 'DepthwiseConv2D') return undefined;
  const cfg = layer.getConfig();
  const activation = activationOf(cfg.activation);
  if ((cfg.dataFormat ?? 'channelsLast') !== 'channelsLast' || activation === undefined) return undefined;
  if (cfg.padding !== 'same' && cfg.padding !== 'valid') return undefined;
  const dilations = pair(cfg.dilationRate);
  // tfjs-layers' DepthwiseConv2D runs without its dilation (it passes null): a dilated one stays a
  // layer, so that the plan computes what model.predict computes.
  if (cls === 'DepthwiseConv2D' && (dilations[0] !== 1 || dilations[1] !== 1)) return undefined;
  const groups = cls === 'GroupedConv2D' ? Number(cfg.groups) : undefined;
  return { kind: cls === 'DepthwiseConv2D' ? 'depthwise' : 'conv', strides: pair(cfg.strides), padding: cfg.padding, dilations, activation, ...(groups ? { groups } : {}) };
}

/** A BatchNormalization over the last axis of a rank-4 input: its per-channel scale and shift, in float64. */
function batchNormAffine(layer: Layer): { scale: Float64Array; shift: Float64Array } | undefined {
  if (layer.getClassName() !== 'BatchNormalization') return undefined;
  const cfg = layer.getConfig();
  const axis = cfg.axis as number | number[];
  if (axis !== -1 && axis !== 3) return undefined;
  const ws = layer.getWeights();
  let i = 0;
  const gamma = cfg.scale ? (ws[i++].dataSync() as Float32Array) : undefined;
  const beta = cfg.center ? (ws[i++].dataSync() as Float32Array) : undefined;
  const mean = ws[i++]?.dataSync() as Float32Array | undefined;
  const variance = ws[i++]?.dataSync() as Float32Array | undefined;
  if (!mean || !variance || i !== ws.length) return undefined;
  const eps = cfg.epsilon as number;
  const scale = new Float64Array(mean.length);
  const shift = new Float64Array(mean.length);
  for (let c = 0; c < mean.length; c++) {
    scale[c] = (gamma ? gamma[c] : 1) / Math.sqrt(variance[c] + eps);
    shift[c] = (beta ? beta[c] : 0) - mean[c] * scale[c];
  }
  return { scale, shift };
}

/** The only layer consuming tensor `id`, if exactly one consumes it and it is not a model output. */
function soleConsumer(graph: ModelGraph, id: number): Layer | undefined {
  const layers = graph.consumerLayers.get(id);
  return graph.consumers.get(id) === 1 && layers?.length === 1 ? layers[0] : undefined;
}

/**
 * The explicit padding of a conv run on the input of the ZeroPadding2D `pad` before it: the pad's rows and
 * columns plus the conv's own padding of the padded input ('valid': none; 'same': TF's split of the padded
 * size), or undefined where that is not known (a channels-first pad, 'same' on an input of unknown size).
 */
function foldedPadding(tf: typeof tfType, pad: Layer, cfg: ConvConfig, kernelShape: number[], paddedShape: ReadonlyArray<number | null>): ExplicitPadding | undefined {
  const pc = pad.getConfig();
  if ((pc.dataFormat ?? 'channelsLast') !== 'channelsLast') return undefined;
  const [[t, b], [l, r]] = pc.padding as [[number, number], [number, number]];
  if (cfg.padding === 'valid') return [[0, 0], [t, b], [l, r], [0, 0]];
  const [, h, w] = paddedShape;
  if (cfg.padding !== 'same' || h == null || w == null) return undefined;
  const same = tf.backend_util.computeConv2DInfo(
    [1, h, w, kernelShape[2]], kernelShape as [number, number, number, number], cfg.strides, cfg.dilations, 'same', undefined, cfg.kind === 'depthwise', 'channelsLast',
  ).padInfo;
  return [[0, 0], [t + same.top, b + same.bottom], [l + same.left, r + same.right], [0, 0]];
}

/**
 * The fused conv step for a conv layer and what follows it, or undefined (then the conv runs as its
 * layer). `absorbed` receives the layers the step computes besides the conv. With `pad` (the ZeroPadding2D
 * whose output only the conv reads), the step reads the pad's input and folds the pad into the conv's padding.
 */
function fusedConvStep(tf: typeof tfType, graph: ModelGraph, conv: Layer, outputId: number, absorbed: Set<Layer>, owned: Tensor[], pad?: Layer) {
  const cfg = convConfig(conv, stepOf(graph, conv).inputShapes);
  if (!cfg || (pad && cfg.dense)) return undefined;
  let lastId = outputId;
  let bnLayer: Layer | undefined;
  let affine: ReturnType<typeof batchNormAffine>;
  const next = soleConsumer(graph, lastId);
  if (cfg.activation === 'linear' && next && (affine = batchNormAffine(next))) {
    bnLayer = next;
    lastId = stepOf(graph, next).outputIds[0];
  }
  let activation = cfg.activation;
  let actLayer: Layer | undefined;
  const after = activation === 'linear' ? soleConsumer(graph, lastId) : undefined;
  const act = after ? standaloneActivation(after) : undefined;
  if (after && act) {
    actLayer = after;
    activation = act;
    lastId = stepOf(graph, after).outputIds[0];
  }
  if (!bnLayer && !actLayer && !cfg.dense && !pad) return undefined;

  const [kernel, bias] = conv.getWeights();
  // A Dense kernel [K, N] is the [1, 1, K, N] filter of its 1x1 conv (the same values in the same order).
  const kernelShape = (cfg.dense ? [1, 1, ...kernel.shape] : kernel.shape) as number[];
  const padding = pad ? foldedPadding(tf, pad, cfg, kernelShape, stepOf(graph, conv).inputShapes[0]) : cfg.padding;
  if (!padding) return undefined;
  const w = Float32Array.from(kernel.dataSync() as Float32Array);
  const channels = kernelShape[2] * (cfg.kind === 'depthwise' ? kernelShape[3] : 1);
  const outChannels = cfg.kind === 'depthwise' ? channels : kernelShape[3];
  const b = new Float32Array(outChannels);
  const b0 = bias ? (bias.dataSync() as Float32Array) : undefined;
  if (affine) {
    if (affine.scale.length !== outChannels) return undefined;
    // The output channel is the kernel's last axis: one row of outChannels at a time (no modulo per weight).
    const scale = affine.scale;
    for (let row = 0; row < w.length; row += outChannels) for (let c = 0; c < outChannels; c++) w[row + c] = w[row + c] * scale[c];
    for (let c = 0; c < outChannels; c++) b[c] = (b0 ? b0[c] : 0) * affine.scale[c] + affine.shift[c];
  } else if (b0) {
    b.set(b0);
  }
  const filter = tf.tensor(w, kernelShape, 'float32');
  const biasT = tf.tensor1d(b, 'float32');
  owned.push(filter, biasT);
  // On wasm, the filter of a conv compress's SIMD kernels run also as the [KH*KW*Ci, Co] matrix in column
  // strips they read (packed once here instead of per call; src/engine/kernels/conv2d.ts).
  const packs = tf.getBackend() === 'wasm' && cfg.kind === 'conv' && !cfg.groups && packedConv(kernelShape, cfg.strides, cfg.dilations, padding) !== undefined;
  const packedFilter = packs ? tf.tensor1d(packGemmB(w, w.length / outChannels, outChannels), 'float32') : undefined;
  if (packedFilter) owned.push(packedFilter);
  const inputs = { filter, bias: biasT, ...(packedFilter ? { packedFilter } : {}) };
  for (const l of [conv, bnLayer, actLayer]) if (l) absorbed.add(l);
  // The fused kernel itself, as tf.fused.conv2d / depthwiseConv2d run it for a rank-4 input, without
  // their gradient wrapper (customGrad: a tape entry and saved tensors per call, ~10% of a batch-1
  // MobileNetV2 pass; inference needs no gradient).
  const kernelName = cfg.kind === 'conv' ? 'FusedConv2D' : 'FusedDepthwiseConv2D';
  const attrs = { strides: cfg.strides, pad: padding, dataFormat: 'NHWC', dilations: cfg.dilations, dimRoundingMode: undefined, activation, leakyreluAlpha: undefined };
  const fusedKernel = cfg.groups && cfg.groups > 1
    ? groupedKernel(tf, { ...cfg, padding, activation }, filter, biasT, owned, (x, parts) => tf.engine().runKernel(kernelName, { x, ...parts }, attrs as unknown as tfType.NamedAttrMap) as Tensor)
    : (x: Tensor) => tf.engine().runKernel(kernelName, { x, ...inputs }, attrs as unknown as tfType.NamedAttrMap) as Tensor;
  // A Dense on rows [N, T, K] runs on the [N, 1, T, K] view (a reshape is free) and comes back as rows.
  const run = ([x]: Tensor[]) => [x.rank === 3 ? fusedKernel(x.reshape([x.shape[0], 1, x.shape[1]!, x.shape[2]!])).reshape([x.shape[0], x.shape[1]!, outChannels]) : fusedKernel(x)];
  const layers = [pad, conv, bnLayer, actLayer].filter((l): l is Layer => l !== undefined).map((l) => l.name);
  const fused: FusedConv = { conv: conv.name, ...(pad ? { zeroPadding: pad.name } : {}), batchNorm: bnLayer?.name, activation: actLayer?.name };
  return { step: { inputIds: stepOf(graph, pad ?? conv).inputIds, outputIds: [lastId], layers, run }, fused };
}

/**
 * A ZeroPadding2D read only by a conv the fused ops run: the conv's fused step (here, at the pad's place in the
 * graph order) with the pad folded into its padding, or undefined (then the pad runs as its layer).
 */
function paddedConvStep(tf: typeof tfType, graph: ModelGraph, pad: Layer, outputId: number, absorbed: Set<Layer>, owned: Tensor[]) {
  const conv = pad.getClassName() === 'ZeroPadding2D' ? soleConsumer(graph, outputId) : undefined;
  const convStep = conv ? stepOf(graph, conv) : undefined;
  if (!conv || convStep!.outputIds.length !== 1) return undefined;
  return fusedConvStep(tf, graph, conv, convStep!.outputIds[0], absorbed, owned, pad);
}

/**
 * A grouped conv's kernel. Narrow groups: one depthwise conv and a sum (src/model/custom-layers.ts, the filter
 * rearranged once here), then the bias and activation. Wide groups: the input's channels split into `groups`, each
 * group's filters and bias (sliced once, here) run as one fused conv, the outputs concatenated on the channel axis.
 */
function groupedKernel(
  tf: typeof tfType, cfg: ConvConfig, filter: Tensor, bias: Tensor, owned: Tensor[],
  run: (x: Tensor, parts: { filter: Tensor; bias: Tensor }) => Tensor,
): (x: Tensor) => Tensor {
  const groups = cfg.groups!;
  if (filter.shape[2]! <= DEPTHWISE_GROUP_MAX_CHANNELS) {
    const dw = depthwiseGroupFilter(tf, filter as tfType.Tensor4D, groups);
    owned.push(dw);
    const activate = { linear: (t: Tensor) => t, relu: (t: Tensor) => tf.relu(t), relu6: (t: Tensor) => tf.relu6(t) }[cfg.activation];
    const o = { strides: cfg.strides, padding: cfg.padding, dilations: cfg.dilations };
    return (x) => tf.tidy(() => activate(tf.add(depthwiseGrouped(tf, x as tfType.Tensor4D, dw, groups, o), bias)));
  }
  const filters = tf.split(filter, groups, 3);
  const biases = tf.split(bias, groups, 0);
  owned.push(...filters, ...biases);
  return (x) => {
    const xs = tf.split(x, groups, 3);
    const ys = xs.map((xi, g) => run(xi, { filter: filters[g], bias: biases[g] }));
    const y = tf.concat(ys, 3);
    for (const t of [...xs, ...ys]) t.dispose();
    return y;
  };
}

/**
 * Reshape [P, C/k, k] -> Cropping2D of the C/k axis -> Reshape back with fewer channels (the ONNX
 * importer's slice of the last axis: x.chunk(2, dim=1)) as ONE slice of the input's last axis, or
 * undefined. Three layer calls cost ~3x the slice on this scale (ShuffleNetV2 x0.5: 26 of them a pass),
 * and tfjs-wasm slices the [P, C/k, k] view k values at a time.
 */
function channelSliceStep(tf: typeof tfType, graph: ModelGraph, rows: Layer, outputId: number, absorbed: Set<Layer>): Step | undefined {
  if (rows.getClassName() !== 'Reshape') return undefined;
  const crop = soleConsumer(graph, outputId);
  const cropId = crop?.getClassName() === 'Cropping2D' ? stepOf(graph, crop).outputIds[0] : undefined;
  const back = cropId === undefined ? undefined : soleConsumer(graph, cropId);
  if (!crop || !back || back.getClassName() !== 'Reshape') return undefined;
  const dims = stepOf(graph, rows).inputShapes[0].slice(1) as number[];
  const split = rows.getConfig().targetShape as number[];
  const [P, blocks, k] = split;
  const [[top, bottom], [left, right]] = crop.getConfig().cropping as [[number, number], [number, number]];
  const out = back.getConfig().targetShape as number[];
  const c = dims.length - 1;
  const chain = split.length === 3 && blocks * k === dims[c] && P * dims[c] === dims.reduce((a, b) => a * b, 1) && top === 0 && bottom === 0;
  if (!chain || out.length !== dims.length || out[c] !== (blocks - left - right) * k || out.some((d, i) => i < c && d !== dims[i])) return undefined;
  absorbed.add(crop);
  absorbed.add(back);
  const begin = dims.map((_, i) => (i === c ? left * k : 0));
  return {
    inputIds: stepOf(graph, rows).inputIds,
    outputIds: stepOf(graph, back).outputIds,
    layers: [rows.name, crop.name, back.name],
    run: ([x]) => [tf.slice(x, [0, ...begin], [-1, ...out])],
  };
}

function stepOf(graph: ModelGraph, layer: Layer) {
  const s = graph.steps.find((st) => st.layer === layer);
  if (!s) throw new Error(`layer ${layer.name} is not in the model graph`);
  return s;
}

/** A layer run as itself, as model.predict runs it. */
function layerStep(layer: Layer, inputIds: number[], outputIds: number[]): Step {
  return {
    inputIds,
    outputIds,
    layers: [layer.name],
    run: (ins) => {
      const r = layer.apply(ins.length === 1 ? ins[0] : ins, { training: false }) as Tensor | Tensor[];
      return Array.isArray(r) ? r : [r];
    },
  };
}

/** The inference plan of `model` (see InferencePlan). Models the graph walk cannot take run as model.apply. */
export function inferencePlan(tf: typeof tfType, model: tfType.LayersModel, opts: PlanOptions = {}): InferencePlan {
  let graph: ModelGraph;
  try {
    graph = modelGraph(model);
    if (graph.inputs.length !== 1) throw new Error('several inputs');
  } catch (e) {
    return {
      predict: (x) => tf.tidy(() => {
        const r = model.apply(x, { training: false }) as Tensor | Tensor[];
        return Array.isArray(r) ? r[0] : r;
      }),
      // Step by step needs the graph walk: say why it cannot be taken.
      // eslint-disable-next-line require-yield
      walk: function* () {
        throw e;
      },
      outputLayers: [],
      fused: [],
      dispose: () => undefined,
    };
  }
  const owned: Tensor[] = [];
  const absorbed = new Set<Layer>();
  const fused: FusedConv[] = [];
  const steps: Step[] = [];
  for (const s of graph.steps) {
    if (absorbed.has(s.layer)) continue;
    const fuse = opts.fuse !== false && s.outputIds.length === 1;
    const f = fuse ? fusedConvStep(tf, graph, s.layer, s.outputIds[0], absorbed, owned) ?? paddedConvStep(tf, graph, s.layer, s.outputIds[0], absorbed, owned) : undefined;
    if (f) fused.push(f.fused);
    steps.push(f?.step ?? (fuse ? channelSliceStep(tf, graph, s.layer, s.outputIds[0], absorbed) : undefined) ?? layerStep(s.layer, s.inputIds, s.outputIds));
  }
  // How many steps (plus model outputs) read each tensor, in the fused plan.
  const uses = new Map<number, number>();
  for (const s of steps) for (const id of s.inputIds) uses.set(id, (uses.get(id) ?? 0) + 1);
  for (const id of graph.outputIds) uses.set(id, (uses.get(id) ?? 0) + 1);
  const inputId = graph.inputs[0].id;
  const outputId = graph.outputIds[0];

  function* walk(x: Tensor, hooks: PlanHooks = {}): Generator<PlanStepOutput, Tensor, void> {
    const first = hooks.onInput ? tf.tidy(() => hooks.onInput!(x) ?? x) : x;
    const values = new Map<number, Tensor>([[inputId, first]]);
    const left = new Map(uses);
    const release = (id: number) => {
      const n = (left.get(id) ?? 0) - 1;
      left.set(id, n);
      const v = values.get(id);
      if (n <= 0 && v && v !== x) {
        v.dispose();
        values.delete(id);
      }
    };
    try {
      for (const s of steps) {
        const ins = s.inputIds.map((id) => values.get(id)!);
        const layer = s.layers[s.layers.length - 1];
        const outs = hooks.onOutput
          ? tf.tidy(() => s.run(ins).map((t, i) => (i === 0 ? (hooks.onOutput!(layer, t) ?? t) : t)))
          : tf.tidy(() => s.run(ins));
        s.outputIds.forEach((id, i) => values.set(id, outs[i]));
        yield { layer, layers: s.layers, outputs: outs };
        for (const id of s.inputIds) release(id);
      }
      const y = values.get(outputId)!;
      values.delete(outputId);
      return y === x ? x.clone() : y;
    } finally {
      for (const v of values.values()) if (v !== x) v.dispose();
    }
  }

  function predict(x: Tensor): Tensor {
    const w = walk(x);
    for (;;) {
      const r = w.next();
      if (r.done) return r.value;
    }
  }

  return {
    predict,
    walk,
    outputLayers: steps.map((s) => s.layers[s.layers.length - 1]),
    fused,
    dispose: () => {
      for (const t of owned) t.dispose();
      owned.length = 0;
    },
  };
}
