import type * as tfType from '@tensorflow/tfjs';
import { f32, type KernelArgs, type WasmBackend } from './util.js';

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
