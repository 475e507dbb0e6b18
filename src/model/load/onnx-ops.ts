import type * as tfType from '@tensorflow/tfjs';
import { samePads } from '../../export/ir.js';
import type { NodeCtx, Sym, Val } from './onnx-convert.js';
import { axisOf, binary, broadcastShape, concat, constOf, gather, intConst, reshapeTarget, size, slice, transpose } from './onnx-fold.js';
import type { Const } from './onnx-read.js';

/**
 * The op table: one entry per ONNX op type (and per fused pattern from onnx-fuse.ts), each with
 * its conversion into standard Keras layers (`convert`, when an input is computed) and/or its
 * constant folding (`fold`, when every input is a constant).
 */
export interface OpEntry {
  fold?(c: NodeCtx): void;
  convert?(c: NodeCtx): void;
}

type ST = tfType.SymbolicTensor;
const F32 = (n: number, v = 0): Float32Array => new Float32Array(n).fill(v);

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** Keeps the ONNX-side bookkeeping of an elementwise op (any layout survives it). */
const like = (s: Sym, t: ST, lower?: number): Sym => ({ ...s, t, lower });

function activation(name: string, lower?: number): OpEntry {
  return {
    convert(c) {
      const s = c.sym(0);
      c.out(like(s, c.layer('activation', { activation: name }, s.t), lower));
    },
  };
}

/** The channel axis of a value: 1 for images (NCHW), else the last axis. */
const channelAxis = (s: Sym): number => (s.layout === 'nchw' || s.layout === 'gap' ? 1 : s.shape.length - 1);

/**
 * A constant that broadcasts against `s` only along its channel axis, as a vector of the channel
 * count (a scalar is repeated). Fails for anything else (a full-tensor constant).
 */
function channelVector(c: NodeCtx, s: Sym, k: Const): Float32Array {
  const r = s.shape.length;
  const ax = channelAxis(s);
  const C = s.shape[ax];
  const off = r - k.dims.length;
  if (off < 0 || k.dims.some((d, i) => d !== 1 && (i + off !== ax || d !== C))) {
    c.fail(`a constant of shape [${k.dims.join(', ')}] applied to a tensor of shape [${s.shape.join(', ')}] is supported only as a scalar or per-channel vector`);
  }
  return k.data.length === 1 ? F32(C, k.data[0]) : Float32Array.from(k.data);
}

/**
 * y = x * scale + shift per channel, as a frozen BatchNormalization layer (mean 0, variance 1 - eps; trainable false:
 * training runs it in inference mode, as Keras runs a frozen batch norm, so fine-tuning keeps the constants).
 */
function affine(c: NodeCtx, s: Sym, scale: Float32Array, shift: Float32Array, suffix?: string): Sym {
  if (scale.every((v) => v === 1) && shift.every((v) => v === 0)) return s;
  const scalar = scale.every((v) => v === scale[0]) && shift.every((v) => v === shift[0]);
  const src = s.layout === 'flat' && !scalar ? { ...s, t: c.plain(s), layout: 'plain' as const } : s;
  const n = src.t.shape[src.t.shape.length - 1] as number;
  const vec = (v: Float32Array): Float32Array => (v.length === n ? v : F32(n, v[0]));
  const eps = 1e-3;
  const t = c.layer('batchNormalization', { axis: -1, epsilon: eps, gammaInitializer: 'ones', trainable: false }, src.t, [
    { data: vec(scale), shape: [n] },
    { data: vec(shift), shape: [n] },
    { data: F32(n, 0), shape: [n] },
    { data: F32(n, 1 - eps), shape: [n] },
  ], suffix);
  return like(src, t);
}

/** ReLU clipped at `max` (ReLU6 for 6), or plain ReLU when max is infinite. */
function relu(c: NodeCtx, s: Sym, max: number, suffix?: string): Sym {
  const t = Number.isFinite(max) ? c.layer('reLU', { maxValue: max }, s.t, undefined, suffix) : c.layer('activation', { activation: 'relu' }, s.t, undefined, suffix);
  return like(s, t, 0);
}

function clip(c: NodeCtx, s: Sym, min: number, max: number): Sym {
  if (min === 0) return relu(c, s, max);
  if (min === -Infinity && max === Infinity) return s;
  const C = s.shape[channelAxis(s)];
  if (min === -Infinity) {
    // min(x, max) = max - relu(max - x)
    const neg = affine(c, s, F32(C, -1), F32(C, max), 'flip');
    return affine(c, relu(c, neg, Infinity), F32(C, -1), F32(C, max), 'unflip');
  }
  const shifted = affine(c, s, F32(C, 1), F32(C, -min), 'shift');
  return { ...affine(c, relu(c, shifted, max - min), F32(C, 1), F32(C, min), 'unshift'), lower: min };
}

function hardSigmoid(c: NodeCtx, s: Sym, alpha: number, beta: number): Sym {
  const C = s.shape[channelAxis(s)];
  return relu(c, affine(c, s, F32(C, alpha), F32(C, beta), 'affine'), 1);
}

interface Spatial {
  kernel: [number, number];
  strides: [number, number];
  dilations: [number, number];
  /** [top, left, bottom, right]. */
  pads: [number, number, number, number];
}

/** Kernel / stride / dilation / pads of a Conv or pool node on an NCHW input of spatial size h x w. */
function spatialAttrs(c: NodeCtx, h: number, w: number, kernel: number[], ceil = false): Spatial {
  if (kernel.length !== 2) c.fail(`only 2-D kernels are supported (kernel_shape [${kernel.join(', ')}])`);
  const strides = c.attrInts('strides', [1, 1]) as [number, number];
  const dilations = c.attrInts('dilations', [1, 1]) as [number, number];
  const autoPad = c.attrStr('auto_pad', 'NOTSET');
  let pads = c.attrInts('pads', [0, 0, 0, 0]) as [number, number, number, number];
  const k = kernel as [number, number];
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    const [a, b] = samePads(h, k[0], strides[0], dilations[0]);
    const [l, r] = samePads(w, k[1], strides[1], dilations[1]);
    pads = autoPad === 'SAME_UPPER' ? [a, l, b, r] : [b, r, a, l];
  } else if (autoPad === 'VALID') pads = [0, 0, 0, 0];
  if (ceil) {
    // Extra end padding so the floor formula gives ceil_mode's size (last window starting inside the input).
    const extra = (inp: number, kk: number, s: number, d: number, p0: number, p1: number): number => {
      const eff = (kk - 1) * d + 1;
      let out = Math.ceil((inp + p0 + p1 - eff) / s) + 1;
      if ((out - 1) * s >= inp + p0) out--;
      return Math.max(0, (out - 1) * s + eff - (inp + p0 + p1));
    };
    pads = [pads[0], pads[1], pads[2] + extra(h, k[0], strides[0], dilations[0], pads[0], pads[2]), pads[3] + extra(w, k[1], strides[1], dilations[1], pads[1], pads[3])];
  }
  return { kernel: k, strides, dilations, pads };
}

function outSpatial(h: number, w: number, sp: Spatial): [number, number] {
  const o = (inp: number, i: 0 | 1) => Math.floor((inp + sp.pads[i] + sp.pads[i + 2] - ((sp.kernel[i] - 1) * sp.dilations[i] + 1)) / sp.strides[i]) + 1;
  return [o(h, 0), o(w, 1)];
}

/**
 * The input and Keras padding for a windowed op: 'valid' without pads, 'same' when the pads are
 * TF's SAME pads, else an explicit ZeroPadding2D (for max pooling only when the input is >= 0, so
 * zeros never win over the -inf padding ONNX means).
 */
