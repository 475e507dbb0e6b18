import type * as tfType from '@tensorflow/tfjs';
import { wasmKernel, type KernelArgs, type KernelImpl, type WasmBackend } from './util.js';

/**
 * BatchMatMul for wasm with transposed operands: tfjs-backend-wasm's kernel is fast (XNNPACK) only
 * without transposes and ~10x slower with transposeA/transposeB (measured 29 ms vs 2.3 ms for the
 * 800x64 . 64x500 weight gradient of a dense layer). Every dense layer's backward pass uses those
 * flags, so transposed operands are materialised first (a cheap copy) and the fast path is used.
 */
export function makeMatMulKernels(tf: typeof tfType) {
  const original = wasmKernel(tf, 'BatchMatMul');
  const transpose = wasmKernel(tf, 'Transpose');

  const swapLast = (t: tfType.TensorInfo, backend: WasmBackend) => {
    const r = t.shape.length;
    const perm = [...Array(r).keys()];
    perm[r - 2] = r - 1;
    perm[r - 1] = r - 2;
    return transpose({ inputs: { x: t }, backend, attrs: { perm } });
  };

  function batchMatMul({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { a, b: m } = inputs;
    const ta = Boolean(attrs.transposeA), tb = Boolean(attrs.transposeB);
    if (!ta && !tb) return original({ inputs, backend, attrs });
    const a2 = ta ? swapLast(a, backend) : a;
    const b2 = tb ? swapLast(m, backend) : m;
    const out = original({ inputs: { a: a2, b: b2 }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
    if (ta) backend.disposeData(a2.dataId);
    if (tb) backend.disposeData(b2.dataId);
    return out;
  }
  return { batchMatMul: batchMatMul as KernelImpl, originalBatchMatMul: original };
}
