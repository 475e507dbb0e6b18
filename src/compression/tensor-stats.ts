import type * as tfType from '@tensorflow/tfjs';
import type { ActivationRange } from '../model/meta.js';
import { chooseQParams, codeRange } from './linear.js';
import { simdKernels, type SimdKernels } from '../engine/simd/module.js';

/**
 * Whole-tensor statistics and fake quantization in one pass over the values, for the walks of
 * calibration and error reports (every layer output of every batch). On tfjs-wasm a reduction like
 * tf.min / tf.max is a separate pass each and fake quantization as tf ops is ten (div, sign, abs, add,
 * floor, mul, add, clip, sub, mul), each writing a full tensor; here each is one SIMD loop over the
 * tensor where it lies (the wasm heap, engine/simd: ~0.1-0.3 ns a value), or one JS loop over its
 * values elsewhere (~5 ns a value measured: too slow for a MobileNet's activations, hence the kernels).
 */

interface HeapBackend {
  typedArrayFromHeap(t: tfType.TensorInfo): Float32Array | Int32Array | Uint8Array;
  makeOutput(shape: number[], dtype: tfType.DataType): tfType.TensorInfo;
  disposeData(dataId: tfType.DataId): boolean;
  getMemoryOffset(dataId: tfType.DataId): number;
}

function heapBackend(tf: typeof tfType): HeapBackend | undefined {
  const b = tf.backend() as unknown as Partial<HeapBackend>;
  return typeof b.typedArrayFromHeap === 'function' && typeof b.makeOutput === 'function' ? (b as HeapBackend) : undefined;
}

/** The SIMD kernels bound to the wasm heap holding `ts` (all float32, at least 4 values), or undefined. */
function simdFor(tf: typeof tfType, ...ts: tfType.Tensor[]): { heap: HeapBackend; k: SimdKernels } | undefined {
  if (ts.some((t) => t.dtype !== 'float32' || t.size < 4)) return undefined;
  const heap = heapBackend(tf);
  const k = heap ? simdKernels(heap) : undefined;
  return heap && k ? { heap, k } : undefined;
}

/** Runs `f` with `bytes` of scratch on the heap (its byte offset) and returns what `read` takes from it. */
function withScratch<T>(heap: HeapBackend, floats: number, f: (at: number) => void, read: (view: Float32Array) => T): T {
  const info = heap.makeOutput([floats], 'float32');
  try {
    f(heap.getMemoryOffset(info.dataId));
    return read(heap.typedArrayFromHeap(info) as Float32Array);
  } finally {
    heap.disposeData(info.dataId);
  }
}

/** t's float32 values: a view on the wasm heap (valid until the next engine allocation) or a copy. */
function values(tf: typeof tfType, t: tfType.Tensor): Float32Array {
  if (t.dtype !== 'float32') return Float32Array.from(t.dataSync());
  const heap = heapBackend(tf);
  return (heap ? heap.typedArrayFromHeap(t) : t.dataSync()) as Float32Array;
}

/** [min, max] of a tensor's values (NaN ignored; [Infinity, -Infinity] when empty). */
export function minMax(tf: typeof tfType, t: tfType.Tensor): [number, number] {
  const simd = simdFor(tf, t);
  if (simd) {
    const { heap, k } = simd;
    return withScratch(heap, 2, (at) => k.min_max(heap.getMemoryOffset(t.dataId), t.size, at), (v) => [v[0], v[1]]);
  }
  const v = values(tf, t);
  let lo = Infinity;
  let hi = -Infinity;
  const n = v.length;
  let i = 0;
  // Two independent chains: the loop is bound by compare latency, not by memory.
  let lo2 = Infinity;
  let hi2 = -Infinity;
  for (; i + 1 < n; i += 2) {
    const a = v[i];
    const b = v[i + 1];
    if (a < lo) lo = a;
    if (a > hi) hi = a;
    if (b < lo2) lo2 = b;
    if (b > hi2) hi2 = b;
  }
  if (i < n) {
    if (v[i] < lo) lo = v[i];
    if (v[i] > hi) hi = v[i];
  }
  return [Math.min(lo, lo2), Math.max(hi, hi2)];
}

/**
 * Sums for the error of `approx` against `ref` (same number of values) over their first `count` values
 * (default all; the first samples of a batch): sum ref^2, sum (approx - ref)^2, max |approx - ref|.
 */
export interface DiffSums {
  refSq: number;
  errSq: number;
  maxAbs: number;
}

export function diffSums(tf: typeof tfType, ref: tfType.Tensor, approx: tfType.Tensor, count = ref.size): DiffSums {
  if (ref.size !== approx.size) throw new Error(`diffSums: sizes ${ref.size} and ${approx.size} differ`);
  const simd = simdFor(tf, ref, approx);
  if (simd) {
    const { heap, k } = simd;
    const n = Math.min(count, ref.size);
    return withScratch(heap, 6, (at) => k.diff_sums(heap.getMemoryOffset(ref.dataId), heap.getMemoryOffset(approx.dataId), n, at), (v) => {
      const d = new Float64Array(v.buffer, v.byteOffset, 3);
      return { refSq: d[0], errSq: d[1], maxAbs: d[2] };
    });
  }
  const r = values(tf, ref);
  const q = values(tf, approx);
  let s = 0;
  let e = 0;
  let m = 0;
  const n = Math.min(count, r.length);
  for (let i = 0; i < n; i++) {
    const x = r[i];
    const d = q[i] - x;
    s += x * x;
    e += d * d;
    const a = d < 0 ? -d : d;
    if (a > m) m = a;
  }
  return { refSq: s, errSq: e, maxAbs: m };
}

/**
 * Quantize / dequantize `x` with an asymmetric `bits` quantizer over `range` (signed codes), rounding
 * half away from zero, in float32 exactly as the tf-op form does (every step rounded with Math.fround):
 * q = clip(round(x / scale) + zp, qmin, qmax), x' = (q - zp) * scale. Returns a new tensor.
 */
export function fakeQuant(tf: typeof tfType, x: tfType.Tensor, range: ActivationRange, bits = 8): tfType.Tensor {
  const { scale, zeroPoint } = chooseQParams(range.min, range.max, bits, false);
  const { qmin, qmax } = codeRange(bits, false);
  const s = Math.fround(scale);
  const simd = simdFor(tf, x);
  if (simd) {
    const { heap, k } = simd;
    const info = heap.makeOutput(x.shape.slice(), 'float32');
    k.fake_quant(heap.getMemoryOffset(x.dataId), heap.getMemoryOffset(info.dataId), x.size, s, qmin - zeroPoint, qmax - zeroPoint);
    return tf.engine().makeTensorFromTensorInfo(info);
  }
  const src = values(tf, x);
  const out = new Float32Array(src.length);
  fakeQuantInto(src, out, s, zeroPoint, qmin, qmax);
  return tf.tensor(out, x.shape, 'float32');
}

function fakeQuantInto(src: Float32Array, out: Float32Array, s: number, zp: number, qmin: number, qmax: number): void {
  const f = Math.fround;
  const lo = qmin - zp;
  const hi = qmax - zp;
  for (let i = 0; i < src.length; i++) {
    const v = f(src[i] / s);
    let r = Math.floor(f((v < 0 ? -v : v) + 0.5));
    if (v < 0) r = 0 - r; // (+0, not -0, as the tf-op form gives)
    // round(v) + zp clipped to [qmin, qmax], minus zp: integers, exact.
    if (r < lo) r = lo;
    else if (r > hi) r = hi;
    out[i] = r * s;
  }
}
