import type * as tfType from '@tensorflow/tfjs';
import { binary, broadcastShape, concat, constOf, reshapeTarget, slice, transpose } from './onnx-fold.js';
import type { Const } from './onnx-read.js';

/**
 * The TF op table of the graph-model importer: one entry per TF op, each with its conversion into standard
 * Keras layers (`convert`, when an input is computed) and/or its constant folding (`fold`, when every input is
 * a constant). TF graphs are NHWC like Keras, so tensors keep their shape and element order throughout.
 * Semantics follow tfjs-converter's op executors (operations/executors/*.js), the reference the import is checked against.
 */

type ST = tfType.SymbolicTensor;

/** A computed tensor (TF and Keras agree on its shape and element order). */
export interface Sym {
  kind: 'sym';
  t: ST;
}
export interface ConstVal {
  kind: 'const';
  c: Const;
}
export type Val = Sym | ConstVal;

export interface GraphCtx {
  readonly tf: typeof tfType;
  readonly op: string;
  /** Number of data inputs. */
  readonly arity: number;
  sym(i: number): Sym;
  const(i: number): Const;
  ints(i: number): number[];
  isConst(i: number): boolean;
  attrStr(name: string, def?: string): string;
  attrStrs(name: string): string[];
  attrInts(name: string, def?: number[]): number[];
  attrFloat(name: string, def?: number): number;
  attrInt(name: string, def?: number): number;
  attrBool(name: string, def?: boolean): boolean;
  out(v: Val, i?: number): void;
  /** Throws an InputError naming the node and its op. */
  fail(msg: string, hint?: string): never;
  /** Adds a tf.layers layer (factory name, e.g. 'conv2d') applied to `inputs`, with initial weights. */
  layer(factory: string, config: Record<string, unknown>, inputs: ST | ST[], weights?: Array<{ data: Float32Array; shape: number[] }>, suffix?: string): ST;
}

export interface OpEntry {
  /** The value is set before conversion (Placeholder, Const). */
  source?: true;
  fold?(c: GraphCtx): void;
  convert?(c: GraphCtx): void;
}

const F32 = (n: number, v = 0): Float32Array => new Float32Array(n).fill(v);
const dimsOf = (s: Sym): number[] => s.t.shape.slice(1) as number[];
const channels = (s: Sym): number => dimsOf(s)[dimsOf(s).length - 1];
const sym = (t: ST): Sym => ({ kind: 'sym', t });
const f32 = (c: Const): Float32Array => Float32Array.from(c.data);

// ---------------------------------------------------------------------------------------------
// Activations: one entry per TF activation op; the same entries compute _Fused*'s fused activation.

type Act = (c: GraphCtx, s: Sym, extra?: Const) => Sym;

const activationLayer = (name: string): Act => (c, s) => sym(c.layer('activation', { activation: name }, s.t, undefined, name));

const ACTIVATIONS: Record<string, Act> = {
  Relu: activationLayer('relu'),
  Relu6: (c, s) => sym(c.layer('reLU', { maxValue: 6 }, s.t, undefined, 'relu6')),
  Elu: activationLayer('elu'),
  Sigmoid: activationLayer('sigmoid'),
  Tanh: activationLayer('tanh'),
  LeakyRelu: (c, s) => sym(c.layer('leakyReLU', { alpha: c.attrFloat('leakyrelu_alpha', c.attrFloat('alpha', 0.2)) }, s.t, undefined, 'leaky_relu')),
  Prelu: (c, s, alpha) => {
    const C = channels(s);
    if (!alpha || alpha.data.length !== C) return c.fail(`PReLU alpha of shape [${alpha?.dims.join(', ') ?? ''}] is not one value per channel (${C})`);
    const rank = dimsOf(s).length;
    const shared = Array.from({ length: rank - 1 }, (_, i) => i + 1);
    return sym(c.layer('prelu', { sharedAxes: shared.length ? shared : undefined }, s.t, [{ data: f32(alpha), shape: [...shared.map(() => 1), C] }], 'prelu'));
  },
};

function activationOp(name: string): OpEntry {
  return { convert: (c) => c.out(ACTIVATIONS[name](c, c.sym(0))) };
}

