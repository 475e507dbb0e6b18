import type * as tfType from '@tensorflow/tfjs';
import { InputError } from '../../errors/input-error.js';
import { sanitizeLayerName } from './common.js';
import { layerFromConfig } from '../rebuild.js';
import { applyFusions } from './onnx-fuse.js';
import { OPS, supportedOps } from './onnx-ops.js';
import { dataTypeName, type AttrValue, type Const, type OnnxGraph, type OnnxNode } from './onnx-read.js';

/**
 * Converts an ONNX graph into a tf.LayersModel built from standard Keras layer classes.
 *
 * Every computed tensor is a `Sym`: a tfjs SymbolicTensor plus the ONNX tensor it stands for
 * (its shape, batch first) and how the two relate (`layout`):
 *  - `nchw`:  ONNX [N, C, H, W], tfjs [N, H, W, C] (every image tensor: Keras layers are NHWC);
 *  - `plain`: same shape and element order;
 *  - `gap`:   ONNX [N, C, 1, 1], tfjs [N, C] (a global pooling's output; same element order);
 *  - `flat`:  ONNX [N, C*H*W] (flattened in C, H, W order), tfjs [N, H*W*C] (flattened NHWC);
 *             a Dense reading it takes its kernel rows permuted, anything else gets a Permute.
 * Constants (initializers, Constant nodes and whatever folds from them) stay typed arrays.
 * Each ONNX op is one entry of the table in onnx-ops.ts; fused patterns are in onnx-fuse.ts.
 */

export type Layout = 'nchw' | 'plain' | 'gap' | 'flat';

export interface Sym {
  kind: 'sym';
  t: tfType.SymbolicTensor;
  /** The ONNX tensor's shape; the batch dimension is 1 here (it stays free in the Keras model). */
  shape: number[];
  layout: Layout;
  /** For `flat`: the rank-4 `nchw` value that was flattened. */
  src?: Sym;
  /**
   * A known lower bound of the values (0 after ReLU / sigmoid, -1 after tanh...), or undefined: with
   * one, a max pool's -inf padding can be zero padding of the input shifted to be non-negative.
   */
  lower?: number;
}

export interface ConstVal {
  kind: 'const';
  c: Const;
}

export type Val = Sym | ConstVal;

export interface ImportInfo {
  /** A Softmax layer was added after the ONNX output (logits or log-probabilities), so the model outputs probabilities. */
  appendedSoftmax: boolean;
  /** How the Keras model's input relates to the ONNX input: `nchw` means the ONNX input is NCHW and the model takes NHWC. */
  inputLayout: 'nchw' | 'plain';
  /** `nhwc` when the ONNX output is rank-4 NCHW and the model's output is its NHWC transpose. */
  outputLayout: 'nhwc' | 'plain';
  /** ONNX input / output shapes with the batch dimension as -1. */
  inputShape: number[];
  outputShape: number[];
  inputName: string;
  outputName: string;
  /** The ONNX input's batch size when it is fixed (no dynamic batch axis), else null. */
  fixedBatch: number | null;
  irVersion: number;
  opset: number;
  producer: string;
  nodes: number;
}

export interface NodeCtx {
  readonly tf: typeof tfType;
  readonly node: OnnxNode;
  readonly opset: number;
  /** The model input's fixed batch size (exported without a dynamic batch axis), else null; the batch is 1 here. */
  readonly fixedBatch: number | null;
  /** Number of inputs the node names (trailing optional ones may be empty). */
  readonly arity: number;
  has(i: number): boolean;
  val(i: number): Val;
  sym(i: number): Sym;
  const(i: number): Const;
  /** A constant input's integer values (shapes, axes, pads...). */
  ints(i: number): number[];
  isConst(i: number): boolean;
  attrInt(name: string, def?: number): number;
  attrInts(name: string, def?: number[]): number[];
  attrFloat(name: string, def?: number): number;
  attrStr(name: string, def?: string): string;
  attr(name: string): AttrValue;
  out(v: Val, i?: number): void;
  outConst(c: Const, i?: number): void;
  /** Throws an InputError naming the node, its op type and the opset. */
  fail(msg: string, hint?: string): never;
  /** Adds a tf.layers layer (by its factory name, e.g. 'conv2d') applied to `inputs`, with initial weights. */
  layer(factory: string, config: Record<string, unknown>, inputs: tfType.SymbolicTensor | tfType.SymbolicTensor[], weights?: Array<{ data: Float32Array; shape: number[] }>, suffix?: string): tfType.SymbolicTensor;
  /** The value as an NHWC tensor (ONNX rank-4 NCHW). */
  nhwc(s: Sym): tfType.SymbolicTensor;
  /** The value with the ONNX element order and shape. */
  plain(s: Sym): tfType.SymbolicTensor;
  /** Base name for layers made from this node (the PyTorch module path when the weights name one). */
  baseName(): string;
}


