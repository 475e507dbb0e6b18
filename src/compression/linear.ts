import type { Float16WeightQuant, LinearWeightQuant } from '../model/meta.js';

/**
 * Uniform (linear) quantization of weight tensors in Keras layouts:
 *   Dense [in, out], Conv2D [h, w, in, out], DepthwiseConv2D [h, w, in, mult].
 *
 * Code ranges for N bits (2..8):
 *   symmetric:  q in [-(2^(N-1) - 1), 2^(N-1) - 1], zero point 0 (so int8 is [-127, 127]);
 *   asymmetric: q in [-2^(N-1), 2^(N-1) - 1] (signed, so 8-bit codes fit int8 as in TFLite/ONNX),
 *               with an integer zero point; the range is widened to contain 0 and the zero point is
 *               rounded ("nudged") so that 0.0 is exactly representable.
 * Dequantization: x ~= (q - zeroPoint) * scale. Rounding is to nearest, ties away from zero.
 * Exact zeros (pruned weights) always dequantize to exactly 0.
 */

export interface LinearQuantOptions {
  bits: number;
  symmetric: boolean;
  /**
   * Per-channel axis in the tensor layout (negative counts from the end), or null/undefined for
   * per-tensor. Use `defaultChannelAxis` for the conventional choice.
   */
  axis?: number | null;
}

export interface LinearQuantResult {
  /** Integer codes, one per element, same order as the input. */
  q: Int32Array;
  /** (q - zeroPoint) * scale as float32, what the model should compute with. */
  dequantized: Float32Array;
  /** One per channel (per-channel) or a single entry (per-tensor). */
  scales: number[];
  zeroPoints: number[];
  /** Normalised non-negative axis, or null for per-tensor. */
  axis: number | null;
  bits: number;
  symmetric: boolean;
  qmin: number;
  qmax: number;
}

export type KernelKind = 'dense' | 'conv2d' | 'depthwise' | 'conv_transpose';

/** The conventional per-channel axis: output channel (last axis) for Dense/Conv2D, 2 for depthwise and Conv2DTranspose ([h, w, out, in]). */
export function defaultChannelAxis(shape: readonly number[], kind: KernelKind = 'dense'): number {
  if (kind === 'depthwise' || kind === 'conv_transpose') return 2;
  return shape.length - 1;
}

export function codeRange(bits: number, symmetric: boolean): { qmin: number; qmax: number } {
  checkBits(bits);
  const half = 2 ** (bits - 1);
  return symmetric ? { qmin: -(half - 1), qmax: half - 1 } : { qmin: -half, qmax: half - 1 };
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new Error(`linear quantization supports 2..8 bits, got ${bits}`);
}

/** Round to nearest, ties away from zero (TFLite's convention). */
export function roundHalfAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

