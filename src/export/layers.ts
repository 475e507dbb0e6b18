import {
  outSize, pair, samePads, transposeOutSize, type Activation, type BinaryOp, type IrBuilder, type LayerConversion, type Padding,
} from './ir.js';
import { TFJS_IGNORED_OPTIONS } from '../model/load/common.js';
import { permute } from './quant.js';

/**
 * The layer coverage table: one entry per Keras/tfjs layer class, next to its conversion into the
 * target-neutral IR (./ir.ts). Every IR op has an entry in each writer (tflite, onnx) and in runIr,
 * so a class listed here exports to every target; `tfjs` says whether tfjs-layers has the class
 * itself or compress registers it (src/model/custom-layers.ts). The README's support table is
 * generated from this (scripts/layer-table.ts).
 */
export interface LayerEntry {
  ir: LayerConversion;
  /** Why a config cannot be exported, decidable from the config alone (checked before any stage runs too). */
  check?: (config: Record<string, unknown>) => string | undefined;
  tfjs: 'native' | 'custom';
  /** Shown in the README table. */
  note?: string;
}

/** Layers that compute the identity at inference. */
export const IDENTITY_LAYERS = new Set(['Dropout', 'SpatialDropout1D', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'ActivityRegularization', 'StochasticDepth']);

// ---------------------------------------------------------------------------------------------
// helpers

const unary = (kind: 'relu' | 'relu6' | 'sigmoid' | 'tanh' | 'elu' | 'hard_swish' | 'rsqrt' | 'softmax') => (b: IrBuilder, x: number): number =>
  b.emit({ kind, inputs: [x] }, b.shape(x).slice(), kind);

/** Per-sample broadcast of two shapes (numpy rules), or undefined. */
function broadcast(a: number[], b: number[]): number[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return undefined;
    out.push(Math.max(x, y));
  }
  return out;
}

function binary(b: IrBuilder, kind: BinaryOp['kind'], x: number, y: number, suffix?: string): number {
  const shape = broadcast(b.shape(x), b.shape(y));
  if (!shape) return b.fail(`cannot broadcast [${b.shape(x)}] with [${b.shape(y)}]`);
  return b.emit({ kind, inputs: [x, y], activation: 'none' }, shape, suffix);
}

/** x * scale + offset, each a scalar or one value per channel (last axis); trivial steps are skipped. */
function affine(b: IrBuilder, x: number, scale: Float32Array, offset: Float32Array, suffix: string): number {
  const per = (v: Float32Array) => [v.length === 1 ? 1 : v.length];
  let y = x;
  if (scale.some((v) => v !== 1)) y = binary(b, 'mul', y, b.constant(scale, per(scale), `${suffix}_scale`), `${suffix}_mul`);
  if (offset.some((v) => v !== 0)) y = binary(b, 'add', y, b.constant(offset, per(offset), `${suffix}_offset`), `${suffix}_add`);
  return y;
}

function mergeOf(kind: BinaryOp['kind'], scaleBy?: (n: number) => number): LayerConversion {
  return (b) => {
    const ins = b.inputs();
    if (ins.length < 2) b.fail(`expected at least two inputs, got ${ins.length}`);
    if (kind === 'sub' && ins.length !== 2) b.fail(`Subtract takes exactly two inputs, got ${ins.length}`);
    let y = ins[0];
    for (let i = 1; i < ins.length; i++) y = binary(b, kind, y, ins[i], i === ins.length - 1 && !scaleBy ? undefined : `${kind}${i}`);
    if (scaleBy) y = affine(b, y, Float32Array.of(scaleBy(ins.length)), Float32Array.of(0), 'mean');
    return y;
  };
}

function imageInput(b: IrBuilder): number {
  const x = b.input();
  if (b.shape(x).length !== 3) b.fail(`${b.layer.className} needs an image input [H, W, C], got [${b.shape(x)}]`);
  return x;
}

function paddingOf(b: IrBuilder): Padding {
  const p = b.layer.config.padding as string;
  if (p !== 'same' && p !== 'valid') b.fail(`padding '${p}' is not supported; use same or valid`);
  return p as Padding;
}

/**
 * The conv input, with a ZeroPadding2D that feeds only this conv folded into 'same' padding when
 * that is exactly the padding TF's SAME would add (Keras applications' `correct_pad` + 'valid').
 */