function padFor(c: NodeCtx, s: Sym, sp: Spatial, kind: 'conv' | 'max' | 'avg', countIncludePad = false): { t: ST; padding: 'same' | 'valid' } {
  const [pt, pl, pb, pr] = sp.pads;
  if (pt === 0 && pl === 0 && pb === 0 && pr === 0) return { t: c.nhwc(s), padding: 'valid' };
  const [h, w] = [s.shape[2], s.shape[3]];
  const [a, b] = samePads(h, sp.kernel[0], sp.strides[0], sp.dilations[0]);
  const [l, r] = samePads(w, sp.kernel[1], sp.strides[1], sp.dilations[1]);
  const same = a === pt && b === pb && l === pl && r === pr;
  if (same && (kind === 'conv' || kind === 'max' || !countIncludePad)) return { t: c.nhwc(s), padding: 'same' };
  if (kind === 'max' && !(s.lower !== undefined && s.lower >= 0)) {
    c.fail(`padding [${sp.pads.join(', ')}] differs from TF 'same' padding and the input has no known lower bound, so it cannot be expressed with zero padding`, 'use padding that matches TF SAME, or put the pooling after a bounded activation (ReLU, tanh, ELU...)');
  }
  if (kind === 'avg' && !countIncludePad) {
    c.fail(`average pooling with padding [${sp.pads.join(', ')}] that excludes the padding (count_include_pad=0) and differs from TF 'same' padding is not supported`, 'use count_include_pad=True, or no padding');
  }
  if (Math.min(pt, pl, pb, pr) < 0) c.fail(`negative padding [${sp.pads.join(', ')}] is not supported`);
  return { t: c.layer('zeroPadding2d', { padding: [[pt, pb], [pl, pr]] }, c.nhwc(s), undefined, 'pad'), padding: 'valid' };
}

const requireImage = (c: NodeCtx, s: Sym): void => {
  if (s.shape.length !== 4) c.fail(`only 2-D (rank-4 NCHW) inputs are supported, got shape [${s.shape.join(', ')}]`, 'Conv1d/Conv3d and 1-D/3-D pooling are not supported');
};

// ---------------------------------------------------------------------------------------------
// Weight layouts (ONNX -> Keras)

/** Conv weight [O, I, kh, kw] -> Keras Conv2D kernel [kh, kw, I, O]. */
function convKernel(w: Const): Float32Array {
  return transpose(Float32Array.from(w.data), w.dims, [2, 3, 1, 0]).data;
}

/** Depthwise weight [C*M, 1, kh, kw] -> Keras DepthwiseConv2D kernel [kh, kw, C, M]. */
function depthwiseKernel(w: Const, C: number): Float32Array {
  const [O, , kh, kw] = w.dims;
  return transpose(Float32Array.from(w.data), [C, O / C, kh, kw], [2, 3, 0, 1]).data;
}

/**
 * Rows of a Dense kernel [K, N] reordered for its input's tfjs order: a `flat` input is the
 * NHWC flattening of an NCHW tensor, so tfjs row j = (h*W + w)*C + c takes ONNX row c*H*W + h*W + w.
 */
function rowsFor(s: Sym, kernel: Float32Array, N: number): Float32Array {
  if (s.layout !== 'flat') return kernel;
  const [, C, H, W] = s.src!.shape;
  const out = new Float32Array(kernel.length);
  for (let h = 0; h < H; h++) {
    for (let w = 0; w < W; w++) {
      for (let ch = 0; ch < C; ch++) {
        const j = (h * W + w) * C + ch;
        const i = ch * H * W + h * W + w;
        out.set(kernel.subarray(i * N, (i + 1) * N), j * N);
      }
    }
  }
  return out;
}

/** A Dense layer for x @ kernel + bias over the last axis of `s` (plain / flat / gap). */
function dense(c: NodeCtx, s: Sym, kernel: Float32Array, K: number, N: number, bias?: Float32Array): Sym {
  if (s.layout === 'nchw') c.fail(`a matrix product on the rank-4 tensor [${s.shape.join(', ')}] is not supported`, 'flatten the tensor first');
  if (s.shape[s.shape.length - 1] !== K) c.fail(`input has ${s.shape[s.shape.length - 1]} features but the weight has ${K} rows`);
  const t = c.layer('dense', { units: N, useBias: bias !== undefined, kernelInitializer: 'zeros' }, s.t, [{ data: rowsFor(s, kernel, N), shape: [K, N] }, ...(bias ? [{ data: bias, shape: [N] }] : [])]);
  return { kind: 'sym', t, shape: [...s.shape.slice(0, -1), N], layout: 'plain' };
}

function biasVector(c: NodeCtx, k: Const | undefined, N: number, scale = 1): Float32Array | undefined {
  if (!k) return undefined;
  if (k.data.length !== 1 && k.data.length !== N) c.fail(`bias of shape [${k.dims.join(', ')}] does not broadcast to ${N} outputs`);
  return k.data.length === 1 ? F32(N, k.data[0] * scale) : Float32Array.from(k.data, (v) => v * scale);
}

/** Reshapes `s` to the ONNX shape `out` (batch first), reusing tensors where the layouts allow. */
function reshapeSym(c: NodeCtx, s: Sym, out: number[]): Sym {
  if (out[0] !== 1) c.fail(`reshaping [${s.shape.join(', ')}] to [${out.join(', ')}] would move the batch axis`, 'keep the batch as the first dimension (x.view(x.size(0), -1))');
  if (out.length === s.shape.length && out.every((d, i) => d === s.shape[i])) return s;
  const lower = s.lower;
  if (s.layout === 'gap' && out.length <= 4 && out.slice(1).filter((d) => d !== 1).every((d) => d === s.shape[1]) && out[1] === s.shape[1]) {
    // [N, C, 1, 1] <-> [N, C] (or [N, C, 1]): the same elements in the same order.
    return out.length === 4 ? { ...s, shape: out } : { kind: 'sym', t: s.t, shape: out, layout: 'plain', lower };
  }
  if (out.length === 2 && s.layout === 'nchw') {
    const [, C, H, W] = s.shape;
    const t = c.layer('flatten', {}, s.t);
    // NHWC and NCHW flatten alike when there is one channel or one pixel.
    return C === 1 || H * W === 1 ? { kind: 'sym', t, shape: out, layout: 'plain', lower } : { kind: 'sym', t, shape: out, layout: 'flat', src: s, lower };
  }
  if (out.length === 2 && s.layout === 'flat') return s;
  const p = c.plain(s);
  const t = out.length === 2 && p.shape.length > 2 ? c.layer('flatten', {}, p) : c.layer('reshape', { targetShape: out.slice(1) }, p);
  return { kind: 'sym', t, shape: out, layout: 'plain', lower };
}

/** A range [begin, end) of one ONNX axis, clamped to it. */
interface Cut {
  axis: number;
  begin: number;
  end: number;
}

/**
 * Elements begin..end of the tfjs tensor's last axis (an image's channels, a vector's features) with
 * standard layers: Reshape [P, C/k, k] (the same element order, free; k divides begin, end and C) ->
 * Cropping2D of the C/k axis -> Reshape back. Blocks of k make the crop copy k values at a time
 * (x.chunk(2, dim=1): two blocks of C/2); the export IR turns the three into one slice (src/export/layers.ts).
 */
