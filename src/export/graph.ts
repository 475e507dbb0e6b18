import type * as tfType from '@tensorflow/tfjs';
import { ExportError } from './errors.js';

/**
 * The target-neutral op list every exporter writes from. Shapes are per sample in Keras layout
 * (NHWC for images); weights are in Keras layout with BatchNorm already folded in.
 */
export type Activation = 'none' | 'relu' | 'relu6';
export type Padding = 'same' | 'valid';

export interface IrTensor {
  id: number;
  /** Per-sample shape (no batch dimension), Keras layout. */
  shape: number[];
  /** The Keras layer whose output this tensor equals (after fusion, the last fused layer). */
  layer: string;
}

interface OpBase {
  /** The Keras layer that produced the op (the first one when several were fused). */
  layer: string;
  inputs: number[];
  output: number;
}

export interface ConvOp extends OpBase {
  kind: 'conv2d' | 'depthwise';
  /** conv2d: [kh, kw, cin, cout]; depthwise: [kh, kw, cin, multiplier]. */
  kernelShape: [number, number, number, number];
  kernel: Float32Array;
  /** One per output channel (zeros when the layer had none). */
  bias: Float32Array;
  strides: [number, number];
  dilation: [number, number];
  padding: Padding;
  activation: Activation;
  /** Whether a BatchNormalization was folded into the weights (then they differ from the layer's). */
  folded: boolean;
}

export interface DenseOp extends OpBase {
  kind: 'dense';
  /** [in, out]. */
  kernelShape: [number, number];
  kernel: Float32Array;
  bias: Float32Array;
  activation: Activation;
  folded: boolean;
}

export interface PoolOp extends OpBase {
  kind: 'maxpool' | 'avgpool';
  pool: [number, number];
  strides: [number, number];
  padding: Padding;
}

export interface SimpleOp extends OpBase {
  kind: 'gap' | 'softmax' | 'relu' | 'relu6' | 'sigmoid' | 'tanh';
}

export interface ReshapeOp extends OpBase {
  kind: 'reshape';
  /** Per-sample target shape, fully resolved. */
  shape: number[];
}

export interface AddOp extends OpBase {
  kind: 'add';
  activation: Activation;
}

export interface ConcatOp extends OpBase {
  kind: 'concat';
  /** Per-sample axis (0-based, non-negative). */
  axis: number;
}

export type IrOp = ConvOp | DenseOp | PoolOp | SimpleOp | ReshapeOp | AddOp | ConcatOp;
export type WeightOp = ConvOp | DenseOp;

export interface IrGraph {
  name: string;
  tensors: IrTensor[];
  ops: IrOp[];
  input: number;
  output: number;
}

interface LayerConfig {
  name: string;
  className: string;
  config: Record<string, unknown>;
  inboundNodes: Array<Array<[string, number, number, unknown?]>>;
}

