import type * as tfType from '@tensorflow/tfjs';
import { simdKernels } from '../simd/module.js';
import { f32, ptr, wasmKernel, type KernelArgs, type KernelImpl, type WasmBackend } from './util.js';

/** Below this many multiply-adds XNNPACK's call is as cheap as ours, packing included. */
const SIMD_GEMM_MIN_MACS = 1 << 16;

/**
 * BatchMatMul for wasm with transposed operands. tfjs-backend-wasm's kernel is fast (XNNPACK) only
 * without transposes and ~10x slower with transposeA/transposeB (29 ms vs 2.3 ms for the 800x64 .
 * 64x500 weight gradient of a dense layer), so transposed operands are materialised first.
 *
 * XNNPACK packs its right operand (the "weights") whenever that tensor is new, at ~4 ns a float, and
 * a wasm transpose costs about as much; so for C = op(A).op(B) we either compute it directly
 * (materialise op(A), op(B); pack op(B)) or as C^T = op(B)^T . op(A)^T (materialise those, pack
 * op(A)^T, transpose C back), whichever moves fewer floats. Measured on a dense layer's input
 * gradient dy[64,500] . W[800,500]^T: 5.7 ms directly (transpose + pack 400k floats) vs ~2.5 ms.
 */
export function makeMatMulKernels(tf: typeof tfType) {
  const seenRight = new WeakSet<object>();
  const original = wasmKernel(tf, 'BatchMatMul');
  const transpose = wasmKernel(tf, 'Transpose');

  const swapLast = (t: tfType.TensorInfo, backend: WasmBackend) => {
    const r = t.shape.length;
    const perm = [...Array(r).keys()];
    perm[r - 2] = r - 1;
    perm[r - 1] = r - 2;
    return transpose({ inputs: { x: t }, backend, attrs: { perm } });
  };
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
  const as2d = (t: tfType.TensorInfo) => ({ dataId: t.dataId, shape: t.shape.slice(-2), dtype: t.dtype }) as tfType.TensorInfo;

  function batchMatMul({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { a, b: m } = inputs;
    const ta = Boolean(attrs.transposeA), tb = Boolean(attrs.transposeB);
    const aOuter = a.shape.slice(0, -2), bOuter = m.shape.slice(0, -2);
    if (size(aOuter) === 1 && size(bOuter) === 1 && a.dtype === 'float32' && m.dtype === 'float32') {
      const [ar, ac] = a.shape.slice(-2), [br, bc] = m.shape.slice(-2);
      const M = ta ? ac : ar, K = ta ? ar : ac, N = tb ? br : bc;
      const simd = simdKernels(backend);
      if (simd && ta && !tb && M % 4 === 0 && N % 4 === 0 && M * K * N >= SIMD_GEMM_MIN_MACS) {
        // A^T . B (a dense layer's weight gradient x^T . dy): SIMD tiles read both operands as they
        // are; no transposes, no packing (LeNet-5's 800x64 . 64x500: 3.1 -> ~2 ms).
        const out = backend.makeOutput([...(aOuter.length >= bOuter.length ? aOuter : bOuter), M, N], 'float32');
        f32(backend, out).fill(0);
        simd.gemm_tn(ptr(backend, a), M * 4, ptr(backend, m), N * 4, K, ptr(backend, out), M, N);
        return out;
      }
      // Floats moved: transposes of operands and result, plus packing of the right operand.
      const direct = (ta ? M * K : 0) + (tb ? K * N : 0) + K * N;
      const swapped = (ta ? 0 : M * K) + (tb ? 0 : K * N) + K * M + M * N;
      if (swapped < direct) {
        // C^T[N,M] = op(B)^T[N,K] . op(A)^T[K,M]
        const l = tb ? as2d(m) : swapLast(as2d(m), backend);
        const r = ta ? as2d(a) : swapLast(as2d(a), backend);
        const ct = original({ inputs: { a: l, b: r }, backend, attrs: { transposeA: false, transposeB: false } });
        if (!tb) backend.disposeData(l.dataId);
        if (!ta) backend.disposeData(r.dataId);
        const c = transpose({ inputs: { x: { dataId: ct.dataId, shape: [N, M], dtype: ct.dtype } as tfType.TensorInfo }, backend, attrs: { perm: [1, 0] } });
        backend.disposeData(ct.dataId);
        c.shape = [...(aOuter.length >= bOuter.length ? aOuter : bOuter), M, N];
        return c;
      }
    }
    if (!ta && !tb) {
      // A right operand XNNPACK has not packed yet (a layer's weights right after an update: every
      // training step) is multiplied unpacked by the SIMD gemm; one it has seen goes to XNNPACK,
      // which packs it on that call and reuses the packing after (inference over many batches).
      const fresh = !seenRight.has(m.dataId);
      seenRight.add(m.dataId);
      const simd = simdKernels(backend);
      if (fresh && simd && size(aOuter) === 1 && size(bOuter) === 1 && a.dtype === 'float32' && m.dtype === 'float32') {
        const [M, K] = a.shape.slice(-2), N = m.shape[m.shape.length - 1];
        if (N % 4 === 0 && M * K * N >= SIMD_GEMM_MIN_MACS) {
          const out = backend.makeOutput([...(aOuter.length >= bOuter.length ? aOuter : bOuter), M, N], 'float32');
          f32(backend, out).fill(0);
          simd.gemm_acc(ptr(backend, a), K * 4, ptr(backend, m), N * 4, K, ptr(backend, out), N * 4, M, N);
          return out;
        }
      }
      return original({ inputs, backend, attrs });
    }
    const a2 = ta ? swapLast(a, backend) : a;
    const b2 = tb ? swapLast(m, backend) : m;
    const out = original({ inputs: { a: a2, b: b2 }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
    if (ta) backend.disposeData(a2.dataId);
    if (tb) backend.disposeData(b2.dataId);
    return out;
  }
  return { batchMatMul: batchMatMul as KernelImpl, originalBatchMatMul: original };
}