function lastAxisSlice(c: NodeCtx, t: ST, begin: number, end: number): ST {
  const dims = t.shape.slice(1) as number[];
  const C = dims[dims.length - 1];
  if (begin === 0 && end === C) return t;
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const k = gcd(gcd(C, begin), end);
  const rows = c.layer('reshape', { targetShape: [size(dims.slice(0, -1)), C / k, k] }, t, undefined, 'slice_rows');
  const cut = c.layer('cropping2D', { cropping: [[0, 0], [begin / k, (C - end) / k]] }, rows, undefined, 'slice_crop');
  return c.layer('reshape', { targetShape: [...dims.slice(0, -1), end - begin] }, cut, undefined, 'slice');
}

/**
 * A box of `s` (unit steps): crops of an image's spatial axes as Cropping2D, of the axis the tfjs
 * tensor holds last (an image's channels, x.chunk(2, dim=1); a vector's features) as lastAxisSlice.
 */
function sliceSym(c: NodeCtx, s: Sym, cuts: Cut[]): Sym {
  const live = cuts.filter((k) => k.begin !== 0 || k.end !== s.shape[k.axis]);
  if (!live.length) return s;
  const empty = live.find((k) => k.end <= k.begin);
  if (empty) c.fail(`the slice [${empty.begin}, ${empty.end}) of axis ${empty.axis} of [${s.shape.join(', ')}] is empty`);
  const src = s.layout === 'flat' ? { ...s, t: c.plain(s), layout: 'plain' as const } : s;
  const last = channelAxis(src);
  const spatial = live.filter((k) => src.layout === 'nchw' && k.axis >= 2);
  if (live.some((k) => k.axis !== last && !spatial.includes(k))) {
    c.fail(`only slices of the channel / last axis or of an image's spatial axes are supported (axes [${live.map((k) => k.axis).join(', ')}] of [${s.shape.join(', ')}])`);
  }
  const shape = s.shape.slice();
  for (const { axis, begin, end } of live) shape[axis] = end - begin;
  let t = src.t;
  if (spatial.length) {
    const crop = [[0, 0], [0, 0]];
    for (const k of spatial) crop[k.axis - 2] = [k.begin, s.shape[k.axis] - k.end];
    t = c.layer('cropping2D', { cropping: crop }, t);
  }
  const ch = live.find((k) => k.axis === last);
  if (ch) t = lastAxisSlice(c, t, ch.begin, ch.end);
  return { kind: 'sym', t, shape, layout: src.layout, lower: s.lower };
}

/** The [begin, end) of each Split output along an axis of length `d` (split sizes, num_outputs, or equal parts). */
function splitRanges(c: NodeCtx, d: number): Array<[number, number]> {
  const n = c.node.outputs.length;
  const given = c.opset >= 13 ? (c.has(1) ? c.ints(1) : undefined) : (c.attr('split') as number[] | undefined);
  const chunk = c.opset >= 18 && !given ? Math.ceil(d / c.attrInt('num_outputs', n)) : d / n;
  const sizes = given ?? Array.from({ length: n }, (_, i) => Math.min(chunk, d - i * chunk));
  if (sizes.length !== n || sizes.some((v) => !Number.isInteger(v) || v < 0) || sizes.reduce((a, v) => a + v, 0) !== d) {
    c.fail(`cannot split an axis of ${d} into ${n} outputs of sizes [${sizes.join(', ')}]`);
  }
  let at = 0;
  return sizes.map((v) => [at, (at += v)]);
}

/** Transposes `s` by the ONNX permutation `perm` (batch axis fixed), reusing tensors where the layouts allow. */
function transposeSym(c: NodeCtx, s: Sym, perm: number[]): Sym {
  if (perm[0] !== 0) c.fail(`a transpose that moves the batch axis (perm [${perm.join(', ')}]) is not supported`);
  const shape = perm.map((p) => s.shape[p]);
  if (perm.every((p, i) => p === i)) return s;
  // NCHW -> NHWC is what the tfjs tensor already holds.
  if (s.layout === 'nchw' && perm.join() === '0,2,3,1') return { kind: 'sym', t: s.t, shape, layout: 'plain', lower: s.lower };
  // ...and a plain NHWC tensor transposed to NCHW is the NHWC tensor an 'nchw' value holds.
  if (s.layout === 'plain' && s.shape.length === 4 && perm.join() === '0,3,1,2') return { kind: 'sym', t: s.t, shape, layout: 'nchw', lower: s.lower };
  return { kind: 'sym', t: c.layer('permute', { dims: perm.slice(1) }, c.plain(s)), shape, layout: 'plain', lower: s.lower };
}

/**
 * ShuffleNet's channel_shuffle on an image, Reshape [N, g, C/g, H, W] -> Transpose(0, 2, 1, 3, 4) ->
 * Reshape [N, C, H, W], on the NHWC tensor itself: Reshape [H, W, g, C/g] -> Permute -> Reshape [H, W, C]
 * (channel j*g + i takes channel i*C/g + j either way). Undefined when the shapes are not that.
 */
function channelShuffle(c: NodeCtx, s: Sym, grouped: number[], out: number[]): Sym | undefined {
  if (s.layout !== 'nchw' || grouped.length !== 5 || out.join() !== s.shape.join()) return undefined;
  const [, C, H, W] = s.shape;
  const [, g, k, h, w] = grouped;
  if (g * k !== C || h !== H || w !== W) return undefined;
  const split = c.layer('reshape', { targetShape: [H, W, g, k] }, s.t, undefined, 'channel_shuffle_split');
  const swapped = c.layer('permute', { dims: [1, 2, 4, 3] }, split, undefined, 'channel_shuffle_permute');
  return { kind: 'sym', t: c.layer('reshape', { targetShape: [H, W, C] }, swapped, undefined, 'channel_shuffle'), shape: out, layout: 'nchw', lower: s.lower };
}

const isInt = (c: Const): boolean => c.int;
function foldBinary(f: (x: number, y: number) => number, intOp?: (x: number, y: number) => number): OpEntry['fold'] {
  return (c) => {
    const a = c.const(0);
    const b = c.const(1);
    const int = isInt(a) && isInt(b);
    const r = binary(a, b, int && intOp ? intOp : f, int);
    if (!r) c.fail(`shapes [${a.dims.join(', ')}] and [${b.dims.join(', ')}] do not broadcast`);
    c.outConst(r!);
  };
}

/** Add / Sub / Mul / Div with one computed input. */
function arithmetic(op: 'Add' | 'Sub' | 'Mul' | 'Div'): OpEntry {
  const fold = {
    Add: (x: number, y: number) => x + y,
    Sub: (x: number, y: number) => x - y,
    Mul: (x: number, y: number) => x * y,
    Div: (x: number, y: number) => x / y,
  }[op];
  return {
    fold: foldBinary(fold, op === 'Div' ? (x, y) => Math.trunc(x / y) : undefined),
    convert(c) {
      const a = c.val(0);
      const b = c.val(1);
      if (a.kind === 'sym' && b.kind === 'sym') return c.out(elementwise(c, op, a, b));
      const s = (a.kind === 'sym' ? a : b) as Sym;
      const k = (a.kind === 'const' ? a : b) as { c: Const };
      const constFirst = a.kind === 'const';
      const v = channelVector(c, s, k.c);
      const one = F32(v.length, 1);
      const zero = F32(v.length, 0);
      let out: Sym;
      if (op === 'Add') out = affine(c, s, one, v);
      else if (op === 'Sub') out = constFirst ? affine(c, s, F32(v.length, -1), v) : affine(c, s, one, v.map((x) => -x));
      else if (op === 'Mul') out = affine(c, s, v, zero);
      else {
        if (constFirst) return c.fail('dividing a constant by a computed tensor is not supported');
        out = affine(c, s, v.map((x) => 1 / x), zero);
      }
      const sign = op === 'Mul' || op === 'Div' ? v.every((x) => x >= 0) : false;
      c.out({ ...out, lower: s.lower !== undefined && s.lower >= 0 && sign ? 0 : undefined });
    },
  };
}