function convInput(b: IrBuilder, k: [number, number], strides: [number, number], dilation: [number, number]): { x: number; padding: Padding } {
  let x = imageInput(b);
  let padding = paddingOf(b);
  const prev = b.fusable(x);
  if (padding === 'valid' && prev?.kind === 'pad') {
    const [H, W] = b.shape(prev.inputs[0]);
    const same = [samePads(H, k[0], strides[0], dilation[0]), samePads(W, k[1], strides[1], dilation[1])];
    if (same[0][0] === prev.pads[0][0] && same[0][1] === prev.pads[0][1] && same[1][0] === prev.pads[1][0] && same[1][1] === prev.pads[1][1]) {
      b.remove(prev);
      x = prev.inputs[0];
      padding = 'same';
    }
  }
  return { x, padding };
}

function bias(b: IrBuilder, n: number): Float32Array {
  return b.weight('bias')?.data ?? new Float32Array(n);
}

function conv(b: IrBuilder): number {
  const c = b.layer.config;
  const cls = b.layer.className;
  const strides = pair(c.strides, [1, 1]);
  const dilation = pair(c.dilationRate, [1, 1]);
  if ((dilation[0] > 1 || dilation[1] > 1) && (strides[0] > 1 || strides[1] > 1)) b.fail('dilation with stride > 1 is not supported');
  const full = cls === 'Conv2D' || cls === 'GroupedConv2D';
  const k = (b.weight(full ? 'kernel' : 'depthwise_kernel') ?? b.fail('has no kernel weight')) as { data: Float32Array; shape: number[] };
  const [kh, kw, ci, co] = k.shape;
  const { x, padding } = convInput(b, [kh, kw], strides, dilation);
  const [H, W, C] = b.shape(x);
  const groups = cls === 'GroupedConv2D' ? Number(c.groups ?? 1) : 1;
  if (cls !== 'Conv2D' && ci * groups !== C) b.fail(`kernel expects ${ci * groups} channels, input has ${C}`);
  const oh = outSize(H, kh, strides[0], dilation[0], padding);
  const ow = outSize(W, kw, strides[1], dilation[1], padding);
  const base = { strides, dilation, padding, activation: 'none' as Activation, folded: false };
  let y: number;
  if (full) {
    y = b.emit({ kind: 'conv2d', inputs: [x], kernelShape: [kh, kw, ci, co], kernel: k.data, bias: bias(b, co), ...base, ...(groups > 1 ? { groups } : {}) }, [oh, ow, co]);
  } else if (cls === 'DepthwiseConv2D') {
    y = b.emit({ kind: 'depthwise', inputs: [x], kernelShape: [kh, kw, ci, co], kernel: k.data, bias: bias(b, ci * co), ...base }, [oh, ow, ci * co]);
  } else {
    // SeparableConv2D = depthwise (no bias) followed by a 1x1 pointwise conv with the bias.
    const pk = b.weight('pointwise_kernel') ?? b.fail('has no pointwise_kernel weight');
    const out = pk.shape[3];
    const mid = b.emit({ kind: 'depthwise', inputs: [x], kernelShape: [kh, kw, ci, co], kernel: k.data, bias: new Float32Array(ci * co), ...base }, [oh, ow, ci * co], 'depthwise');
    y = b.emit({
      kind: 'conv2d', layer: `${b.layer.name}#pointwise`, inputs: [mid], kernelShape: [1, 1, ci * co, out], kernel: pk.data, bias: bias(b, out),
      ...base, strides: [1, 1], dilation: [1, 1], padding: 'valid',
    }, [oh, ow, out]);
  }
  return b.activation(y, c.activation);
}

/** Conv2DTranspose: the Keras kernel [kh, kw, cout, cin] stored output-channel-last as [kh, kw, cin, cout]. */
function convTranspose(b: IrBuilder): number {
  const c = b.layer.config;
  const strides = pair(c.strides, [1, 1]);
  const k = b.weight('kernel') ?? b.fail('has no kernel weight');
  const [kh, kw, co, ci] = k.shape;
  const x = imageInput(b);
  const padding = paddingOf(b);
  const [H, W, C] = b.shape(x);
  if (ci !== C) b.fail(`kernel expects ${ci} channels, input has ${C}`);
  const y = b.emit({
    kind: 'conv_transpose', inputs: [x], kernelShape: [kh, kw, ci, co], kernel: permute(k.data, k.shape, [0, 1, 3, 2]), bias: bias(b, co),
    strides, padding, activation: 'none', folded: false,
  }, [transposeOutSize(H, kh, strides[0], padding), transposeOutSize(W, kw, strides[1], padding), co]);
  return b.activation(y, c.activation);
}