/**
 * A layer name a PyTorch user recognises: the module path. From the weight's name (`conv1.weight`
 * -> `conv1`) or, when the exporter renamed folded weights (`onnx::Conv_12`), from torch's scoped
 * node name (`/features/features.1/conv/conv.0/conv.0.0/Conv` -> `features.1.conv.0.0`); nodes
 * without weights get their op type after the path (`layer1.0/Add`).
 */
function layerBaseName(node: OnnxNode, values: Map<string, Val>): string {
  const w = node.inputs[1];
  const m = w && !w.startsWith('onnx::') && /^(.+)\.(weight|kernel)$/.exec(w);
  if (m) return sanitizeLayerName(m[1]);
  if (!node.name.startsWith('/')) return sanitizeLayerName(node.name);
  const levels = node.name.split('/').filter(Boolean);
  const op = levels.pop() ?? node.opType;
  const path: string[] = [];
  for (const l of levels) {
    if (path.length && l.startsWith(`${path[path.length - 1]}.`)) path[path.length - 1] = l;
    else path.push(l);
  }
  const module = path.join('.');
  const weighted = w !== undefined && w !== '' && values.get(w)?.kind === 'const';
  return sanitizeLayerName(module ? (weighted ? module : `${module}/${op}`) : op);
}

export function nodeError(g: Pick<OnnxGraph, 'file' | 'opset'>, node: OnnxNode, msg: string, hint?: string): InputError {
  return new InputError(`node '${node.name}' (${node.opType}, opset ${g.opset}): ${msg}`, { file: g.file, ...(hint ? { hint } : {}) });
}

/**
 * Builds the Keras model. Weights are owned by the model; nothing else is left allocated.
 * `reference` computes exactly the ONNX output (it shares the model's layers): when a Softmax was
 * appended to a classifier's logits, it is the model without it; else the model itself.
 */
export function convertOnnx(tf: typeof tfType, g: OnnxGraph, opts: { softmax?: boolean } = {}): { model: tfType.LayersModel; reference: tfType.LayersModel; info: ImportInfo } {
  const fail = (msg: string, hint?: string): never => {
    throw new InputError(msg, { file: g.file, ...(hint ? { hint } : {}) });
  };
  if (g.inputs.length !== 1) fail(`the model has ${g.inputs.length} inputs (${g.inputs.map((i) => i.name).join(', ')}); compress imports models with one input`);
  if (g.outputs.length !== 1) fail(`the model has ${g.outputs.length} outputs (${g.outputs.map((o) => o.name).join(', ')}); compress imports models with one output`, 'export only the output the classifier returns');
  const input = g.inputs[0];
  if (input.elemType !== 1) fail(`input '${input.name}' is ${dataTypeName(input.elemType)}; only float32 inputs are supported`);
  if (input.dims.length < 2) fail(`input '${input.name}' has rank ${input.dims.length}; expected a batch axis and at least one feature axis`);
  input.dims.slice(1).forEach((d, i) => {
    if (typeof d !== 'number') {
      fail(`input '${input.name}' has a dynamic dimension ${i + 1} (${d ?? 'unknown'}): only the batch axis may be dynamic`, 'export with fixed input sizes: torch.onnx.export(..., dynamic_axes={"input": {0: "batch"}})');
    }
  });
  const inShape = [1, ...(input.dims.slice(1) as number[])];
  // A rank-4 input is NCHW, unless the model transposes it to NCHW first (x.permute(0, 3, 1, 2), tf2onnx's
  // Keras conversions): then it already takes channels-last images, as the Keras model does.
  const imageInput = inShape.length === 4 && !channelsLastInput(g, input.name);
  const inp = tf.input({ shape: imageInput ? [inShape[2], inShape[3], inShape[1]] : inShape.slice(1), name: sanitizeLayerName(input.name) || 'input' });
  const values = new Map<string, Val>();
  values.set(input.name, { kind: 'sym', t: inp, shape: inShape, layout: imageInput ? 'nchw' : 'plain' });
  for (const [name, c] of g.initializers) values.set(name, { kind: 'const', c });

  const usedNames = new Set<string>([inp.name]);
  const weightTensors: tfType.Tensor[] = [];
  const nodes = applyFusions(g);
  try {
    for (const node of nodes) convertNode(tf, g, node, values, usedNames, weightTensors);
    const outName = g.outputs[0].name;
    const out = values.get(outName);
    if (!out) fail(`output '${outName}' is not produced by any node`);
    if (out!.kind === 'const') fail(`output '${outName}' is a constant: the model does not depend on its input`);
    const o = out as Sym;
    // A flattened image leaves in ONNX order (a Permute before the Flatten); others as they are.
    const t = o.layout === 'flat' ? makeCtx(tf, g, nodes[nodes.length - 1], values, usedNames, weightTensors).plain(o) : o.t;
    const name = sanitizeLayerName(g.file.split(/[\\/]/).pop()!.replace(/\.onnx$/i, '')) || 'onnx_model';
    // compress trains and evaluates on probabilities; PyTorch classifiers end in logits (or log-probabilities).
    const producer = nodes.find((n) => n.outputs.includes(outName));
    const appendSoftmax = opts.softmax !== false && o.shape.length === 2 && producer?.opType !== 'Softmax';
    let y = t;
    if (appendSoftmax) {
      let sm = 'softmax';
      for (let k = 1; usedNames.has(sm); k++) sm = `softmax_${k}`;
      // softmax(log_softmax(z)) = softmax(z): a model ending in F.log_softmax (PyTorch's MNIST example) gets its
      // softmax on the logits, and the LogSoftmax layer, which no export target writes, leaves the model.
      const logits = producer?.opType === 'LogSoftmax' && t.inputs.length === 1 ? t.inputs[0] : t;
      y = tf.layers.activation({ activation: 'softmax', name: sm }).apply(logits) as tfType.SymbolicTensor;
    }
    const model = tf.model({ inputs: inp, outputs: y, name });
    return {
      model,
      reference: appendSoftmax ? tf.model({ inputs: inp, outputs: t, name: `${name}_as_exported` }) : model,
      info: {
        appendedSoftmax: appendSoftmax,
        inputLayout: imageInput ? 'nchw' : 'plain',
        outputLayout: o.layout === 'nchw' ? 'nhwc' : 'plain',
        inputShape: [-1, ...inShape.slice(1)],
        outputShape: [-1, ...o.shape.slice(1)],
        inputName: input.name,
        outputName: outName,
        fixedBatch: typeof input.dims[0] === 'number' ? input.dims[0] : null,
        irVersion: g.irVersion,
        opset: g.opset,
        producer: g.producer,
        nodes: g.nodes.length,
      },
    };
  } finally {
    for (const w of weightTensors) w.dispose();
  }
}