/** Two computed tensors: Add / Subtract / Multiply layers (broadcasting as tfjs does). */
function elementwise(c: NodeCtx, op: 'Add' | 'Sub' | 'Mul' | 'Div', a: Sym, b: Sym): Sym {
  if (op === 'Div') c.fail('dividing by a computed tensor is not supported');
  const factory = { Add: 'add', Sub: 'subtract', Mul: 'multiply' }[op as 'Add' | 'Sub' | 'Mul'];
  const shape = broadcastShape(a.shape, b.shape);
  if (!shape) return c.fail(`shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] do not broadcast`);
  const lower = a.lower === undefined || b.lower === undefined ? undefined : op === 'Add' ? a.lower + b.lower : op === 'Mul' && a.lower >= 0 && b.lower >= 0 ? 0 : undefined;
  if (a.layout === b.layout && (a.layout === 'gap' || (a.layout === 'flat' && a.shape[1] === b.shape[1]))) {
    return { ...a, t: c.layer(factory, {}, [a.t, b.t]), lower };
  }
  if (shape.length === 4) return { kind: 'sym', t: c.layer(factory, {}, [c.nhwc(a), c.nhwc(b)]), shape, layout: 'nchw', lower };
  return { kind: 'sym', t: c.layer(factory, {}, [c.plain(a), c.plain(b)]), shape, layout: 'plain', lower };
}

/** A mean / max over the spatial axes of an NCHW tensor (x.mean((2, 3)), x.amax((2, 3))): the global pooling it is. */
function spatialReduce(what: 'mean' | 'max', factory: 'globalAveragePooling2d' | 'globalMaxPooling2d'): OpEntry {
  return {
    convert(c) {
      const s = c.sym(0);
      const axes = (axesOf(c, 18) ?? []).map((a) => axisOf(a, s.shape.length)).sort();
      if (s.layout !== 'nchw' || axes.join() !== '2,3') c.fail(`only a ${what} over the spatial axes of an NCHW tensor is supported (axes [${axes.join(', ')}] of [${s.shape.join(', ')}])`);
      const t = c.layer(factory, {}, s.t);
      const keep = c.attrInt('keepdims', 1) === 1;
      c.out(keep ? { kind: 'sym', t, shape: [1, s.shape[1], 1, 1], layout: 'gap', lower: s.lower } : { kind: 'sym', t, shape: [1, s.shape[1]], layout: 'plain', lower: s.lower });
    },
  };
}

function pool(kind: 'max' | 'avg'): OpEntry {
  return {
    convert(c) {
      const s = c.sym(0);
      requireImage(c, s);
      if (c.node.outputs.length > 1 && c.node.outputs[1]) c.fail('the Indices output of MaxPool is not supported');
      const sp = spatialAttrs(c, s.shape[2], s.shape[3], c.attrInts('kernel_shape'), c.attrInt('ceil_mode', 0) === 1);
      if (sp.dilations.some((d) => d !== 1)) c.fail('dilated pooling is not supported');
      const countInclude = c.attrInt('count_include_pad', 0) === 1;
      // Max pooling pads with -inf: zero padding is exact on values >= 0, so a negative lower bound is shifted away and back.
      const shift = kind === 'max' && s.lower !== undefined && s.lower < 0 && sp.pads.some((p) => p > 0) ? -s.lower : 0;
      const C = s.shape[1];
      const x = shift ? { ...affine(c, s, F32(C, 1), F32(C, shift), 'shift'), lower: 0 } : s;
      const { t, padding } = padFor(c, x, sp, kind, countInclude);
      const [ho, wo] = outSpatial(s.shape[2], s.shape[3], sp);
      const y: Sym = { kind: 'sym', t: c.layer(kind === 'max' ? 'maxPooling2d' : 'averagePooling2d', { poolSize: sp.kernel, strides: sp.strides, padding }, t), shape: [1, C, ho, wo], layout: 'nchw', lower: x.lower };
      c.out(shift ? { ...affine(c, y, F32(C, 1), F32(C, -shift), 'unshift'), lower: s.lower } : y);
    },
  };
}

function globalPool(kind: 'max' | 'avg'): OpEntry {
  return {
    convert(c) {
      const s = c.sym(0);
      requireImage(c, s);
      const t = c.layer(kind === 'max' ? 'globalMaxPooling2d' : 'globalAveragePooling2d', {}, c.nhwc(s));
      c.out({ kind: 'sym', t, shape: [1, s.shape[1], 1, 1], layout: 'gap', lower: s.lower });
    },
  };
}

const EVAL_HINT = 'export the model in eval mode: call model.eval() before torch.onnx.export and keep its default training=torch.onnx.TrainingMode.EVAL';

/** Dropout is the identity at inference; a graph exported in training mode (training_mode input true) drops at random. */
function dropoutInference(c: NodeCtx): Val {
  if (c.opset >= 12 && c.has(2) && c.isConst(2) && c.const(2).data[0] !== 0) c.fail('exported in training mode (training_mode is true, so it zeroes activations at random)', EVAL_HINT);
  return c.val(0);
}

/**
 * The input index ONNX's nearest-neighbour Resize reads for output index `i` along one axis (the
 * spec's coordinate transformation, then its rounding), or undefined for a transformation not handled.
 */
function nearestSource(i: number, scale: number, inLen: number, outLen: number, transform: string, rounding: string): number | undefined {
  let x: number;
  if (transform === 'half_pixel' || transform === 'half_pixel_symmetric') x = (i + 0.5) / scale - 0.5;
  else if (transform === 'pytorch_half_pixel') x = outLen > 1 ? (i + 0.5) / scale - 0.5 : 0;
  else if (transform === 'asymmetric') x = i / scale;
  else if (transform === 'align_corners') x = outLen === 1 ? 0 : (i * (inLen - 1)) / (outLen - 1);
  else return undefined;
  const frac = x - Math.floor(x);
  const r =
    rounding === 'floor' ? Math.floor(x)
    : rounding === 'ceil' ? Math.ceil(x)
    : frac === 0.5 ? (rounding === 'round_prefer_ceil' ? Math.ceil(x) : Math.floor(x))
    : Math.round(x);
  return Math.min(Math.max(r, 0), inLen - 1);
}

/**
 * Resize (and opset 9's Upsample) by whole-number factors with nearest-neighbour sampling that
 * repeats each pixel (nn.Upsample(scale_factor=2), F.interpolate(x, scale_factor=2)) as an
 * UpSampling2D layer; the coordinate transformation and rounding are checked to repeat pixels.
 * Scales are input 1 (Upsample, Resize-10) or 2, else output sizes are input 3 (Resize-11 on).
 */