/**
 * Dense: a fully-connected op on a vector; on a rank-4 input [N, H, W, K] (a Linear applied per pixel,
 * as ConvNeXt's blocks do) the 1x1 convolution it equals, and on a rank-3 [N, T, K] (per token) that
 * convolution over a [1, T, K] view, so every target and int8 path treats it as the conv it is.
 */
function dense(b: IrBuilder): number {
  const x = b.input();
  const inShape = b.shape(x);
  const k = b.weight('kernel') ?? b.fail('has no kernel weight');
  const [kin, units] = k.shape;
  if (inShape[inShape.length - 1] !== kin) b.fail(`kernel expects ${kin} features, input has ${inShape[inShape.length - 1]}`);
  if (inShape.length > 3) b.fail(`Dense on a rank-${inShape.length + 1} input is not supported; reshape it to rank 4 or less first`);
  if (inShape.length === 1) {
    const y = b.emit({ kind: 'dense', inputs: [x], kernelShape: [kin, units], kernel: k.data, bias: bias(b, units), activation: 'none', folded: false }, [units]);
    return b.activation(y, b.layer.config.activation);
  }
  const image = inShape.length === 3 ? x : b.emit({ kind: 'reshape', inputs: [x], shape: [1, ...inShape] }, [1, ...inShape], 'rows');
  const [H, W] = b.shape(image);
  const conv = b.emit({
    kind: 'conv2d', inputs: [image], kernelShape: [1, 1, kin, units], kernel: k.data, bias: bias(b, units),
    strides: [1, 1], dilation: [1, 1], padding: 'valid', activation: 'none', folded: false,
  }, [H, W, units]);
  const y = inShape.length === 3 ? conv : b.emit({ kind: 'reshape', inputs: [conv], shape: [inShape[0], units] }, [inShape[0], units], 'unrows');
  return b.activation(y, b.layer.config.activation);
}

function lastAxis(b: IrBuilder, x: number, axis: unknown): void {
  const a = Array.isArray(axis) ? (axis.length === 1 ? axis[0] : NaN) : (axis ?? -1);
  const rank = b.shape(x).length;
  if (a !== -1 && a !== rank) b.fail(`${b.layer.className} over axis ${JSON.stringify(axis)} is not supported; use the last (channel) axis`);
}

function batchNorm(b: IrBuilder): number {
  const x = b.input();
  lastAxis(b, x, b.layer.config.axis);
  const shape = b.shape(x);
  const ch = shape[shape.length - 1];
  const gamma = b.weight('gamma')?.data ?? new Float32Array(ch).fill(1);
  const beta = b.weight('beta')?.data ?? new Float32Array(ch);
  const mean = (b.weight('moving_mean') ?? b.fail('has no moving_mean')).data;
  const variance = (b.weight('moving_variance') ?? b.fail('has no moving_variance')).data;
  const eps = (b.layer.config.epsilon as number) ?? 1e-3;
  const k = new Float64Array(ch);
  for (let i = 0; i < ch; i++) k[i] = gamma[i] / Math.sqrt(variance[i] + eps);
  const prev = b.fusable(x);
  if (prev && (prev.kind === 'conv2d' || prev.kind === 'depthwise' || prev.kind === 'conv_transpose' || prev.kind === 'dense') && prev.activation === 'none') {
    // Output channel of each kernel element = its index along the last axis (depthwise: i * mult + m).
    for (let i = 0; i < prev.kernel.length; i++) prev.kernel[i] = prev.kernel[i] * k[i % ch];
    for (let i = 0; i < ch; i++) prev.bias[i] = (prev.bias[i] - mean[i]) * k[i] + beta[i];
    prev.folded = true;
    return x;
  }
  // Not after a conv/dense: the same per-channel affine as its own ops.
  const scale = Float32Array.from(k);
  const offset = Float32Array.from({ length: ch }, (_, i) => beta[i] - mean[i] * k[i]);
  return affine(b, x, scale, offset, 'bn');
}

/**
 * x * scale (one value, or one per channel): folded into the conv / dense that computes x (when this is its only
 * reader and it has no activation), else a multiply.
 */