const IDENTITY_LAYERS = new Set(['Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'ActivityRegularization']);

const SUPPORTED =
  'Dense, Conv2D, DepthwiseConv2D, SeparableConv2D, BatchNormalization (after a conv/dense), ReLU, Activation (relu/relu6/softmax/sigmoid/tanh/linear), Softmax, Dropout, Flatten, Reshape, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Add, Concatenate';

function pair(v: unknown, fallback?: [number, number]): [number, number] {
  if (v === null || v === undefined) {
    if (fallback) return fallback;
    throw new Error('missing pair');
  }
  if (typeof v === 'number') return [v, v];
  const a = v as number[];
  return [a[0], a.length > 1 ? a[1] : a[0]];
}

function outSize(inp: number, k: number, s: number, d: number, padding: Padding): number {
  const eff = (k - 1) * d + 1;
  return padding === 'same' ? Math.ceil(inp / s) : Math.floor((inp - eff) / s) + 1;
}

/** TF 'SAME' padding: [before, after] for one spatial dimension. */
export function samePads(inp: number, k: number, s: number, d: number): [number, number] {
  const eff = (k - 1) * d + 1;
  const out = Math.ceil(inp / s);
  const total = Math.max((out - 1) * s + eff - inp, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

function dataOf(t: tfType.Tensor): Float32Array {
  return Float32Array.from(t.dataSync() as Float32Array);
}

/**
 * Walks a functional (or sequential) tf.LayersModel into an IrGraph for `target` (used only in
 * error messages). Throws ExportError for anything that cannot be expressed exactly.
 */
export function buildIr(model: tfType.LayersModel, target: string): IrGraph {
  const cfg = (model as unknown as { getConfig(): Record<string, unknown> }).getConfig();
  let layers = cfg.layers as LayerConfig[];
  const fail = (layer: string | undefined, msg: string): never => {
    throw new ExportError(target, layer, msg);
  };
  if (!Array.isArray(layers)) fail(undefined, 'model config has no layer list');
  const sequential = !layers.some((l) => Array.isArray(l.inboundNodes));
  if (sequential) {
    // tf.sequential: a chain; the input layer is implicit.
    const chain: LayerConfig[] = [];
    const first = model.inputs[0];
    chain.push({ name: '__input__', className: 'InputLayer', config: { batchInputShape: first.shape }, inboundNodes: [] });
    let prev = '__input__';
    for (const l of layers) {
      if (l.className === 'InputLayer') continue;
      chain.push({ ...l, name: (l.config.name as string) ?? l.name, inboundNodes: [[[prev, 0, 0]]] });
      prev = (l.config.name as string) ?? l.name;
    }
    layers = chain;
  }
  const byName = new Map<string, tfType.layers.Layer>();
  for (const l of model.layers) byName.set(l.name, l);
  const weightsOf = (name: string): Map<string, tfType.Tensor> => {
    const layer = byName.get(name);
    const out = new Map<string, tfType.Tensor>();
    if (!layer) return out;
    const values = layer.getWeights();
    layer.weights.forEach((w, i) => {
      const short = w.originalName.split('/').pop() as string;
      out.set(short, values[i]);
    });
    return out;
  };

  // Consumers of each layer's output (for fusion decisions).
  const consumers = new Map<string, number>();
  for (const l of layers) {
    if (l.inboundNodes.length > 1) fail(l.name, `a shared layer (called ${l.inboundNodes.length} times) is not supported; give each call its own layer`);
    for (const node of l.inboundNodes) for (const [src] of node) consumers.set(src, (consumers.get(src) ?? 0) + 1);
  }
  const outputLayers = sequential ? [layers[layers.length - 1].name] : (cfg.outputLayers as Array<[string, number, number]>).map((o) => o[0]);
  for (const o of outputLayers) consumers.set(o, (consumers.get(o) ?? 0) + 1);
  if (outputLayers.length !== 1) fail(undefined, `models with ${outputLayers.length} outputs are not supported; export one output`);

  const tensors: IrTensor[] = [];
  const ops: IrOp[] = [];
  const tensorOf = new Map<string, number>();
  /** The op that produced each tensor. */
  const producer = new Map<number, IrOp>();
  let input = -1;
  const newTensor = (shape: number[], layer: string): number => {
    tensors.push({ id: tensors.length, shape, layer });
    return tensors.length - 1;
  };
  const emit = (op: IrOp) => {
    ops.push(op);
    producer.set(op.output, op);
  };
  const inputsOf = (l: LayerConfig): number[] =>
    (l.inboundNodes[0] ?? []).map(([src]) => {
      const t = tensorOf.get(src);
      if (t === undefined) fail(l.name, `input '${src}' was not produced before this layer`);
      return t as number;
    });
  const single = (l: LayerConfig): number => {
    const ins = inputsOf(l);
    if (ins.length !== 1) fail(l.name, `expected one input, got ${ins.length}`);
    return ins[0];
  };
  /** The fusable op that produced `t`, if `t` feeds only the layer being processed. */
  const fusable = (t: number): IrOp | undefined => {
    const op = producer.get(t);
    if (!op) return undefined;
    if ((consumers.get(tensors[t].layer) ?? 0) !== 1) return undefined;
    return op;
  };
  const parseActivation = (l: LayerConfig, a: unknown): Activation | 'softmax' | 'sigmoid' | 'tanh' => {
    const name = (a ?? 'linear') as string;
    switch (name) {
      case 'linear':
        return 'none';
      case 'relu':
      case 'relu6':
      case 'softmax':
      case 'sigmoid':
      case 'tanh':
        return name;
      default:
        return fail(l.name, `activation '${name}' is not supported; use relu, relu6, softmax, sigmoid, tanh or linear`);
    }
  };
  /** Applies a layer's own activation after its main op. */
  const applyActivation = (l: LayerConfig, op: ConvOp | DenseOp | AddOp, act: ReturnType<typeof parseActivation>) => {
    if (act === 'none' || act === 'relu' || act === 'relu6') {
      op.activation = act;
      emit(op);
      tensorOf.set(l.name, op.output);
      return;
    }
    const mid = op.output;
    emit(op);
    const out = newTensor(tensors[mid].shape.slice(), l.name);
    tensors[mid].layer = `${l.name}#preactivation`;
    emit({ kind: act, layer: l.name, inputs: [mid], output: out });
    tensorOf.set(l.name, out);
  };

  for (const l of layers) {
    const c = l.config;
    const cls = l.className;
    if (c.dataFormat !== undefined && c.dataFormat !== 'channelsLast') fail(l.name, `data format ${String(c.dataFormat)} is not supported; use channelsLast`);
    switch (cls) {
      case 'InputLayer': {
        if (input >= 0) fail(l.name, 'models with more than one input are not supported');
        const shape = (c.batchInputShape as Array<number | null>).slice(1);
        if (shape.some((d) => d === null)) fail(l.name, `input shape [${shape}] has unknown dimensions; give a fixed per-sample shape`);
        input = newTensor(shape as number[], '__input__');
        tensorOf.set(l.name, input);
        break;
      }
      case 'Dense': {
        const x = single(l);
        const inShape = tensors[x].shape;
        if (inShape.length !== 1) fail(l.name, `Dense on a rank-${inShape.length + 1} input is not supported; add a Flatten before it`);
        const w = weightsOf(l.name);
        const kernel = w.get('kernel') as tfType.Tensor;
        const [kin, units] = kernel.shape as number[];
        const out = newTensor([units], l.name);
        const op: DenseOp = {
          kind: 'dense', layer: l.name, inputs: [x], output: out, kernelShape: [kin, units], kernel: dataOf(kernel),
          bias: w.has('bias') ? dataOf(w.get('bias') as tfType.Tensor) : new Float32Array(units), activation: 'none', folded: false,
        };
        applyActivation(l, op, parseActivation(l, c.activation));
        break;
      }
      case 'Conv2D':
      case 'DepthwiseConv2D':
      case 'SeparableConv2D': {
        const x = single(l);
        const inShape = tensors[x].shape;
        if (inShape.length !== 3) fail(l.name, `${cls} needs an image input [H, W, C], got [${inShape}]`);
        const strides = pair(c.strides, [1, 1]);
        const dilation = pair(c.dilationRate, [1, 1]);
        const padding = c.padding as string;
        if (padding !== 'same' && padding !== 'valid') fail(l.name, `padding '${padding}' is not supported; use same or valid`);
        if ((dilation[0] > 1 || dilation[1] > 1) && (strides[0] > 1 || strides[1] > 1)) fail(l.name, 'dilation with stride > 1 is not supported');
        const w = weightsOf(l.name);
        const act = parseActivation(l, c.activation);
        const [H, W, C] = inShape;
        if (cls === 'Conv2D') {
          const kernel = w.get('kernel') as tfType.Tensor;
          const [kh, kw, ci, co] = kernel.shape as number[];
          const oh = outSize(H, kh, strides[0], dilation[0], padding as Padding);
          const ow = outSize(W, kw, strides[1], dilation[1], padding as Padding);
          const out = newTensor([oh, ow, co], l.name);
          applyActivation(l, {
            kind: 'conv2d', layer: l.name, inputs: [x], output: out, kernelShape: [kh, kw, ci, co], kernel: dataOf(kernel),
            bias: w.has('bias') ? dataOf(w.get('bias') as tfType.Tensor) : new Float32Array(co), strides, dilation,
            padding: padding as Padding, activation: 'none', folded: false,
          }, act);
        } else {
          const dk = w.get('depthwise_kernel') as tfType.Tensor;
          const [kh, kw, ci, mult] = dk.shape as number[];
          if (ci !== C) fail(l.name, `kernel expects ${ci} channels, input has ${C}`);
          const oh = outSize(H, kh, strides[0], dilation[0], padding as Padding);
          const ow = outSize(W, kw, strides[1], dilation[1], padding as Padding);
          if (cls === 'DepthwiseConv2D') {
            const out = newTensor([oh, ow, ci * mult], l.name);
            applyActivation(l, {
              kind: 'depthwise', layer: l.name, inputs: [x], output: out, kernelShape: [kh, kw, ci, mult], kernel: dataOf(dk),
              bias: w.has('bias') ? dataOf(w.get('bias') as tfType.Tensor) : new Float32Array(ci * mult), strides, dilation,
              padding: padding as Padding, activation: 'none', folded: false,
            }, act);
          } else {
            // SeparableConv2D = depthwise (no bias) followed by a 1x1 pointwise conv with the bias.
            const pk = w.get('pointwise_kernel') as tfType.Tensor;
            const co = (pk.shape as number[])[3];
            const mid = newTensor([oh, ow, ci * mult], `${l.name}#depthwise`);
            emit({
              kind: 'depthwise', layer: l.name, inputs: [x], output: mid, kernelShape: [kh, kw, ci, mult], kernel: dataOf(dk),
              bias: new Float32Array(ci * mult), strides, dilation, padding: padding as Padding, activation: 'none', folded: false,
            });
            const out = newTensor([oh, ow, co], l.name);
            applyActivation(l, {
              kind: 'conv2d', layer: `${l.name}#pointwise`, inputs: [mid], output: out, kernelShape: [1, 1, ci * mult, co], kernel: dataOf(pk),
              bias: w.has('bias') ? dataOf(w.get('bias') as tfType.Tensor) : new Float32Array(co), strides: [1, 1], dilation: [1, 1],
              padding: 'valid', activation: 'none', folded: false,
            }, act);
          }
        }
        break;
      }
      case 'BatchNormalization': {
        const x = single(l);
        const rank = tensors[x].shape.length;
        const axis = typeof c.axis === 'number' ? c.axis : (c.axis as number[])[0];
        if (axis !== -1 && axis !== rank) fail(l.name, `BatchNormalization over axis ${axis} is not supported; normalise the last (channel) axis`);
        const prev = fusable(x);
        if (!prev || (prev.kind !== 'conv2d' && prev.kind !== 'depthwise' && prev.kind !== 'dense') || prev.activation !== 'none') {
          fail(l.name, 'BatchNormalization can only be exported folded into a directly preceding Conv2D, DepthwiseConv2D or Dense layer with linear activation and no other consumers; move it there');
        }
        const op = prev as WeightOp;
        const w = weightsOf(l.name);
        const ch = tensors[x].shape[rank - 1];
        const gamma = w.has('gamma') ? dataOf(w.get('gamma') as tfType.Tensor) : new Float32Array(ch).fill(1);
        const beta = w.has('beta') ? dataOf(w.get('beta') as tfType.Tensor) : new Float32Array(ch);
        const mean = dataOf(w.get('moving_mean') as tfType.Tensor);
        const variance = dataOf(w.get('moving_variance') as tfType.Tensor);
        const eps = (c.epsilon as number) ?? 1e-3;
        const k = new Float64Array(ch);
        for (let i = 0; i < ch; i++) k[i] = gamma[i] / Math.sqrt(variance[i] + eps);
        // Output channel index of each kernel element is the position along the last axis
        // (depthwise: channel = i * mult + m, which is also the flat index modulo cin*mult).
        const kernel = op.kernel;
        for (let i = 0; i < kernel.length; i++) kernel[i] = kernel[i] * k[i % ch];
        for (let i = 0; i < ch; i++) op.bias[i] = (op.bias[i] - mean[i]) * k[i] + beta[i];
        op.folded = true;
        tensors[x].layer = l.name;
        tensorOf.set(l.name, x);
        break;
      }
      case 'ReLU':
      case 'Activation':
      case 'Softmax': {
        const x = single(l);
        let act: ReturnType<typeof parseActivation>;
        if (cls === 'ReLU') {
          const max = c.maxValue as number | null | undefined;
          if (max === null || max === undefined) act = 'relu';
          else if (max === 6) act = 'relu6';
          else return fail(l.name, `ReLU with maxValue ${max} is not supported; use maxValue 6 or none`);
        } else if (cls === 'Softmax') {
          const axis = (c.axis as number | undefined) ?? -1;
          if (axis !== -1 && axis !== tensors[x].shape.length) fail(l.name, 'Softmax over a non-last axis is not supported');
          act = 'softmax';
        } else act = parseActivation(l, c.activation);
        if (act === 'none') {
          tensorOf.set(l.name, x);
          tensors[x].layer = l.name;
          break;
        }
        const prev = fusable(x);
        if ((act === 'relu' || act === 'relu6') && prev && (prev.kind === 'conv2d' || prev.kind === 'depthwise' || prev.kind === 'dense' || prev.kind === 'add') && prev.activation === 'none') {
          prev.activation = act;
          tensors[x].layer = l.name;
          tensorOf.set(l.name, x);
          break;
        }
        const out = newTensor(tensors[x].shape.slice(), l.name);
        emit({ kind: act, layer: l.name, inputs: [x], output: out });
        tensorOf.set(l.name, out);
        break;
      }
      case 'Flatten':
      case 'Reshape': {
        const x = single(l);
        const size = tensors[x].shape.reduce((a, b) => a * b, 1);
        let shape: number[];
        if (cls === 'Flatten') shape = [size];
        else {
          shape = (c.targetShape as number[]).slice();
          const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
          shape = shape.map((d) => (d === -1 ? size / known : d));
          if (shape.reduce((a, b) => a * b, 1) !== size) fail(l.name, `cannot reshape [${tensors[x].shape}] to [${c.targetShape as number[]}]`);
        }
        if (shape.length === tensors[x].shape.length && shape.every((d, i) => d === tensors[x].shape[i])) {
          tensorOf.set(l.name, x);
          break;
        }
        const out = newTensor(shape, l.name);
        emit({ kind: 'reshape', layer: l.name, inputs: [x], output: out, shape });
        tensorOf.set(l.name, out);
        break;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        const x = single(l);
        const inShape = tensors[x].shape;
        if (inShape.length !== 3) fail(l.name, `${cls} needs an image input [H, W, C]`);
        const pool = pair(c.poolSize, [2, 2]);
        const strides = pair(c.strides, pool);
        const padding = c.padding as Padding;
        if (padding !== 'same' && padding !== 'valid') fail(l.name, `padding '${String(padding)}' is not supported`);
        const out = newTensor([outSize(inShape[0], pool[0], strides[0], 1, padding), outSize(inShape[1], pool[1], strides[1], 1, padding), inShape[2]], l.name);
        emit({ kind: cls === 'MaxPooling2D' ? 'maxpool' : 'avgpool', layer: l.name, inputs: [x], output: out, pool, strides, padding });
        tensorOf.set(l.name, out);
        break;
      }
      case 'GlobalAveragePooling2D': {
        const x = single(l);
        const inShape = tensors[x].shape;
        if (inShape.length !== 3) fail(l.name, 'GlobalAveragePooling2D needs an image input [H, W, C]');
        if (c.keepDims === true) fail(l.name, 'keepDims=true is not supported; use the default (false)');
        const out = newTensor([inShape[2]], l.name);
        emit({ kind: 'gap', layer: l.name, inputs: [x], output: out });
        tensorOf.set(l.name, out);
        break;
      }
      case 'Add':
      case 'Concatenate': {
        const ins = inputsOf(l);
        const shapes = ins.map((t) => tensors[t].shape);
        const rank = shapes[0].length;
        if (cls === 'Add') {
          if (ins.length !== 2) fail(l.name, `Add of ${ins.length} inputs is not supported; chain two-input Adds`);
          if (!shapes.every((s) => s.length === rank && s.every((d, i) => d === shapes[0][i]))) fail(l.name, 'Add with broadcasting is not supported; give both inputs the same shape');
          const out = newTensor(shapes[0].slice(), l.name);
          emit({ kind: 'add', layer: l.name, inputs: ins, output: out, activation: 'none' });
          tensorOf.set(l.name, out);
        } else {
          let axis = (c.axis as number | undefined) ?? -1;
          axis = axis < 0 ? rank + axis : axis - 1; // Keras axis counts the batch dimension
          if (axis < 0 || axis >= rank) fail(l.name, `concatenation axis ${String(c.axis)} is out of range`);
          const shape = shapes[0].slice();
          shape[axis] = shapes.reduce((a, s) => a + s[axis], 0);
          const out = newTensor(shape, l.name);
          emit({ kind: 'concat', layer: l.name, inputs: ins, output: out, axis });
          tensorOf.set(l.name, out);
        }
        break;
      }
      default: {
        if (IDENTITY_LAYERS.has(cls)) {
          const x = single(l);
          tensors[x].layer = l.name;
          tensorOf.set(l.name, x);
          break;
        }
        fail(l.name, `layer type ${cls} is not supported (supported: ${SUPPORTED}); replace or remove it before export`);
      }
    }
  }
  const output = tensorOf.get(outputLayers[0]);
  if (input < 0 || output === undefined) fail(undefined, 'model has no input or output');
  return { name: model.name, tensors, ops, input, output: output as number };
}

export function shapeSize(s: number[]): number {
  return s.reduce((a, b) => a * b, 1);
}
