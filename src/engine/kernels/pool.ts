import type * as tfType from '@tensorflow/tfjs';
import { f32, ptr, type KernelArgs, type WasmBackend } from './util.js';
import { simdKernels } from '../simd/module.js';

/**
 * MaxPoolGrad for wasm: routes each output gradient to the first maximum of its window (row-major,
 * the same tie rule as the cpu backend). One pass over the windows; replaces wasm's slow kernel.
 */
export function makePoolKernels(tf: typeof tfType) {
  function maxPoolGrad({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { dy, input } = inputs;
    const info = tf.backend_util.computePool2DInfo(
      input.shape as [number, number, number, number], attrs.filterSize as [number, number],
      attrs.strides as [number, number], 1, attrs.pad as 'same', attrs.dimRoundingMode as 'floor' | undefined,
    );
    const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: oH, outWidth: oW } = info;
    const { strideHeight: sh, strideWidth: sw, effectiveFilterHeight: eKH, effectiveFilterWidth: eKW } = info;
    const top = info.padInfo.top, left = info.padInfo.left;
    const out = backend.makeOutput(input.shape, 'float32');
    const dx = f32(backend, out), xs = f32(backend, input), g = f32(backend, dy);
    if (eKH === 2 && eKW === 2 && sh === 2 && sw === 2 && top === 0 && left === 0 && oH === H >> 1 && oW === W >> 1) {
      const simd = simdKernels(backend);
      if (simd && C >= 4) {
        if (H & 1 || W & 1) dx.fill(0); // an odd last row/column belongs to no window
        simd.maxpool_grad_2x2(ptr(backend, out), ptr(backend, input), ptr(backend, dy), N, H, W, C);
      } else maxPoolGrad2x2(dx, xs, g, N, H, W, C);
      return out;
    }
    dx.fill(0);
    for (let n = 0; n < N; n++)
      for (let oh = 0; oh < oH; oh++) {
        const r0 = Math.max(0, oh * sh - top), r1 = Math.min(H, oh * sh - top + eKH);
        for (let ow = 0; ow < oW; ow++) {
          const c0 = Math.max(0, ow * sw - left), c1 = Math.min(W, ow * sw - left + eKW);
          const gBase = ((n * oH + oh) * oW + ow) * C;
          for (let c = 0; c < C; c++) {
            let best = Number.NEGATIVE_INFINITY, pos = -1;
            for (let r = r0; r < r1; r++) {
              let idx = ((n * H + r) * W + c0) * C + c;
              for (let q = c0; q < c1; q++, idx += C) {
                const v = xs[idx];
                if (v > best) {
                  best = v;
                  pos = idx;
                }
              }
            }
            if (pos >= 0) dx[pos] += g[gBase + c];
          }
        }
      }
    return out;
  }
  return { maxPoolGrad };
}

/**
 * 2x2 windows, stride 2, no padding (the common pooling layer): every input element belongs to at
 * most one window, so dx is written once (no fill, no scatter-add) with the same rule as the
 * general loop (first maximum in row-major order, strict >, starting from -Infinity).
 */
function maxPoolGrad2x2(dx: Float32Array, xs: Float32Array, g: Float32Array, N: number, H: number, W: number, C: number): void {
  const oH = H >> 1, oW = W >> 1;
  const rowStride = W * C;
  if (H & 1 || W & 1) dx.fill(0); // an odd last row/column belongs to no window
  let gi = 0;
  for (let n = 0; n < N; n++)
    for (let oh = 0; oh < oH; oh++) {
      let a = (n * H + 2 * oh) * rowStride;
      for (let ow = 0; ow < oW; ow++, a += 2 * C) {
        const b = a + C, c2 = a + rowStride, d = c2 + C;
        for (let c = 0; c < C; c++, gi++) {
          const v0 = xs[a + c], v1 = xs[b + c], v2 = xs[c2 + c], v3 = xs[d + c];
          let best = Number.NEGATIVE_INFINITY, pos = -1;
          if (v0 > best) { best = v0; pos = 0; }
          if (v1 > best) { best = v1; pos = 1; }
          if (v2 > best) { best = v2; pos = 2; }
          if (v3 > best) pos = 3;
          const gv = g[gi];
          dx[a + c] = pos === 0 ? gv : 0;
          dx[b + c] = pos === 1 ? gv : 0;
          dx[c2 + c] = pos === 2 ? gv : 0;
          dx[d + c] = pos === 3 ? gv : 0;
        }
      }
    }
}
