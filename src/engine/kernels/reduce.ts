import type * as tfType from '@tensorflow/tfjs';
import { simdKernels } from '../simd/module.js';
import { f32, ptr, wasmKernel, type KernelArgs, type KernelImpl, type WasmBackend } from './util.js';

/** Below this many elements the wasm kernel's call overhead is lower than ours. */
const MIN_ELEMENTS = 1 << 14;

/**
 * Sum for wasm. A bias gradient sums dy over every axis but the channels ([N,H,W,C] -> [C]); the
 * wasm kernel first transposes the reduced axes innermost (a full copy), which made the bias grad of
 * LeNet-5's first conv cost 3.9 ms a step. Summing the leading axes in place, four rows at a time
 * into float64 partial sums, takes ~1 ms in JS, 0.3 ms as a SIMD loop (float32 sums of 64 rows added
 * into float64). Other reductions go to the wasm kernel.
 */
export function makeReduceKernels(tf: typeof tfType) {
  const original = wasmKernel(tf, 'Sum');

  const originalMean = wasmKernel(tf, 'Mean');

  /** Mean over leading axes ([N,H,W,C] -> [C], batch norm's statistics): the sum below, divided. */
  function mean(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { x } = args.inputs;
    const out = leadingSum(args);
    if (!out) return originalMean(args);
    const R = x.shape.reduce((a, b) => a * b, 1) / out.shape.reduce((a, b) => a * b, 1);
    const o = f32(backend, out);
    for (let c = 0; c < o.length; c++) o[c] = o[c] / R;
    return out;
  }

  function sum(args: KernelArgs): tfType.TensorInfo {
    return leadingSum(args) ?? original(args);
  }

  /** The sum over leading axes, or undefined where the wasm kernel should reduce. */
  function leadingSum(args: KernelArgs): tfType.TensorInfo | undefined {
    const backend = args.backend as WasmBackend;
    const { x } = args.inputs;
    const attrs = args.attrs ?? {};
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape).sort((a, b) => a - b);
    const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
    const size = x.shape.reduce((a, b) => a * b, 1);
    if (x.dtype !== 'float32' || !leading || size < MIN_ELEMENTS) return undefined;
    const kept = x.shape.slice(axes.length);
    const C = kept.reduce((a, b) => a * b, 1), R = size / C;
    const outShape = attrs.keepDims ? [...axes.map(() => 1), ...kept] : kept;
    const out = backend.makeOutput(outShape, 'float32');
    const simd = simdKernels(backend);
    if (simd && C >= 4) {
      const scratch = backend.makeOutput([2 * C], 'float32'); // C float64 accumulators
      simd.sum_rows(ptr(backend, x), ptr(backend, out), ptr(backend, scratch), R, C);
      backend.disposeData(scratch.dataId);
      return out;
    }
    const src = f32(backend, x);
    const part = new Float64Array(4 * C);
    let p = 0, r = 0;
    for (; r + 4 <= R; r += 4, p += 4 * C) {
      for (let c = 0; c < C; c++) {
        part[c] += src[p + c];
        part[C + c] += src[p + C + c];
        part[2 * C + c] += src[p + 2 * C + c];
        part[3 * C + c] += src[p + 3 * C + c];
      }
    }
    for (; r < R; r++, p += C) for (let c = 0; c < C; c++) part[c] += src[p + c];
    const o = f32(backend, out);
    for (let c = 0; c < C; c++) o[c] = part[c] + part[C + c] + part[2 * C + c] + part[3 * C + c];
    return out;
  }
  return { sum: sum as KernelImpl, mean: mean as KernelImpl };
}