function resize(): OpEntry {
  return {
    convert(c) {
      const s = c.sym(0);
      const [scalesAt, sizesAt] = c.node.opType === 'Resize' && c.opset >= 11 ? [2, 3] : [1, undefined];
      requireImage(c, s);
      const mode = c.attrStr('mode', 'nearest');
      if (mode !== 'nearest') {
        c.fail(`${mode} interpolation is not supported (only nearest, by whole-number factors)`, "use nearest upsampling (nn.Upsample(scale_factor=2) or F.interpolate(x, scale_factor=2), mode='nearest'): it is what the TFLite and ONNX exports write");
      }
      const axes = (c.attr('axes') as number[] | undefined)?.map((a) => axisOf(a, 4)) ?? [0, 1, 2, 3];
      const full = (v: ArrayLike<number>, def: number[]): number[] => {
        const out = def.slice();
        axes.forEach((a, j) => (out[a] = v[j]));
        return out;
      };
      const scales = c.has(scalesAt) && c.const(scalesAt).data.length > 0 ? full(c.const(scalesAt).data, [1, 1, 1, 1]) : undefined;
      const sizes = !scales && sizesAt !== undefined && c.has(sizesAt) ? full(c.ints(sizesAt), s.shape) : undefined;
      if (!scales && !sizes) c.fail('has neither scales nor sizes');
      const out = sizes ?? s.shape.map((d, i) => Math.floor(d * scales![i]));
      if (out[0] !== s.shape[0] || out[1] !== s.shape[1]) c.fail(`resizing the batch or channel axis ([${s.shape.join(', ')}] to [${out.join(', ')}]) is not supported`);
      const [, C, H, W] = s.shape;
      const factors = [out[2] / H, out[3] / W];
      if (factors.some((f) => !Number.isInteger(f) || f < 1)) {
        c.fail(`only upsampling by whole-number factors is supported ([${s.shape.join(', ')}] to [${out.join(', ')}])`, 'use scale_factor=2 (or another integer)');
      }
      const transform = c.opset >= 11 ? c.attrStr('coordinate_transformation_mode', 'half_pixel') : 'asymmetric';
      const rounding = c.opset >= 11 ? c.attrStr('nearest_mode', 'round_prefer_floor') : 'floor';
      [H, W].forEach((len, k) => {
        const scale = scales ? scales[k + 2] : factors[k];
        for (let i = 0; i < len * factors[k]; i++) {
          if (nearestSource(i, scale, len, len * factors[k], transform, rounding) !== Math.floor(i / factors[k])) {
            c.fail(`nearest resize with coordinate_transformation_mode '${transform}' and nearest_mode '${rounding}' does not repeat pixels, which is the only upsampling supported`, "export nn.Upsample / F.interpolate with mode='nearest' and align_corners unset");
          }
        }
      });
      if (factors[0] === 1 && factors[1] === 1) return c.out(s);
      const t = c.layer('upSampling2d', { size: factors, interpolation: 'nearest' }, c.nhwc(s));
      c.out({ kind: 'sym', t, shape: [1, C, out[2], out[3]], layout: 'nchw', lower: s.lower });
    },
  };
}

/** Axes from the attribute (older opsets) or from input `i` (newer ones). */
function axesOf(c: NodeCtx, sinceOpset: number, i = 1): number[] | undefined {
  if (c.opset >= sinceOpset) return c.has(i) ? c.ints(i) : undefined;
  const a = c.attr('axes');
  return Array.isArray(a) ? (a as number[]) : undefined;
}

function squeezeShape(c: NodeCtx, dims: number[], axes: number[] | undefined): number[] {
  const ax = (axes ?? dims.map((d, i) => (d === 1 && i > 0 ? i : -1)).filter((i) => i >= 0)).map((a) => axisOf(a, dims.length));
  for (const a of ax) if (dims[a] !== 1) c.fail(`cannot squeeze axis ${a} of size ${dims[a]}`);
  return dims.filter((_, i) => !ax.includes(i));
}

function unsqueezeShape(dims: number[], axes: number[]): number[] {
  const r = dims.length + axes.length;
  const ax = axes.map((a) => axisOf(a, r));
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < r; i++) out.push(ax.includes(i) ? 1 : dims[j++]);
  return out;
}

const reshaped = (k: Const, dims: number[]): Const => ({ ...k, dims });

/** A 2-D Conv (groups 1 / depthwise / grouped) of the node's input 0 with weight `w` ([O, I / groups, kh, kw]) and `bias`. */
function convolution(c: NodeCtx, w: Const, bias: Float32Array): void {
  const s = c.sym(0);
  requireImage(c, s);
  const [O, Ig, kh, kw] = w.dims;
  const I = s.shape[1];
  const groups = c.attrInt('group', 1);
  if (Ig * groups !== I) c.fail(`weight [${w.dims.join(', ')}] with group=${groups} does not match ${I} input channels`);
  const sp = spatialAttrs(c, s.shape[2], s.shape[3], c.attrInts('kernel_shape', [kh, kw]));
  if (sp.strides.some((v) => v > 1) && sp.dilations.some((v) => v > 1)) c.fail('a convolution with both stride > 1 and dilation > 1 is not supported by tfjs');
  const { t, padding } = padFor(c, s, sp, 'conv');
  const common = { kernelSize: sp.kernel, strides: sp.strides, dilationRate: sp.dilations, padding, useBias: true, biasInitializer: 'zeros' };
  let y: ST;
  if (groups === I && Ig === 1 && groups > 1) {
    y = c.layer('depthwiseConv2d', { ...common, depthMultiplier: O / I, depthwiseInitializer: 'zeros' }, t, [
      { data: depthwiseKernel(w, I), shape: [kh, kw, I, O / I] },
      { data: bias, shape: [O] },
    ]);
  } else if (groups === 1) {
    y = c.layer('conv2d', { ...common, filters: O, kernelInitializer: 'zeros' }, t, [{ data: convKernel(w), shape: [kh, kw, I, O] }, { data: bias, shape: [O] }]);
  } else {
    // ResNeXt / RegNet: compress's GroupedConv2D, kernel [kh, kw, I / groups, O] (src/model/custom-layers.ts).
    if (O % groups !== 0) c.fail(`${O} output channels do not split into group=${groups}`);
    y = c.layer('GroupedConv2D', { ...common, filters: O, groups, kernelInitializer: 'zeros' }, t, [{ data: convKernel(w), shape: [kh, kw, Ig, O] }, { data: bias, shape: [O] }]);
  }
  const [ho, wo] = outSpatial(s.shape[2], s.shape[3], sp);
  c.out({ kind: 'sym', t: y, shape: [1, O, ho, wo], layout: 'nchw' });
}

// ---------------------------------------------------------------------------------------------
// The table