function scaled(b: IrBuilder, x: number, scale: Float32Array, suffix: string): number {
  const prev = b.fusable(x);
  if (prev && (prev.kind === 'conv2d' || prev.kind === 'dense') && prev.activation === 'none' && (scale.length === 1 || scale.length === prev.bias.length)) {
    const at = (c: number) => scale[scale.length === 1 ? 0 : c];
    const ch = prev.bias.length;
    for (let i = 0; i < prev.kernel.length; i++) prev.kernel[i] *= at(i % ch);
    for (let c = 0; c < ch; c++) prev.bias[c] *= at(c);
    prev.folded = true;
    return x;
  }
  return affine(b, x, scale, Float32Array.of(0), suffix);
}

/** keras.applications ConvNeXt's LayerScale: x * gamma per channel. */
function layerScale(b: IrBuilder): number {
  return scaled(b, b.input(), (b.weight('gamma') ?? b.fail('has no gamma weight')).data, 'layer_scale');
}

/** keras.applications InceptionResNetV2's CustomScaleLayer: inputs[0] + inputs[1] * scale. */
function customScale(b: IrBuilder): number {
  const ins = b.inputs();
  if (ins.length !== 2) b.fail(`CustomScaleLayer takes two inputs, got ${ins.length}`);
  return binary(b, 'add', ins[0], scaled(b, ins[1], Float32Array.of(b.layer.config.scale as number), 'scale'));
}

function layerNorm(b: IrBuilder): number {
  const x = b.input();
  lastAxis(b, x, b.layer.config.axis);
  const shape = b.shape(x);
  const ch = shape[shape.length - 1];
  const kept = [...shape.slice(0, -1), 1];
  const mean = b.emit({ kind: 'mean_last', inputs: [x] }, kept, 'mean');
  const d = binary(b, 'sub', x, mean, 'centered');
  const sq = binary(b, 'mul', d, d, 'squared');
  const v = b.emit({ kind: 'mean_last', inputs: [sq] }, kept, 'variance');
  const eps = (b.layer.config.epsilon as number) ?? 1e-3;
  const ve = binary(b, 'add', v, b.constant(Float32Array.of(eps), [1], 'epsilon'), 'variance_eps');
  const r = b.emit({ kind: 'rsqrt', inputs: [ve] }, kept, 'rsqrt');
  const n = binary(b, 'mul', d, r, 'normalized');
  const gamma = b.layer.config.scale === false ? Float32Array.of(1) : (b.weight('gamma')?.data ?? new Float32Array(ch).fill(1));
  const beta = b.layer.config.center === false ? Float32Array.of(0) : (b.weight('beta')?.data ?? new Float32Array(ch));
  return affine(b, n, gamma, beta, 'affine');
}

function reshape(b: IrBuilder, target: number[]): number {
  const x = b.input();
  const size = b.shape(x).reduce((a, c) => a * c, 1);
  const known = target.filter((d) => d !== -1).reduce((a, c) => a * c, 1);
  const shape = target.map((d) => (d === -1 ? size / known : d));
  if (shape.reduce((a, c) => a * c, 1) !== size) b.fail(`cannot reshape [${b.shape(x)}] to [${target}]`);
  if (shape.length === b.shape(x).length && shape.every((d, i) => d === b.shape(x)[i])) return x;
  return lastAxisSliceOf(b, x, shape) ?? b.emit({ kind: 'reshape', inputs: [x], shape }, shape);
}

/**
 * Reshape [P, C/k, k] -> Cropping2D of the C/k axis -> this Reshape back to the first one's shape with fewer
 * channels (how the ONNX importer slices channels with standard layers: x.chunk(2, dim=1)) as one slice
 * of the last axis, when the two earlier layers feed only this chain. Undefined for anything else.
 */
function lastAxisSliceOf(b: IrBuilder, x: number, shape: number[]): number | undefined {
  const cut = b.fusable(x);
  const rows = cut?.kind === 'slice' ? b.fusable(cut.inputs[0]) : undefined;
  if (cut?.kind !== 'slice' || rows?.kind !== 'reshape') return undefined;
  const src = rows.inputs[0];
  const dims = b.shape(src);
  const [P, blocks, k] = rows.shape;
  const c = dims.length - 1;
  const chain = rows.shape.length === 3 && blocks * k === dims[c] && cut.begin[0] === 0 && cut.size[0] === P && cut.begin[2] === 0 && cut.size[2] === k;
  if (!chain || shape.length !== dims.length || shape[c] !== cut.size[1] * k || shape.some((d, i) => i < c && d !== dims[i])) return undefined;
  b.remove(cut);
  b.remove(rows);
  return b.emit({ kind: 'slice', inputs: [src], begin: dims.map((_, i) => (i === c ? cut.begin[1] * k : 0)), size: shape }, shape);
}