/** Whether every node reading the graph input `name` is a Transpose to NCHW (perm [0, 3, 1, 2]). */
function channelsLastInput(g: OnnxGraph, name: string): boolean {
  const readers = g.nodes.filter((n) => n.inputs.includes(name));
  return readers.length > 0 && readers.every((n) => n.opType === 'Transpose' && (n.attrs.get('perm') as number[] | undefined)?.join() === '0,3,1,2');
}

/** Ops of quantized ONNX models (onnxruntime's quantizer, compress's own int8 exports): imported models are float. */
const QUANTIZED_OPS = /^(QuantizeLinear|DequantizeLinear|DynamicQuantizeLinear|QLinear\w+|ConvInteger|MatMulInteger|QGemm|QAttention)$/;

function convertNode(tf: typeof tfType, g: OnnxGraph, node: OnnxNode, values: Map<string, Val>, usedNames: Set<string>, weightTensors: tfType.Tensor[]): void {
  const entry = node.domain === '' || node.domain === 'ai.onnx' || node.domain === 'compress' ? OPS[node.opType] : undefined;
  if (!entry) {
    const op = `op '${node.domain ? `${node.domain}.` : ''}${node.opType}' is not supported`;
    if (QUANTIZED_OPS.test(node.opType)) throw nodeError(g, node, `${op}: this is a quantized ONNX model (QDQ / QLinear / integer ops)`, 'import the float model it was quantized from; compress quantizes it itself (quantize stage, int8 exports)');
    throw nodeError(g, node, op, `supported ops: ${supportedOps().join(', ')}. Replace the module in PyTorch before exporting, or export at another opset`);
  }
  for (const name of node.inputs) {
    if (name !== '' && !values.has(name)) throw nodeError(g, node, `reads '${name}', which no earlier node produces (the graph is not topologically sorted or is incomplete)`);
  }
  const ctx = makeCtx(tf, g, node, values, usedNames, weightTensors);
  const present = node.inputs.filter((n) => n !== '');
  const allConst = present.every((n) => values.get(n)!.kind === 'const');
  if (allConst && entry.fold) {
    entry.fold(ctx);
    return;
  }
  if (!entry.convert) ctx.fail('is supported only when all its inputs are constants (it appears here on a computed tensor)', 'simplify the exported graph (e.g. onnxsim) or avoid this op in forward()');
  entry.convert!(ctx);
  for (const o of node.outputs.slice(0, 1)) if (o !== '' && !values.has(o)) ctx.fail('produced no output (internal error)');
}