export const OPS: Record<string, OpEntry> = {
  Conv: {
    convert: (c) => convolution(c, c.const(1), c.has(2) ? Float32Array.from(c.const(2).data) : F32(c.const(1).dims[0])),
  },
  ConvAffine: {
    // Conv(x, W, B) * scale + shift per output channel (onnx-fuse.ts): W' = W * scale, B' = B * scale + shift.
    convert(c) {
      const w = c.const(1);
      const O = w.dims[0];
      // A scalar or one value per channel (onnx-fuse.ts checked); an absent one is the identity.
      const vec = (i: number, def: number): Float32Array => (c.has(i) ? Float32Array.from({ length: O }, (_, o) => c.const(i).data[c.const(i).data.length === 1 ? 0 : o]) : F32(O, def));
      const [scale, shift] = [vec(3, 1), vec(4, 0)];
      const bias = c.has(2) ? Float32Array.from(c.const(2).data) : F32(O);
      const per = w.data.length / O;
      const kernel: Const = { ...w, data: Float32Array.from(w.data, (v, i) => v * scale[Math.floor(i / per)]) };
      convolution(c, kernel, bias.map((b, o) => b * scale[o] + shift[o]));
    },
  },
  ConvTranspose: {
    convert(c) {
      const s = c.sym(0);
      requireImage(c, s);
      const w = c.const(1);
      const [I, O, kh, kw] = w.dims;
      if (c.attrInt('group', 1) !== 1) c.fail('grouped transposed convolutions are not supported');
      if (c.attr('output_shape') !== undefined) c.fail("the 'output_shape' attribute is not supported", 'export with explicit padding / output_padding');
      const strides = c.attrInts('strides', [1, 1]);
      if (c.attrInts('dilations', [1, 1]).some((d) => d !== 1)) c.fail('dilated transposed convolutions are not supported');
      const autoPad = c.attrStr('auto_pad', 'NOTSET');
      if (autoPad !== 'NOTSET' && autoPad !== 'VALID') c.fail(`auto_pad ${autoPad} is not supported`);
      const [pt, pl, pb, pr] = autoPad === 'VALID' ? [0, 0, 0, 0] : c.attrInts('pads', [0, 0, 0, 0]);
      const [oph, opw] = c.attrInts('output_padding', [0, 0]);
      if (oph > pb || opw > pr) c.fail('output_padding larger than the end padding is not supported');
      const bias = c.has(2) ? Float32Array.from(c.const(2).data) : F32(O);
      const full = c.layer('conv2dTranspose', { filters: O, kernelSize: [kh, kw], strides, padding: 'valid', useBias: true, kernelInitializer: 'zeros', biasInitializer: 'zeros' }, c.nhwc(s), [
        { data: transpose(Float32Array.from(w.data), w.dims, [2, 3, 1, 0]).data, shape: [kh, kw, O, I] },
        { data: bias, shape: [O] },
      ]);
      const crop = [[pt, pb - oph], [pl, pr - opw]];
      const y = crop.flat().some((v) => v > 0) ? c.layer('cropping2D', { cropping: crop }, full, undefined, 'crop') : full;
      const ho = (s.shape[2] - 1) * strides[0] + kh - pt - pb + oph;
      const wo = (s.shape[3] - 1) * strides[1] + kw - pl - pr + opw;
      c.out({ kind: 'sym', t: y, shape: [1, O, ho, wo], layout: 'nchw' });
    },
  },
  Gemm: {
    convert(c) {
      const s = c.sym(0);
      if (c.attrInt('transA', 0) !== 0) c.fail('transA=1 is not supported');
      const b = c.const(1);
      const transB = c.attrInt('transB', 0) === 1;
      const alpha = c.attrFloat('alpha', 1);
      const beta = c.attrFloat('beta', 1);
      const [K, N] = transB ? [b.dims[1], b.dims[0]] : b.dims;
      let kernel = transB ? transpose(Float32Array.from(b.data), b.dims, [1, 0]).data : Float32Array.from(b.data);
      if (alpha !== 1) kernel = kernel.map((v) => v * alpha);
      c.out(dense(c, s, kernel, K, N, biasVector(c, c.has(2) ? c.const(2) : undefined, N, beta) ?? F32(N)));
    },
  },
  MatMul: {
    fold(c) {
      c.fail('a product of two constants is not supported');
    },
    convert(c) {
      const s = c.sym(0);
      const b = c.const(1);
      if (b.dims.length !== 2) c.fail(`only a constant 2-D right operand is supported (got [${b.dims.join(', ')}])`);
      c.out(dense(c, s, Float32Array.from(b.data), b.dims[0], b.dims[1]));
    },
  },
  MatMulAdd: {
    convert(c) {
      const s = c.sym(0);
      const b = c.const(1);
      if (b.dims.length !== 2) c.fail(`only a constant 2-D right operand is supported (got [${b.dims.join(', ')}])`);
      c.out(dense(c, s, Float32Array.from(b.data), b.dims[0], b.dims[1], biasVector(c, c.const(2), b.dims[1])));
    },
  },
  BatchNormalization: {
    convert(c) {
      const s = c.sym(0);
      if (c.attrInt('training_mode', 0) !== 0 || c.node.outputs.slice(1).some((o) => o !== '')) c.fail('exported in training mode (it uses batch statistics and outputs running ones)', EVAL_HINT);
      if (s.layout === 'plain' && s.shape.length > 2) c.fail(`batch normalization over axis 1 of a rank-${s.shape.length} tensor is not supported`);
      const src = s.layout === 'flat' ? { ...s, t: c.plain(s), layout: 'plain' as const } : s;
      const C = s.shape[1];
      const vec = (i: number) => {
        const k = c.const(i);
        if (k.data.length !== C) c.fail(`input ${i} has ${k.data.length} values for ${C} channels`);
        return { data: Float32Array.from(k.data), shape: [C] };
      };
      const t = c.layer('batchNormalization', { axis: -1, epsilon: c.attrFloat('epsilon', 1e-5), momentum: c.attrFloat('momentum', 0.9) }, src.layout === 'nchw' ? c.nhwc(src) : src.t, [vec(1), vec(2), vec(3), vec(4)]);
      c.out(like(src, t));
    },
  },
  LayerNormalization: {
    // nn.LayerNorm over the last axis (opset 17's op, and the ReduceMean/Sub/Pow/Sqrt/Div chain of
    // earlier opsets fused in onnx-fuse.ts) as a Keras LayerNormalization.
    convert(c) {
      const s = c.sym(0);
      const rank = s.shape.length;
      if (s.layout === 'nchw' || s.layout === 'gap' || axisOf(c.attrInt('axis', -1), rank) !== rank - 1) {
        c.fail(`only a layer normalization over the last axis of a non-image tensor is supported (axis ${c.attrInt('axis', -1)} of [${s.shape.join(', ')}])`, 'normalize the last axis (nn.LayerNorm(features)), after permuting channels last for images');
      }
      const src = s.layout === 'flat' ? { ...s, t: c.plain(s), layout: 'plain' as const } : s;
      const C = s.shape[rank - 1];
      const vec = (i: number, def: number) => ({ data: c.has(i) ? channelVector(c, s, c.const(i)) : F32(C, def), shape: [C] });
      const t = c.layer('layerNormalization', { axis: -1, epsilon: c.attrFloat('epsilon', 1e-5) }, src.t, [vec(1, 1), vec(2, 0)]);
      c.out({ ...like(src, t), lower: undefined });
    },
  },
  Relu: { convert: (c) => c.out(relu(c, c.sym(0), Infinity)) },
  Clip: {
    convert(c) {
      const s = c.sym(0);
      const bound = (i: number, attr: string, def: number): number => (c.opset >= 11 ? (c.has(i) ? c.const(i).data[0] : def) : c.attrFloat(attr, def));
      c.out(clip(c, s, bound(1, 'min', -Infinity), bound(2, 'max', Infinity)));
    },
  },
  LeakyRelu: {
    convert(c) {
      const s = c.sym(0);
      c.out(like(s, c.layer('leakyReLU', { alpha: c.attrFloat('alpha', 0.01) }, s.t)));
    },
  },
  PRelu: {
    convert(c) {
      const s = c.sym(0);
      const slope = channelVector(c, s, c.const(1));
      const image = s.layout === 'nchw';
      const src = s.layout === 'flat' ? { ...s, t: c.plain(s), layout: 'plain' as const } : s;
      const n = slope.length;
      const shape = image ? [1, 1, n] : [...Array(src.t.shape.length - 2).fill(1), n];
      const sharedAxes = image ? [1, 2] : src.t.shape.length > 2 ? Array.from({ length: src.t.shape.length - 2 }, (_, i) => i + 1) : undefined;
      c.out(like(src, c.layer('prelu', { ...(sharedAxes ? { sharedAxes } : {}), alphaInitializer: 'zeros' }, src.t, [{ data: slope, shape }])));
    },
  },
  Sigmoid: activation('sigmoid', 0),
  Tanh: activation('tanh', -1),
  Elu: {
    convert(c) {
      if (c.attrFloat('alpha', 1) !== 1) c.fail('Elu with alpha != 1 is not supported');
      const s = c.sym(0);
      c.out(like(s, c.layer('activation', { activation: 'elu' }, s.t), -1));
    },
  },
  Selu: activation('selu', -1.7581),
  Softplus: activation('softplus', 0),
  Softsign: activation('softsign', -1),
  HardSigmoid: { convert: (c) => c.out(hardSigmoid(c, c.sym(0), c.attrFloat('alpha', 0.2), c.attrFloat('beta', 0.5))) },
  HardSwish: {
    convert(c) {
      const s = c.sym(0);
      const gate = hardSigmoid(c, s, 1 / 6, 0.5);
      c.out(like(s, c.layer('multiply', {}, [s.t, gate.t]), -0.375));
    },
  },
  SiLU: activation('swish', -0.2785),
  GELU: activation('gelu', -0.1701),
  Gelu: {
    convert(c) {
      const s = c.sym(0);
      const approx = c.attrStr('approximate', 'none');
      c.out(like(s, c.layer('activation', { activation: approx === 'tanh' ? 'gelu_new' : 'gelu' }, s.t)));
    },
  },
  Softmax: softmax('softmax'),
  LogSoftmax: softmax('logSoftmax'),
  MaxPool: pool('max'),
  AveragePool: pool('avg'),
  GlobalAveragePool: globalPool('avg'),
  GlobalMaxPool: globalPool('max'),
  ReduceMean: spatialReduce('mean', 'globalAveragePooling2d'),
  ReduceMax: spatialReduce('max', 'globalMaxPooling2d'),
  Flatten: {
    fold(c) {
      const k = c.const(0);
      const ax = axisOf(c.attrInt('axis', 1), k.dims.length);
      c.outConst(reshaped(k, [size(k.dims.slice(0, ax)), size(k.dims.slice(ax))]));
    },
    convert(c) {
      const s = c.sym(0);
      if (axisOf(c.attrInt('axis', 1), s.shape.length) !== 1) c.fail('only Flatten(axis=1) is supported (it keeps the batch axis)');
      c.out(reshapeSym(c, s, [1, size(s.shape.slice(1))]));
    },
  },
  Reshape: {
    fold(c) {
      const k = c.const(0);
      const out = reshapeTarget(k.dims, c.ints(1), c.attrInt('allowzero', 0) === 1);
      if (!out) c.fail(`cannot reshape [${k.dims.join(', ')}] to [${c.ints(1).join(', ')}]`);
      c.outConst(reshaped(k, out!));
    },
    convert(c) {
      const s = c.sym(0);
      // Exported with a fixed batch, `x.view(x.size(0), -1)` folds to the constant [8, -1]: that 8 is the batch (1 here).
      const given = c.ints(1);
      const target = c.fixedBatch !== null && c.fixedBatch > 1 && given[0] === c.fixedBatch ? [1, ...given.slice(1)] : given;
      const out = reshapeTarget(s.shape, target, c.attrInt('allowzero', 0) === 1);
      if (!out) c.fail(`cannot reshape [${s.shape.join(', ')}] to [${target.join(', ')}]`);
      c.out(reshapeSym(c, s, out!));
    },
  },
  Squeeze: {
    fold: (c) => c.outConst(reshaped(c.const(0), squeezeShape(c, c.const(0).dims, axesOf(c, 13)))),
    convert(c) {
      const s = c.sym(0);
      c.out(reshapeSym(c, s, squeezeShape(c, s.shape, axesOf(c, 13))));
    },
  },
  Unsqueeze: {
    fold: (c) => c.outConst(reshaped(c.const(0), unsqueezeShape(c.const(0).dims, axesOf(c, 13) ?? c.fail('axes are missing')))),
    convert(c) {
      const s = c.sym(0);
      c.out(reshapeSym(c, s, unsqueezeShape(s.shape, axesOf(c, 13) ?? c.fail('axes are missing'))));
    },
  },
  Transpose: {
    fold(c) {
      const k = c.const(0);
      const perm = c.attrInts('perm', k.dims.map((_, i) => k.dims.length - 1 - i));
      const r = transpose(k.data, k.dims, perm);
      c.outConst({ ...k, data: r.data, dims: r.dims });
    },
    convert(c) {
      const s = c.sym(0);
      c.out(transposeSym(c, s, c.attrInts('perm', s.shape.map((_, i) => s.shape.length - 1 - i))));
    },
  },
  ChannelShuffle: {
    // Reshape -> Transpose(0, 2, 1, 3, 4) -> Reshape, fused in onnx-fuse.ts (inputs: x, the two shapes): a
    // channel shuffle stays NHWC; any other shapes convert as the three ops would one by one.
    convert(c) {
      const s = c.sym(0);
      const grouped = reshapeTarget(s.shape, c.ints(1), false) ?? c.fail(`cannot reshape [${s.shape.join(', ')}] to [${c.ints(1).join(', ')}]`);
      const swapped = [0, 2, 1, 3, 4].map((p) => grouped[p]);
      const out = reshapeTarget(swapped, c.ints(2), false) ?? c.fail(`cannot reshape [${swapped.join(', ')}] to [${c.ints(2).join(', ')}]`);
      c.out(channelShuffle(c, s, grouped, out) ?? reshapeSym(c, transposeSym(c, reshapeSym(c, s, grouped), [0, 2, 1, 3, 4]), out));
    },
  },
  Concat: {
    fold(c) {
      const ks = c.node.inputs.map((_, i) => c.const(i));
      c.outConst(concat(ks, c.attrInt('axis')));
    },
    convert(c) {
      const vs = c.node.inputs.map((_, i) => c.val(i));
      if (vs.some((v) => v.kind === 'const')) c.fail('concatenating a constant with a computed tensor is not supported');
      const ss = vs as Sym[];
      const rank = ss[0].shape.length;
      const axis = axisOf(c.attrInt('axis'), rank);
      if (axis === 0) c.fail('concatenating along the batch axis is not supported');
      const shape = ss[0].shape.slice();
      shape[axis] = ss.reduce((a, s) => a + s.shape[axis], 0);
      const lower = ss.every((s) => s.lower !== undefined) ? Math.min(...ss.map((s) => s.lower!)) : undefined;
      if (ss.length === 1) return c.out(ss[0]);
      if (ss.every((s) => s.layout === 'gap') && axis === 1) return c.out({ kind: 'sym', t: c.layer('concatenate', { axis: -1 }, ss.map((s) => s.t)), shape, layout: 'gap', lower });
      if (rank === 4) return c.out({ kind: 'sym', t: c.layer('concatenate', { axis: [0, 3, 1, 2][axis] }, ss.map((s) => c.nhwc(s))), shape, layout: 'nchw', lower });
      c.out({ kind: 'sym', t: c.layer('concatenate', { axis }, ss.map((s) => c.plain(s))), shape, layout: 'plain', lower });
    },
  },
  Add: arithmetic('Add'),
  Sub: arithmetic('Sub'),
  Mul: arithmetic('Mul'),
  Div: arithmetic('Div'),
  Pad: {
    convert(c) {
      const s = c.sym(0);
      const mode = c.attrStr('mode', 'constant');
      if (mode !== 'constant') c.fail(`padding mode '${mode}' is not supported (only zero padding)`);
      const pads = c.opset >= 11 ? c.ints(1) : c.attrInts('pads');
      const value = c.opset >= 11 ? (c.has(2) ? c.const(2).data[0] : 0) : c.attrFloat('value', 0);
      if (value !== 0) c.fail(`constant padding with value ${value} is not supported (only zeros)`);
      if (c.has(3)) c.fail("the 'axes' input is not supported");
      requireImage(c, s);
      const [n0, c0, h0, w0, n1, c1, h1, w1] = pads;
      if (n0 || c0 || n1 || c1) c.fail('padding the batch or channel axis is not supported');
      if (Math.min(h0, w0, h1, w1) < 0) c.fail('negative padding (cropping) is not supported');
      const t = c.layer('zeroPadding2d', { padding: [[h0, h1], [w0, w1]] }, c.nhwc(s));
      c.out({ kind: 'sym', t, shape: [1, s.shape[1], s.shape[2] + h0 + h1, s.shape[3] + w0 + w1], layout: 'nchw', lower: s.lower });
    },
  },
  Dropout: { fold: (c) => c.out(dropoutInference(c)), convert: (c) => c.out(dropoutInference(c)) },
  Identity: { fold: (c) => c.out(c.val(0)), convert: (c) => c.out(c.val(0)) },
  Cast: {
    fold(c) {
      const k = c.const(0);
      const to = c.attrInt('to');
      const float = to === 1 || to === 10 || to === 11;
      c.outConst(constOf(k.dims, float ? k.data : Array.from(k.data, Math.trunc), !float));
    },
    convert(c) {
      if (c.attrInt('to') !== 1) c.fail('casting a computed tensor to a non-float32 type is not supported');
      c.out(c.val(0));
    },
  },
  Constant: {
    fold(c) {
      const v = c.attr('value');
      if (v && typeof v === 'object' && !Array.isArray(v)) return c.outConst(v);
      const f = c.attr('value_float') ?? c.attr('value_floats');
      const i = c.attr('value_int') ?? c.attr('value_ints');
      if (typeof f === 'number') return c.outConst(constOf([], [f], false));
      if (Array.isArray(f)) return c.outConst(constOf([f.length], f as number[], false));
      if (typeof i === 'number') return c.outConst(intConst([i], []));
      if (Array.isArray(i)) return c.outConst(intConst(i as number[]));
      c.fail('only tensor, float(s) and int(s) constants are supported');
    },
  },
  ConstantOfShape: {
    fold(c) {
      const dims = c.ints(0);
      const v = c.attr('value') as Const | undefined;
      const x = v ? v.data[0] : 0;
      c.outConst(constOf(dims, new Array(size(dims)).fill(x), v ? v.int : false));
    },
  },
  Shape: {
    fold(c) {
      c.outConst(shapeSlice(c, c.const(0).dims));
    },
    convert(c) {
      c.outConst(shapeSlice(c, c.sym(0).shape));
    },
  },
  Gather: {
    fold(c) {
      c.outConst(gather(c.const(0), c.const(1), c.attrInt('axis', 0)));
    },
  },
  Slice: {
    fold(c) {
      const k = c.const(0);
      const v10 = c.opset >= 10;
      const starts = v10 ? c.ints(1) : c.attrInts('starts');
      const ends = v10 ? c.ints(2) : c.attrInts('ends');
      const axes = v10 ? (c.has(3) ? c.ints(3) : starts.map((_, i) => i)) : c.attrInts('axes', starts.map((_, i) => i));
      const steps = v10 && c.has(4) ? c.ints(4) : starts.map(() => 1);
      c.outConst(slice(k, starts, ends, axes, steps));
    },
    convert(c) {
      const s = c.sym(0);
      const v10 = c.opset >= 10;
      const starts = v10 ? c.ints(1) : c.attrInts('starts');
      const ends = v10 ? c.ints(2) : c.attrInts('ends');
      const axes = (v10 ? (c.has(3) ? c.ints(3) : starts.map((_, i) => i)) : c.attrInts('axes', starts.map((_, i) => i))).map((a) => axisOf(a, s.shape.length));
      const steps = v10 && c.has(4) ? c.ints(4) : starts.map(() => 1);
      if (steps.some((v) => v !== 1)) c.fail(`only unit-step slices of computed tensors are supported (steps [${steps.join(', ')}])`);
      c.out(sliceSym(c, s, axes.map((axis, j) => {
        const d = s.shape[axis];
        const begin = Math.min(Math.max(starts[j] < 0 ? starts[j] + d : starts[j], 0), d);
        return { axis, begin, end: Math.min(Math.max(ends[j] < 0 ? ends[j] + d : ends[j], begin), d) };
      })));
    },
  },
  Split: {
    fold(c) {
      const k = c.const(0);
      const axis = axisOf(c.attrInt('axis', 0), k.dims.length);
      splitRanges(c, k.dims[axis]).forEach(([b, e], i) => c.outConst(slice(k, [b], [e], [axis], [1]), i));
    },
    convert(c) {
      // torch.chunk / torch.split (x.chunk(2, dim=1) in ShuffleNetV2): each output is one slice of the input.
      const s = c.sym(0);
      const axis = axisOf(c.attrInt('axis', 0), s.shape.length);
      splitRanges(c, s.shape[axis]).forEach(([begin, end], i) => c.out(sliceSym(c, s, [{ axis, begin, end }]), i));
    },
  },
  Resize: resize(),
  Upsample: resize(),
  Sqrt: { fold: (c) => c.outConst(constOf(c.const(0).dims, Array.from(c.const(0).data, Math.sqrt), false)) },
  Neg: { fold: (c) => c.outConst(constOf(c.const(0).dims, Array.from(c.const(0).data, (v) => -v), c.const(0).int)) },
};