/**
 * `fused_ops` of _FusedConv2D / FusedDepthwiseConv2dNative / _FusedMatMul: [BiasAdd] or [BiasAdd, activation]
 * (args: bias, then PReLU's alpha). The bias as a vector for the layer; the activation applied by `finish`.
 */
function fusedOps(c: GraphCtx, argBase: number, N: number): { bias: Float32Array; finish: (s: Sym) => Sym } {
  const ops = c.attrStrs('fused_ops');
  if (ops[0] !== 'BiasAdd') {
    c.fail(`fused_ops [${ops.join(', ')}] are not supported (only BiasAdd, optionally followed by an activation)`, 'tfjs itself cannot run FusedBatchNorm fused into a convolution either');
  }
  const bias = c.const(argBase);
  if (bias.data.length !== N) c.fail(`the fused bias has ${bias.data.length} values for ${N} outputs`);
  const act = ops[1];
  if (act !== undefined && !Object.hasOwn(ACTIVATIONS, act)) c.fail(`fused activation '${act}' is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  const alpha = act === 'Prelu' ? c.const(argBase + 1) : undefined;
  return { bias: f32(bias), finish: (s) => (act ? ACTIVATIONS[act](c, s, alpha) : s) };
}

// ---------------------------------------------------------------------------------------------
// Convolutions and pooling (NHWC; strides / dilations / ksize are 4-vectors [1, h, w, 1])

function requireNhwc(c: GraphCtx): void {
  const f = c.attrStr('data_format', 'NHWC');
  if (f !== 'NHWC') c.fail(`data_format '${f}' is not supported (only NHWC)`, 'the CPU graphs tensorflowjs_converter writes are NHWC');
}

function spatial(c: GraphCtx, name: string, def?: number[]): [number, number] {
  const v = c.attrInts(name, def);
  if (v.length !== 4 || v[0] !== 1 || v[3] !== 1) c.fail(`${name} [${v.join(', ')}] must be [1, h, w, 1]`);
  return [v[1], v[2]];
}

/** The input and Keras padding: SAME / VALID as they are, EXPLICIT pads as a ZeroPadding2D before a 'valid' layer. */
function padded(c: GraphCtx, s: Sym): { t: ST; padding: 'same' | 'valid' } {
  const p = c.attrStr('padding');
  if (p === 'SAME') return { t: s.t, padding: 'same' };
  if (p === 'VALID') return { t: s.t, padding: 'valid' };
  if (p !== 'EXPLICIT') return c.fail(`padding '${p}' is not supported`);
  const e = c.attrInts('explicit_paddings');
  if (e.length !== 8 || e[0] || e[1] || e[6] || e[7]) c.fail(`explicit_paddings [${e.join(', ')}] pad more than the spatial axes`);
  return { t: c.layer('zeroPadding2d', { padding: [[e[2], e[3]], [e[4], e[5]]] }, s.t, undefined, 'pad'), padding: 'valid' };
}

function requireImage(c: GraphCtx, s: Sym): void {
  if (dimsOf(s).length !== 3) c.fail(`expects a rank-4 NHWC tensor, got [N, ${dimsOf(s).join(', ')}]`);
}

/** Conv2D / DepthwiseConv2dNative (kernel [kh, kw, C, O] / [kh, kw, C, M]: the Keras layouts already), + fused ops. */
function conv(depthwise: boolean, fused: boolean): OpEntry {
  return {
    convert(c) {
      requireNhwc(c);
      const s = c.sym(0);
      requireImage(c, s);
      const w = c.const(1);
      if (w.dims.length !== 4) c.fail(`filter of shape [${w.dims.join(', ')}] is not [kh, kw, in, out]`);
      const [kh, kw, I, O] = w.dims;
      if (I !== channels(s)) c.fail(`the filter reads ${I} channels, the input has ${channels(s)}`, 'grouped convolutions are not supported');
      const strides = spatial(c, 'strides');
      const dilationRate = spatial(c, 'dilations', [1, 1, 1, 1]);
      if (Math.max(...strides) > 1 && Math.max(...dilationRate) > 1) c.fail('strides > 1 together with dilations > 1 are not supported');
      const N = depthwise ? I * O : O;
      const tail = fused ? fusedOps(c, 2, N) : undefined;
      const { t, padding } = padded(c, s);
      const weights = [{ data: f32(w), shape: w.dims }, ...(tail ? [{ data: tail.bias, shape: [N] }] : [])];
      const common = { kernelSize: [kh, kw], strides, padding, dilationRate, useBias: tail !== undefined };
      const y = depthwise
        ? c.layer('depthwiseConv2d', { ...common, depthMultiplier: O, depthwiseInitializer: 'zeros' }, t, weights)
        : c.layer('conv2d', { ...common, filters: O, kernelInitializer: 'zeros' }, t, weights);
      c.out(tail ? tail.finish(sym(y)) : sym(y));
    },
  };
}

/**
 * Conv2DBackpropInput (input_sizes, filter [kh, kw, out, in]: Keras's Conv2DTranspose kernel layout, x) as a
 * Conv2DTranspose without bias, when input_sizes is the size Keras computes for the padding (SAME: in * stride;
 * VALID: in * stride + max(k - stride, 0)).
 */
function convTranspose(c: GraphCtx): Sym {
  requireNhwc(c);
  const s = c.sym(2);
  requireImage(c, s);
  const w = c.const(1);
  if (w.dims.length !== 4) c.fail(`filter of shape [${w.dims.join(', ')}] is not [kh, kw, out, in]`);
  const [kh, kw, O, I] = w.dims;
  if (I !== channels(s)) c.fail(`the filter reads ${I} channels, the input has ${channels(s)}`);
  const strides = spatial(c, 'strides');
  if (Math.max(...spatial(c, 'dilations', [1, 1, 1, 1])) > 1) c.fail('dilations > 1 are not supported');
  const p = c.attrStr('padding');
  if (p !== 'SAME' && p !== 'VALID') c.fail(`padding '${p}' is not supported for a transposed convolution`);
  const [H, W] = dimsOf(s);
  const size = (n: number, k: number, st: number) => (p === 'SAME' ? n * st : n * st + Math.max(k - st, 0));
  const want = [1, size(H, kh, strides[0]), size(W, kw, strides[1]), O];
  const got = c.ints(0);
  if (got.slice(1).join() !== want.slice(1).join()) c.fail(`output size [${got.join(', ')}] is not the [N, ${want.slice(1).join(', ')}] Keras's Conv2DTranspose computes (output_padding is not supported)`);
  const cfg = { filters: O, kernelSize: [kh, kw], strides, padding: p.toLowerCase(), useBias: false, kernelInitializer: 'zeros' };
  return sym(c.layer('conv2dTranspose', cfg, s.t, [{ data: f32(w), shape: w.dims }]));
}

/** MatMul / _FusedMatMul of a computed [N, K] by a constant [K, N] (transpose_b: [N, K]) as a Dense layer. */
function matmul(fused: boolean): OpEntry {
  return {
    convert(c) {
      if (c.attrBool('transpose_a', false)) c.fail('transpose_a is not supported');
      const s = c.sym(0);
      if (dimsOf(s).length !== 1) c.fail(`a matrix product on [N, ${dimsOf(s).join(', ')}] is not supported (only [N, K])`);
      const b = c.const(1);
      if (b.dims.length !== 2) c.fail(`the weight of shape [${b.dims.join(', ')}] is not a matrix`);
      const tb = c.attrBool('transpose_b', false);
      const [K, N] = tb ? [b.dims[1], b.dims[0]] : b.dims;
      if (K !== channels(s)) c.fail(`the input has ${channels(s)} features, the weight ${K} rows`);
      const kernel = tb ? transpose(f32(b), b.dims, [1, 0]).data : f32(b);
      const tail = fused ? fusedOps(c, 2, N) : undefined;
      const y = c.layer('dense', { units: N, useBias: tail !== undefined, kernelInitializer: 'zeros' }, s.t, [{ data: kernel, shape: [K, N] }, ...(tail ? [{ data: tail.bias, shape: [N] }] : [])]);
      c.out(tail ? tail.finish(sym(y)) : sym(y));
    },
  };
}

function pool(factory: 'maxPooling2d' | 'averagePooling2d'): OpEntry {
  return {
    convert(c) {
      requireNhwc(c);
      const s = c.sym(0);
      requireImage(c, s);
      const p = c.attrStr('padding');
      if (p !== 'SAME' && p !== 'VALID') c.fail(`padding '${p}' is not supported for pooling`);
      const y = c.layer(factory, { poolSize: spatial(c, 'ksize'), strides: spatial(c, 'strides'), padding: p.toLowerCase() }, s.t);
      c.out(sym(y));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Per-channel arithmetic with constants, as BatchNormalization layers

/** A constant broadcasting against `s` only along its last (channel) axis, as a vector (a scalar repeated). */
function channelVector(c: GraphCtx, s: Sym, k: Const): Float32Array {
  const C = channels(s);
  const rank = dimsOf(s).length + 1;
  if (k.dims.length > rank || k.dims.some((d, i) => d !== 1 && (i !== k.dims.length - 1 || d !== C))) {
    c.fail(`a constant of shape [${k.dims.join(', ')}] applied to a tensor of shape [N, ${dimsOf(s).join(', ')}] is supported only as a scalar or per-channel vector`);
  }
  return k.data.length === 1 ? F32(C, k.data[0]) : f32(k);
}

/**
 * y = x * scale + shift per channel, as a frozen BatchNormalization layer (mean 0, variance 1 - eps; trainable false:
 * training runs it in inference mode, as Keras runs a frozen batch norm, so fine-tuning keeps the constants).
 */
function affine(c: GraphCtx, s: Sym, scale: Float32Array, shift: Float32Array): Sym {
  const eps = 1e-3;
  const n = scale.length;
  const t = c.layer('batchNormalization', { axis: -1, epsilon: eps, trainable: false }, s.t, [
    { data: scale, shape: [n] },
    { data: shift, shape: [n] },
    { data: F32(n, 0), shape: [n] },
    { data: F32(n, 1 - eps), shape: [n] },
  ]);
  return sym(t);
}

function foldBinary(f: (x: number, y: number) => number): (c: GraphCtx) => void {
  return (c) => {
    const a = c.const(0);
    const b = c.const(1);
    const r = binary(a, b, f, a.int && b.int);
    if (!r) c.fail(`shapes [${a.dims.join(', ')}] and [${b.dims.join(', ')}] do not broadcast`);
    c.out({ kind: 'const', c: r! });
  };
}

/** Two computed tensors through a Keras merge layer, broadcasting as tfjs does (a squeeze-excitation gate [N, 1, 1, C]). */
function merge(c: GraphCtx, factory: string): Sym {
  const [a, b] = [c.sym(0), c.sym(1)];
  if (dimsOf(a).length !== dimsOf(b).length || !broadcastShape(dimsOf(a), dimsOf(b))) {
    c.fail(`operands of shapes [N, ${dimsOf(a).join(', ')}] and [N, ${dimsOf(b).join(', ')}] do not broadcast`);
  }
  return sym(c.layer(factory, {}, [a.t, b.t]));
}

/**
 * Elementwise arithmetic: its folding, the merge layer for two computed tensors (none: refused), and the affine
 * [scale, shift] a per-channel constant k makes of it (`constFirst`: k is the first operand; undefined: refused).
 */
interface Arith {
  f: (x: number, y: number) => number;
  merge?: string;
  affine(k: Float32Array, constFirst: boolean): [Float32Array, Float32Array] | undefined;
}

const ones = (k: Float32Array): Float32Array => F32(k.length, 1);
const ARITH: Record<'add' | 'sub' | 'mul' | 'div', Arith> = {
  add: { f: (x, y) => x + y, merge: 'add', affine: (k) => [ones(k), k] },
  sub: { f: (x, y) => x - y, merge: 'subtract', affine: (k, first) => (first ? [F32(k.length, -1), k] : [ones(k), k.map((v) => -v)]) },
  mul: { f: (x, y) => x * y, merge: 'multiply', affine: (k) => [k, F32(k.length, 0)] },
  div: { f: (x, y) => x / y, affine: (k, first) => (first ? undefined : [k.map((v) => 1 / v), F32(k.length, 0)]) },
};

function arithmetic(kind: keyof typeof ARITH): OpEntry {
  const a = ARITH[kind];
  return {
    fold: foldBinary(a.f),
    convert(c) {
      if (!c.isConst(0) && !c.isConst(1)) {
        if (!a.merge) c.fail('is supported only with a constant second operand (not two computed tensors)');
        c.out(merge(c, a.merge!));
        return;
      }
      const xi = c.isConst(0) ? 1 : 0;
      const s = c.sym(xi);
      const ab = a.affine(channelVector(c, s, c.const(1 - xi)), xi === 1);
      if (!ab) c.fail('is supported only with a constant second operand (a constant divided by a tensor is not)');
      c.out(affine(c, s, ab![0], ab![1]));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Shapes

/** Reshape to [N, ...rest] (the batch axis kept); a flattening to [N, K] is a Flatten layer. */
function reshapeTo(c: GraphCtx, s: Sym, out: number[]): Sym {
  if (out[0] !== 1) c.fail(`reshaping [N, ${dimsOf(s).join(', ')}] to [${out.join(', ')}] would move the batch axis`);
  if (out.slice(1).join() === dimsOf(s).join()) return s;
  const t = out.length === 2 && dimsOf(s).length > 1 ? c.layer('flatten', {}, s.t) : c.layer('reshape', { targetShape: out.slice(1) }, s.t);
  return sym(t);
}

/** The shape `target` resolves to for a sample of `s` (batch 1; the batch entry may be -1 or 1). */
function resolveShape(c: GraphCtx, s: Sym, target: number[]): number[] {
  const inDims = [1, ...dimsOf(s)];
  const out = reshapeTarget(inDims, target, true);
  if (!out) c.fail(`cannot reshape [N, ${dimsOf(s).join(', ')}] to [${target.join(', ')}]`);
  return out!;
}

function squeezed(c: GraphCtx, dims: number[]): number[] {
  const rank = dims.length;
  const axes = c.attrInts('squeeze_dims', []).map((a) => (a < 0 ? a + rank : a));
  const drop = axes.length ? axes : dims.map((d, i) => (d === 1 && i > 0 ? i : -1)).filter((i) => i >= 0);
  if (drop.some((a) => dims[a] !== 1 || a === 0)) c.fail(`cannot squeeze axes [${drop.join(', ')}] of [N, ${dims.slice(1).join(', ')}]`);
  return dims.filter((_, i) => !drop.includes(i));
}

const passthrough: OpEntry = {
  fold: (c) => c.out({ kind: 'const', c: c.const(0) }),
  convert: (c) => c.out(c.sym(0)),
};

// ---------------------------------------------------------------------------------------------
// The table

export const OPS: Record<string, OpEntry> = {
  Placeholder: { source: true },
  Const: { source: true },
  Identity: passthrough,
  StopGradient: passthrough,
  Snapshot: passthrough,
  PreventGradient: passthrough,
  Conv2D: conv(false, false),
  _FusedConv2D: conv(false, true),
  DepthwiseConv2dNative: conv(true, false),
  FusedDepthwiseConv2dNative: conv(true, true),
  Conv2DBackpropInput: { convert: (c) => c.out(convTranspose(c)) },
  MatMul: matmul(false),
  _FusedMatMul: matmul(true),
  BiasAdd: {
    convert(c) {
      requireNhwc(c);
      const s = c.sym(0);
      const b = c.const(1);
      if (b.dims.length !== 1 || b.data.length !== channels(s)) c.fail(`bias of shape [${b.dims.join(', ')}] is not one value per channel (${channels(s)})`);
      c.out(affine(c, s, F32(b.data.length, 1), f32(b)));
    },
  },
  Relu: activationOp('Relu'),
  Prelu: { convert: (c) => c.out(ACTIVATIONS.Prelu(c, c.sym(0), c.const(1))) },
  Relu6: activationOp('Relu6'),
  LeakyRelu: activationOp('LeakyRelu'),
  Elu: activationOp('Elu'),
  Sigmoid: activationOp('Sigmoid'),
  Tanh: activationOp('Tanh'),
  Softmax: { convert: (c) => c.out(sym(c.layer('softmax', { axis: -1 }, c.sym(0).t, undefined, 'softmax'))) },
  Add: arithmetic('add'),
  AddV2: arithmetic('add'),
  Sub: arithmetic('sub'),
  Mul: arithmetic('mul'),
  RealDiv: arithmetic('div'),
  Mean: spatialReduce('mean', 'globalAveragePooling2d'),
  Max: spatialReduce('maximum', 'globalMaxPooling2d'),
  AddN: {
    fold(c) {
      let sum = c.const(0);
      for (let i = 1; i < c.arity; i++) sum = binary(sum, c.const(i), (x, y) => x + y, sum.int && c.const(i).int) ?? c.fail('operands do not broadcast');
      c.out({ kind: 'const', c: sum });
    },
    convert(c) {
      const parts = Array.from({ length: c.arity }, (_, i) => c.sym(i));
      const d = dimsOf(parts[0]).join();
      if (parts.some((p) => dimsOf(p).join() !== d)) c.fail(`operands of shapes ${parts.map((p) => `[N, ${dimsOf(p).join(', ')}]`).join(', ')} differ`);
      c.out(parts.length === 1 ? parts[0] : sym(c.layer('add', {}, parts.map((p) => p.t))));
    },
  },
  Maximum: clip('max'),
  Minimum: clip('min'),
  MaxPool: pool('maxPooling2d'),
  AvgPool: pool('averagePooling2d'),
  Pad: { convert: (c) => c.out(zeroPad(c)) },
  PadV2: {
    convert(c) {
      const v = c.const(2).data;
      if (v.length !== 1 || v[0] !== 0) c.fail(`padding with the value ${Array.from(v).join(', ')} is not supported (only zeros)`);
      c.out(zeroPad(c));
    },
  },
  ConcatV2: {
    fold(c) {
      const axis = c.ints(c.arity - 1)[0];
      const parts = Array.from({ length: c.arity - 1 }, (_, i) => c.const(i));
      c.out({ kind: 'const', c: concat(parts, axis < 0 ? axis + parts[0].dims.length : axis) });
    },
    convert(c) {
      const parts = Array.from({ length: c.arity - 1 }, (_, i) => c.sym(i));
      const rank = dimsOf(parts[0]).length + 1;
      const a = c.ints(c.arity - 1)[0];
      const axis = a < 0 ? a + rank : a;
      if (axis === 0) c.fail('concatenating along the batch axis is not supported');
      c.out(parts.length === 1 ? parts[0] : sym(c.layer('concatenate', { axis }, parts.map((p) => p.t))));
    },
  },
  Reshape: {
    fold(c) {
      const x = c.const(0);
      const out = reshapeTarget(x.dims, c.ints(1), true);
      if (!out) c.fail(`cannot reshape [${x.dims.join(', ')}] to [${c.ints(1).join(', ')}]`);
      c.out({ kind: 'const', c: { ...x, dims: out! } });
    },
    convert: (c) => c.out(reshapeTo(c, c.sym(0), resolveShape(c, c.sym(0), c.ints(1)))),
  },
  Squeeze: {
    fold: (c) => c.out({ kind: 'const', c: { ...c.const(0), dims: squeezed(c, c.const(0).dims) } }),
    convert: (c) => c.out(reshapeTo(c, c.sym(0), squeezed(c, [1, ...dimsOf(c.sym(0))]))),
  },
  Shape: {
    fold: (c) => c.out({ kind: 'const', c: constOf([c.const(0).dims.length], c.const(0).dims, true) }),
    // A computed tensor's shape with the batch as 1 (the ONNX importer's convention): what a Reshape / Conv2DBackpropInput
    // reading it (Keras's Reshape((-1, 16)): [batch, -1, 16]) takes as the batch entry, which they keep as the batch axis.
    convert: (c) => c.out({ kind: 'const', c: constOf([dimsOf(c.sym(0)).length + 1], [1, ...dimsOf(c.sym(0))], true) }),
  },
  StridedSlice: { fold: (c) => c.out({ kind: 'const', c: stridedSlice(c) }) },
  Pack: {
    fold(c) {
      const parts = Array.from({ length: c.arity }, (_, i) => c.const(i));
      const rank = parts[0].dims.length + 1;
      const a = c.attrInt('axis', 0);
      const axis = a < 0 ? a + rank : a;
      if (parts.some((p) => p.dims.join() !== parts[0].dims.join())) c.fail(`operands of shapes ${parts.map((p) => `[${p.dims.join(', ')}]`).join(', ')} differ`);
      c.out({ kind: 'const', c: concat(parts.map((p) => ({ ...p, dims: [...p.dims.slice(0, axis), 1, ...p.dims.slice(axis)] })), axis) });
    },
  },
  FusedBatchNorm: batchNorm(),
  FusedBatchNormV2: batchNorm(),
  FusedBatchNormV3: batchNorm(),
};

/** Mean / Max over an NHWC image's spatial axes [1, 2] as a global pooling layer (`keep_dims`: + Reshape to [1, 1, C]). */
function spatialReduce(what: string, factory: string): OpEntry {
  return {
    convert(c) {
      const s = c.sym(0);
      const axes = c.ints(1).map((a) => (a < 0 ? a + dimsOf(s).length + 1 : a)).sort();
      if (dimsOf(s).length !== 3 || axes.join() !== '1,2') c.fail(`only the ${what} over the spatial axes [1, 2] of an NHWC image is supported (axes [${c.ints(1).join(', ')}] of [N, ${dimsOf(s).join(', ')}])`);
      const g = c.layer(factory, {}, s.t);
      c.out(sym(c.attrBool('keep_dims', false) ? c.layer('reshape', { targetShape: [1, 1, channels(s)] }, g, undefined, 'keep_dims') : g));
    },
  };
}

/** The layer computing `s` when it is a ReLU (Relu, Relu6, a ReLU with a cap): its input and cap (Infinity: none). */
function reluOf(s: Sym): { input: ST; cap: number } | undefined {
  const l = s.t.sourceLayer;
  const cfg = l.getConfig() as { activation?: string; maxValue?: number | null };
  const relu = l.getClassName() === 'ReLU' || (l.getClassName() === 'Activation' && cfg.activation === 'relu');
  return relu ? { input: l.input as ST, cap: cfg.maxValue ?? Infinity } : undefined;
}

/**
 * Maximum / Minimum: of two computed tensors a Keras Maximum / Minimum layer; with a scalar constant, the clips Keras's
 * `clip_by_value` / `ReLU(max_value)` leave in a graph: min(relu(x), k) is a ReLU capped at k (applied to the ReLU's
 * input), max(x, 0) a ReLU, and max(y, k <= 0) of a ReLU's output y is y. Other constant bounds are refused.
 */
function clip(kind: 'max' | 'min'): OpEntry {
  const f = kind === 'max' ? Math.max : Math.min;
  return {
    fold: foldBinary(f),
    convert(c) {
      if (!c.isConst(0) && !c.isConst(1)) return c.out(merge(c, kind === 'max' ? 'maximum' : 'minimum'));
      const xi = c.isConst(0) ? 1 : 0;
      const s = c.sym(xi);
      const k = c.const(1 - xi);
      const v = k.data[0];
      if (k.data.some((e) => e !== v)) c.fail(`a bound of shape [${k.dims.join(', ')}] with different values is not supported (only one value)`);
      const relu = reluOf(s);
      if (kind === 'min' && relu && v > 0) return c.out(sym(c.layer('reLU', { maxValue: Math.min(v, relu.cap) }, relu.input, undefined, 'relu_cap')));
      if (kind === 'max' && relu && v <= 0) return c.out(s);
      if (kind === 'max' && v === 0) return c.out(sym(c.layer('reLU', {}, s.t, undefined, 'relu')));
      c.fail(kind === 'min' ? `min(x, ${v}) is supported only on a ReLU's output with a bound > 0 (a capped ReLU)` : `max(x, ${v}) is supported only with the bound 0 (a ReLU) or on a ReLU's output`);
    },
  };
}

/** StridedSlice of a constant (begin / end / strides with their masks; shrink_axis_mask drops the axis; no ellipsis or new axes). */
function stridedSlice(c: GraphCtx): Const {
  const x = c.const(0);
  const [begin, end, strides] = [c.ints(1), c.ints(2), c.ints(3)];
  const bit = (name: string, a: number): boolean => ((c.attrInt(name, 0) >> a) & 1) === 1;
  if (c.attrInt('ellipsis_mask', 0) || c.attrInt('new_axis_mask', 0)) c.fail('ellipsis_mask and new_axis_mask are not supported');
  if (begin.length > x.dims.length || end.length !== begin.length || strides.length !== begin.length) {
    c.fail(`begin [${begin.join(', ')}], end [${end.join(', ')}] and strides [${strides.join(', ')}] do not fit a tensor of shape [${x.dims.join(', ')}]`);
  }
  const starts: number[] = [];
  const ends: number[] = [];
  const steps: number[] = [];
  begin.forEach((b, a) => {
    const d = x.dims[a];
    const step = strides[a];
    if (step === 0) c.fail('a stride of 0 is not valid');
    if (bit('shrink_axis_mask', a)) {
      const i = b < 0 ? b + d : b;
      if (i < 0 || i >= d) c.fail(`index ${b} is out of range for axis ${a} of size ${d}`);
      starts.push(i);
      ends.push(i + 1);
      steps.push(1);
      return;
    }
    starts.push(bit('begin_mask', a) ? (step > 0 ? 0 : d - 1) : b);
    ends.push(bit('end_mask', a) ? (step > 0 ? d : -d - 1) : end[a]);
    steps.push(step);
  });
  const r = slice(x, starts, ends, begin.map((_, a) => a), steps);
  return { ...r, dims: r.dims.filter((_, a) => !(a < begin.length && bit('shrink_axis_mask', a))) };
}

/**
 * Pad / PadV2 with zeros of an image: on the spatial axes (paddings [[0, 0], [t, b], [l, r], [0, 0]]) a ZeroPadding2D;
 * on the channel axis (BlazeFace's `channel_padding` before a residual add) a frozen 1x1 Conv2D copying the C channels
 * into C + before + after (an identity kernel: exact, and every export target runs it).
 */
function zeroPad(c: GraphCtx): Sym {
  const s = c.sym(0);
  requireImage(c, s);
  const p = c.ints(1);
  if (p.length !== 8 || p[0] || p[1] || p.some((v) => v < 0)) c.fail(`paddings [${p.join(', ')}] pad the batch axis or are negative`);
  const spatial = p[2] || p[3] || p[4] || p[5] ? sym(c.layer('zeroPadding2d', { padding: [[p[2], p[3]], [p[4], p[5]]] }, s.t)) : s;
  if (!p[6] && !p[7]) return spatial;
  const C = channels(s);
  const O = p[6] + C + p[7];
  const kernel = F32(C * O);
  for (let i = 0; i < C; i++) kernel[i * O + p[6] + i] = 1;
  const cfg = { filters: O, kernelSize: [1, 1], useBias: false, trainable: false, kernelInitializer: 'zeros' };
  return sym(c.layer('conv2d', cfg, spatial.t, [{ data: kernel, shape: [1, 1, C, O] }], 'channel_pad'));
}

/** FusedBatchNorm* in inference form (x, scale, offset, mean, variance; is_training false) as BatchNormalization. */
function batchNorm(): OpEntry {
  return {
    convert(c) {
      requireNhwc(c);
      if (c.attrBool('is_training', false)) c.fail('is_training=true (batch statistics) is not supported', 'convert the model in inference mode');
      const s = c.sym(0);
      const C = channels(s);
      const [scale, offset, mean, variance] = [1, 2, 3, 4].map((i) => c.const(i));
      for (const k of [scale, offset, mean, variance]) if (k.data.length !== C) c.fail(`batch-norm parameters of shape [${k.dims.join(', ')}] are not one value per channel (${C})`);
      const y = c.layer('batchNormalization', { axis: -1, epsilon: c.attrFloat('epsilon', 1e-3) }, s.t, [scale, offset, mean, variance].map((k) => ({ data: f32(k), shape: [C] })));
      c.out(sym(y));
    },
  };
}

/** The activation ops a plain conv / matmul + BiasAdd chain fuses like grappler's fused_ops (tfjs-graph-fuse.ts). */
export const fusableActivations = (): string[] => Object.keys(ACTIVATIONS).filter((a) => Object.hasOwn(OPS, a));

/** The supported ops, sorted (for error messages and the README). */
export const supportedGraphOps = (): string[] => Object.keys(OPS).sort();