function pool(b: IrBuilder): number {
  const x = imageInput(b);
  const c = b.layer.config;
  const size = pair(c.poolSize, [2, 2]);
  const strides = pair(c.strides, size);
  const padding = paddingOf(b);
  const [H, W, C] = b.shape(x);
  const kind = b.layer.className === 'MaxPooling2D' ? 'maxpool' : 'avgpool';
  return b.emit({ kind, inputs: [x], pool: size, strides, padding }, [outSize(H, size[0], strides[0], 1, padding), outSize(W, size[1], strides[1], 1, padding), C]);
}

function globalPool(kind: 'gap' | 'gmp'): LayerConversion {
  return (b) => {
    const x = imageInput(b);
    const C = b.shape(x)[2];
    const y = b.emit({ kind, inputs: [x] }, [C], b.layer.config.keepDims === true ? kind : undefined);
    return b.layer.config.keepDims === true ? b.emit({ kind: 'reshape', inputs: [y], shape: [1, 1, C] }, [1, 1, C]) : y;
  };
}

function relu(b: IrBuilder): number {
  const x = b.input();
  const max = b.layer.config.maxValue as number | null | undefined;
  if (max === null || max === undefined) return b.activation(x, 'relu');
  if (max === 6) return b.activation(x, 'relu6');
  const y = unary('relu')(b, x);
  return binary(b, 'min', y, b.constant(Float32Array.of(max), [1], 'max_value'));
}

function gelu(approximate: boolean) {
  return (b: IrBuilder, x: number) => b.emit({ kind: 'gelu', inputs: [x], approximate }, b.shape(x).slice(), 'gelu');
}

/** tfjs's hardSigmoid: clip(0.2 x + 0.5, 0, 1) = relu6(1.2 x + 3) / 6. */
function hardSigmoid(b: IrBuilder, x: number): number {
  const a = affine(b, x, Float32Array.of(1.2), Float32Array.of(3), 'hard_sigmoid');
  const r = unary('relu6')(b, a);
  return affine(b, r, Float32Array.of(1 / 6), Float32Array.of(0), 'hard_sigmoid_out');
}

/** Keras 3's hard_sigmoid: relu6(x + 3) / 6. */
function hardSigmoidKeras3(b: IrBuilder, x: number): number {
  const a = affine(b, x, Float32Array.of(1), Float32Array.of(3), 'hard_sigmoid');
  const r = unary('relu6')(b, a);
  return affine(b, r, Float32Array.of(1 / 6), Float32Array.of(0), 'hard_sigmoid_out');
}

/** Activation functions by their tfjs (and Keras) names; relu/relu6 fuse into a preceding conv/dense/add. */
export const ACTIVATIONS: Record<string, { fuse?: Activation; ir: (b: IrBuilder, x: number) => number }> = {
  linear: { ir: (_b, x) => x },
  relu: { fuse: 'relu', ir: unary('relu') },
  relu6: { fuse: 'relu6', ir: unary('relu6') },
  sigmoid: { ir: unary('sigmoid') },
  tanh: { ir: unary('tanh') },
  softmax: { ir: unary('softmax') },
  elu: { ir: unary('elu') },
  swish: { ir: (b, x) => binary(b, 'mul', x, unary('sigmoid')(b, x), 'swish') },
  gelu: { ir: gelu(false) },
  gelu_new: { ir: gelu(true) },
  hardSigmoid: { ir: hardSigmoid },
  hard_sigmoid: { ir: hardSigmoid },
  hardSigmoidKeras3: { ir: hardSigmoidKeras3 },
  hard_sigmoid_keras3: { ir: hardSigmoidKeras3 },
  hardSwish: { ir: unary('hard_swish') },
  hard_swish: { ir: unary('hard_swish') },
};

// ---------------------------------------------------------------------------------------------
// the table