function shapeSlice(c: NodeCtx, dims: number[]): Const {
  const start = axisOf(c.attrInt('start', 0), dims.length);
  const end = c.attr('end') === undefined ? dims.length : axisOf(c.attrInt('end'), dims.length);
  return intConst(dims.slice(start, end));
}

function softmax(name: 'softmax' | 'logSoftmax'): OpEntry {
  return {
    convert(c) {
      const s = c.sym(0);
      const rank = s.shape.length;
      const axis = axisOf(c.attrInt('axis', c.opset >= 13 ? -1 : 1), rank);
      // Before opset 13 the op normalises over everything from `axis` on: the last axis when it is the only one.
      const trailing = s.shape.slice(axis + 1).every((d) => d === 1);
      const onChannels = (s.layout === 'nchw' || s.layout === 'gap') && axis === 1 && (c.opset >= 13 || trailing);
      const onLast = s.layout !== 'nchw' && s.layout !== 'gap' && (axis === rank - 1 || (c.opset < 13 && trailing));
      if (!onChannels && !onLast) c.fail(`${c.node.opType} over axis ${axis} of [${s.shape.join(', ')}] is not supported (only the channel / last axis)`);
      const src = s.layout === 'flat' ? { ...s, t: c.plain(s), layout: 'plain' as const } : s;
      c.out(like(src, c.layer('activation', { activation: name }, src.t), name === 'softmax' ? 0 : undefined));
    },
  };
}

/** The op types the importer converts (for error messages and docs). */
export function supportedOps(): string[] {
  const synthetic = new Set(['SiLU', 'GELU', 'MatMulAdd', 'ChannelShuffle', 'ConvAffine']);
  return Object.keys(OPS).filter((k) => !synthetic.has(k)).sort();
}

export type { Val };