function makeCtx(tf: typeof tfType, g: OnnxGraph, node: OnnxNode, values: Map<string, Val>, usedNames: Set<string>, weightTensors: tfType.Tensor[]): NodeCtx {
  const fail = (msg: string, hint?: string): never => {
    throw nodeError(g, node, msg, hint);
  };
  const nameOf = (i: number): string => node.inputs[i] ?? '';
  const ctx: NodeCtx = {
    tf,
    node,
    opset: g.opset,
    fixedBatch: typeof g.inputs[0]?.dims[0] === 'number' ? g.inputs[0].dims[0] : null,
    arity: node.inputs.length,
    has: (i) => nameOf(i) !== '',
    val(i) {
      const v = values.get(nameOf(i));
      if (!v) return fail(`input ${i} is missing`);
      return v;
    },
    sym(i) {
      const v = ctx.val(i);
      if (v.kind !== 'sym') return fail(`input ${i} ('${nameOf(i)}') is a constant where a computed tensor is expected`);
      return v;
    },
    const(i) {
      const v = ctx.val(i);
      if (v.kind !== 'const') return fail(`input ${i} ('${nameOf(i)}') must be a constant (it is computed from the model's input)`, 'only the batch axis may depend on the input; export with fixed sizes');
      return v.c;
    },
    ints: (i) => Array.from(ctx.const(i).data),
    isConst: (i) => values.get(nameOf(i))?.kind === 'const',
    attr: (name) => node.attrs.get(name),
    attrInt(name, def) {
      const v = node.attrs.get(name);
      if (v === undefined) return def !== undefined ? def : fail(`attribute '${name}' is missing`);
      if (typeof v !== 'number') return fail(`attribute '${name}' should be an integer`);
      return v;
    },
    attrInts(name, def) {
      const v = node.attrs.get(name);
      if (v === undefined) return def !== undefined ? def : fail(`attribute '${name}' is missing`);
      if (!Array.isArray(v)) return fail(`attribute '${name}' should be a list of integers`);
      return v as number[];
    },
    attrFloat(name, def) {
      const v = node.attrs.get(name);
      if (v === undefined) return def !== undefined ? def : fail(`attribute '${name}' is missing`);
      if (typeof v !== 'number') return fail(`attribute '${name}' should be a number`);
      return v;
    },
    attrStr(name, def) {
      const v = node.attrs.get(name);
      if (v === undefined) return def !== undefined ? def : fail(`attribute '${name}' is missing`);
      if (typeof v !== 'string') return fail(`attribute '${name}' should be a string`);
      return v;
    },
    out(v, i = 0) {
      const name = node.outputs[i];
      if (name) values.set(name, v);
    },
    outConst(c, i = 0) {
      ctx.out({ kind: 'const', c }, i);
    },
    fail,
    baseName() {
      return layerBaseName(node, values) || node.opType.toLowerCase();
    },
    layer(factory, config, inputs, weights, suffix) {
      let base = ctx.baseName() + (suffix ? `_${suffix}` : '');
      let name = base;
      for (let k = 1; usedNames.has(name); k++) name = `${base}_${k}`;
      usedNames.add(name);
      // A tf.layers factory, or a class compress registers (GroupedConv2D) by its name.
      const make = (tf.layers as unknown as Record<string, (c: object) => tfType.layers.Layer>)[factory] ?? ((c: object) => layerFromConfig(tf, factory, c as Record<string, unknown>, factory));
      const ws = weights?.map((w) => tf.tensor(w.data, w.shape));
      if (ws) weightTensors.push(...ws);
      const layer = make({ ...config, name, ...(ws ? { weights: ws } : {}) });
      return layer.apply(inputs) as tfType.SymbolicTensor;
    },
    nhwc(s) {
      if (s.shape.length !== 4) return fail(`expects a rank-4 NCHW tensor, got shape [${s.shape.join(', ')}]`);
      switch (s.layout) {
        case 'nchw':
          return s.t;
        case 'gap':
          return ctx.layer('reshape', { targetShape: [1, 1, s.shape[1]] }, s.t, undefined, 'nhwc');
        case 'plain':
          return ctx.layer('permute', { dims: [2, 3, 1] }, s.t, undefined, 'nhwc');
        default:
          return fail(`cannot view a ${s.layout} tensor as NCHW`);
      }
    },
    plain(s) {
      switch (s.layout) {
        case 'plain':
          return s.t;
        case 'nchw':
          return ctx.layer('permute', { dims: [3, 1, 2] }, s.t, undefined, 'nchw');
        case 'gap':
          return ctx.layer('reshape', { targetShape: s.shape.slice(1) }, s.t, undefined, 'nchw');
        case 'flat':
          return ctx.layer('flatten', {}, ctx.plain(s.src!), undefined, 'flat');
      }
    },
  };
  return ctx;
}