export const LAYERS: Record<string, LayerEntry> = {
  Dense: { ir: dense, tfjs: 'native', note: 'BatchNorm after it is folded in' },
  Conv2D: { ir: conv, tfjs: 'native', note: 'a ZeroPadding2D before it folds into SAME padding where exact' },
  GroupedConv2D: { ir: conv, tfjs: 'custom', note: 'Keras Conv2D with groups > 1 (RegNet), an ONNX Conv with 1 < group < channels (ResNeXt); TFLite CONV_2D v6, ONNX Conv group' },
  DepthwiseConv2D: { ir: conv, tfjs: 'native' },
  SeparableConv2D: { ir: conv, tfjs: 'native', note: 'depthwise + 1x1 conv; the quantize stage weight-quantizes the depthwise kernel only (it says so; the pointwise kernel stays float32 there), int8 exports quantize both' },
  Conv2DTranspose: { ir: convTranspose, check: TFJS_IGNORED_OPTIONS.Conv2DTranspose, tfjs: 'native', note: 'same/valid, dilation 1, no output_padding (as tfjs computes it); TFLite dynamic-int8 stores int8 weights + DEQUANTIZE (LiteRT has no hybrid TRANSPOSE_CONV kernel)' },
  BatchNormalization: { ir: batchNorm, tfjs: 'native', note: 'folded into a preceding conv/dense, else a per-channel multiply-add' },
  LayerNormalization: { ir: layerNorm, tfjs: 'native', note: 'last axis; mean/variance/rsqrt ops (full-int8 .tflite: the channel means as 1x1 convs, which LiteRT runs right)' },
  Activation: { ir: (b) => b.activation(b.input(), b.layer.config.activation), tfjs: 'native', note: Object.keys(ACTIVATIONS).join(', ') },
  ReLU: { ir: relu, tfjs: 'native', note: 'max_value 6 is ReLU6; other max_value a minimum' },
  LeakyReLU: { ir: (b) => { const x = b.input(); return b.emit({ kind: 'leaky_relu', inputs: [x], alpha: (b.layer.config.alpha as number) ?? 0.3 }, b.shape(x).slice()); }, tfjs: 'native' },
  ELU: {
    check: (c) => ((c.alpha ?? 1) === 1 ? undefined : `ELU with alpha ${String(c.alpha)} is not supported; use alpha 1`),
    ir: (b) => unary('elu')(b, b.input()),
    tfjs: 'native',
    note: 'alpha 1',
  },
  Softmax: { ir: (b) => { const x = b.input(); lastAxis(b, x, b.layer.config.axis); return unary('softmax')(b, x); }, tfjs: 'native' },
  Flatten: { ir: (b) => reshape(b, [-1]), tfjs: 'native' },
  Reshape: { ir: (b) => reshape(b, (b.layer.config.targetShape as number[]).slice()), tfjs: 'native' },
  Permute: {
    ir: (b) => {
      const x = b.input();
      const perm = (b.layer.config.dims as number[]).map((d) => d - 1);
      return b.emit({ kind: 'transpose', inputs: [x], perm }, perm.map((p) => b.shape(x)[p]));
    },
    tfjs: 'native',
  },
  MaxPooling2D: { ir: pool, tfjs: 'native' },
  AveragePooling2D: { ir: pool, tfjs: 'native' },
  GlobalAveragePooling2D: { ir: globalPool('gap'), tfjs: 'native' },
  GlobalMaxPooling2D: { ir: globalPool('gmp'), tfjs: 'native' },
  ZeroPadding2D: {
    ir: (b) => {
      const x = imageInput(b);
      const p = b.layer.config.padding as [[number, number], [number, number]];
      const [H, W, C] = b.shape(x);
      return b.emit({ kind: 'pad', inputs: [x], pads: [[p[0][0], p[0][1]], [p[1][0], p[1][1]]] }, [H + p[0][0] + p[0][1], W + p[1][0] + p[1][1], C]);
    },
    tfjs: 'native',
    note: 'folded into the next conv where exact, else a pad op',
  },
  Cropping2D: {
    ir: (b) => {
      const x = imageInput(b);
      const c = b.layer.config.cropping as [[number, number], [number, number]];
      const [H, W, C] = b.shape(x);
      const size = [H - c[0][0] - c[0][1], W - c[1][0] - c[1][1], C];
      if (size[0] <= 0 || size[1] <= 0) b.fail(`cropping ${JSON.stringify(c)} leaves nothing of [${b.shape(x)}]`);
      return b.emit({ kind: 'slice', inputs: [x], begin: [c[0][0], c[1][0], 0], size }, size);
    },
    tfjs: 'native',
  },
  UpSampling2D: {
    check: (c) => ((c.interpolation ?? 'nearest') === 'nearest' ? undefined : `interpolation '${String(c.interpolation)}' is not supported; use nearest`),
    ir: (b) => {
      const x = imageInput(b);
      const s = pair(b.layer.config.size, [2, 2]);
      const [H, W, C] = b.shape(x);
      return b.emit({ kind: 'resize', inputs: [x], size: [H * s[0], W * s[1]] }, [H * s[0], W * s[1], C]);
    },
    tfjs: 'native',
    note: 'nearest',
  },
  Add: { ir: (b) => mergeOf('add')(b), tfjs: 'native' },
  Subtract: { ir: mergeOf('sub'), tfjs: 'custom' },
  Multiply: { ir: mergeOf('mul'), tfjs: 'native', note: 'with broadcasting (squeeze-excitation)' },
  Maximum: { ir: mergeOf('max'), tfjs: 'native' },
  Minimum: { ir: mergeOf('min'), tfjs: 'native' },
  Average: { ir: mergeOf('add', (n) => 1 / n), tfjs: 'native' },
  Concatenate: {
    ir: (b) => {
      const ins = b.inputs();
      const shapes = ins.map((t) => b.shape(t));
      const rank = shapes[0].length;
      const raw = (b.layer.config.axis as number | undefined) ?? -1;
      const axis = raw < 0 ? rank + raw : raw - 1; // Keras axis counts the batch dimension
      if (axis < 0 || axis >= rank) b.fail(`concatenation axis ${raw} is out of range`);
      const shape = shapes[0].slice();
      shape[axis] = shapes.reduce((a, s) => a + s[axis], 0);
      return b.emit({ kind: 'concat', inputs: ins, axis }, shape);
    },
    tfjs: 'native',
  },
  Normalization: {
    check: (c) => ([undefined, null, -1].includes(c.axis as number) || (Array.isArray(c.axis) && c.axis.length === 1 && c.axis[0] === -1) ? undefined : `Normalization over axis ${JSON.stringify(c.axis)} is not supported; use the last axis (-1)`),
    ir: (b) => {
      // (x - mean) / max(sqrt(variance), 1e-7) as one per-channel multiply-add.
      const mean = (b.weight('mean') ?? b.fail('has no mean weight')).data;
      const variance = (b.weight('variance') ?? b.fail('has no variance weight')).data;
      const scale = variance.map((v) => 1 / Math.max(Math.sqrt(v), 1e-7));
      return affine(b, b.input(), scale, mean.map((m, i) => -m * scale[i]), 'normalization');
    },
    tfjs: 'custom',
    note: 'last axis; a per-channel multiply-add',
  },
  LayerScale: { ir: layerScale, tfjs: 'custom', note: 'keras.applications ConvNeXt; folded into a preceding conv/dense, else a per-channel multiply' },
  CustomScaleLayer: { ir: customScale, tfjs: 'custom', note: 'keras.applications InceptionResNetV2: x + r * scale (the scale folded into the conv computing r)' },
  Rescaling: {
    ir: (b) => affine(b, b.input(), Float32Array.of(b.layer.config.scale as number), Float32Array.of((b.layer.config.offset as number) ?? 0), 'rescale'),
    tfjs: 'native',
  },
};

const SUPPORTED_LIST = () => Object.keys(LAYERS).sort().join(', ');

/**
 * Why a layer cannot be exported to the graph targets (tflite, onnx), from its class and tfjs
 * (camelCase) config alone: the class, the data format, the activation and the entry's own check.
 * buildIr runs it on every layer; `validate` and `run` run it on the model file before any stage.
 */
export function staticLayerProblem(className: string, config: Record<string, unknown>): string | undefined {
  if (className === 'InputLayer' || IDENTITY_LAYERS.has(className)) return undefined;
  const entry = LAYERS[className];
  if (!entry) return `layer type ${className} is not supported (supported: ${SUPPORTED_LIST()}); replace or remove it before export`;
  if (config.dataFormat !== undefined && config.dataFormat !== 'channelsLast') return `data format ${String(config.dataFormat)} is not supported; use channelsLast`;
  const act = config.activation;
  if (act !== undefined && act !== null && !(String(act) in ACTIVATIONS)) return `activation '${String(act)}' is not supported; use one of ${Object.keys(ACTIVATIONS).join(', ')}`;
  return entry.check?.(config);
}