function normaliseAxis(axis: number | null | undefined, rank: number): number | null {
  if (axis === null || axis === undefined) return null;
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** channel(i) = floor(i / stride) % channels for a row-major tensor. */
function channelLayout(shape: readonly number[], axis: number | null): { channels: number; stride: number } {
  if (axis === null) return { channels: 1, stride: 1 };
  let stride = 1;
  for (let d = axis + 1; d < shape.length; d++) stride *= shape[d];
  return { channels: shape[axis], stride };
}

function checkShape(values: ArrayLike<number>, shape: readonly number[]): void {
  const size = shape.reduce((a, b) => a * b, 1);
  if (size !== values.length) throw new Error(`shape [${shape.join(',')}] has ${size} elements but got ${values.length} values`);
}

/** Scale and zero point for a channel with observed range [lo, hi]. */
export function chooseQParams(lo: number, hi: number, bits: number, symmetric: boolean): { scale: number; zeroPoint: number } {
  const { qmin, qmax } = codeRange(bits, symmetric);
  if (symmetric) {
    const m = Math.max(Math.abs(lo), Math.abs(hi));
    return { scale: m > 0 ? m / qmax : 1, zeroPoint: 0 };
  }
  const a = Math.min(lo, 0);
  const b = Math.max(hi, 0);
  if (!(b > a)) return { scale: 1, zeroPoint: 0 };
  const scale = (b - a) / (qmax - qmin);
  let zeroPoint = roundHalfAway(qmin - a / scale);
  zeroPoint = Math.min(qmax, Math.max(qmin, zeroPoint));
  return { scale, zeroPoint };
}

export function quantizeLinear(values: ArrayLike<number>, shape: readonly number[], opts: LinearQuantOptions): LinearQuantResult {
  checkShape(values, shape);
  const { bits, symmetric } = opts;
  const { qmin, qmax } = codeRange(bits, symmetric);
  const axis = normaliseAxis(opts.axis, shape.length);
  const { channels, stride } = channelLayout(shape, axis);
  const n = values.length;
  const lo = new Float64Array(channels).fill(Infinity);
  const hi = new Float64Array(channels).fill(-Infinity);
  for (let i = 0; i < n; i++) {
    const c = axis === null ? 0 : Math.floor(i / stride) % channels;
    const v = values[i];
    if (!Number.isFinite(v)) throw new Error(`cannot quantize non-finite value ${v} at ${i}`);
    if (v < lo[c]) lo[c] = v;
    if (v > hi[c]) hi[c] = v;
  }
  const scales: number[] = [];
  const zeroPoints: number[] = [];
  for (let c = 0; c < channels; c++) {
    const p = chooseQParams(lo[c] === Infinity ? 0 : lo[c], hi[c] === -Infinity ? 0 : hi[c], bits, symmetric);
    scales.push(p.scale);
    zeroPoints.push(p.zeroPoint);
  }
  const q = new Int32Array(n);
  const dequantized = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const c = axis === null ? 0 : Math.floor(i / stride) % channels;
    const s = scales[c];
    const z = zeroPoints[c];
    let code = roundHalfAway(values[i] / s) + z;
    if (code < qmin) code = qmin;
    else if (code > qmax) code = qmax;
    q[i] = code;
    dequantized[i] = (code - z) * s;
  }
  return { q, dequantized, scales, zeroPoints, axis, bits, symmetric, qmin, qmax };
}

/** Codes back to float32 with the given parameters (per-tensor when quant.axis is null). */
export function dequantizeLinear(q: ArrayLike<number>, shape: readonly number[], quant: Pick<LinearWeightQuant, 'axis' | 'scales' | 'zeroPoints'>): Float32Array {
  checkShape(q, shape);
  const axis = normaliseAxis(quant.axis, shape.length);
  const { channels, stride } = channelLayout(shape, axis);
  if (quant.scales.length !== channels || quant.zeroPoints.length !== channels) {
    throw new Error(`expected ${channels} scales/zero points, got ${quant.scales.length}/${quant.zeroPoints.length}`);
  }
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const c = axis === null ? 0 : Math.floor(i / stride) % channels;
    out[i] = (q[i] - quant.zeroPoints[c]) * quant.scales[c];
  }
  return out;
}

/**
 * Codes of values that are already on the quantization grid (e.g. a kernel read back from a model
 * that was fake-quantized): round(x / scale) + zeroPoint, clamped.
 */
export function linearCodes(values: ArrayLike<number>, shape: readonly number[], quant: LinearWeightQuant): Int32Array {
  checkShape(values, shape);
  const { qmin, qmax } = codeRange(quant.bits, quant.symmetric);
  const axis = normaliseAxis(quant.axis, shape.length);
  const { channels, stride } = channelLayout(shape, axis);
  const q = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const c = axis === null ? 0 : Math.floor(i / stride) % channels;
    const code = roundHalfAway(values[i] / quant.scales[c]) + quant.zeroPoints[c];
    q[i] = Math.min(qmax, Math.max(qmin, code));
  }
  return q;
}

/** The ModelMeta record for a linear quantization result. */
export function toLinearWeightQuant(r: LinearQuantResult): LinearWeightQuant {
  return { method: 'linear', bits: r.bits, symmetric: r.symmetric, axis: r.axis, scales: r.scales.slice(), zeroPoints: r.zeroPoints.slice() };
}

export function float16WeightQuant(): Float16WeightQuant {
  return { method: 'float16', bits: 16 };
}
