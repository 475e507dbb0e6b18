import type * as tfType from '@tensorflow/tfjs';
import { simdKernels } from '../simd/module.js';
import { f32, fusedClamp, pair, ptr, wasmKernel, type KernelArgs, type WasmBackend } from './util.js';
import { explicitSamePadding } from './padding.js';

/**
 * Depthwise conv gradients for wasm as direct loops over the wasm heap (channels innermost, so the
 * inner loops are contiguous). Depthwise convs cost C*K*K per output, so these stay cheap; they
 * support any channel multiplier, strides, dilations and padding. With channel multiplier 1 (the
 * usual) the SIMD dw_dgrad / dw_wgrad run the same loops a vector of channels at a time
 * (dw-cnn: 6-7 ms a kernel in JS -> well under 1 ms).
 */
export function makeDepthwiseKernels(tf: typeof tfType, simdInference: () => boolean) {
  const fusedDepthwise = wasmKernel(tf, 'FusedDepthwiseConv2D');
  const depthwise = wasmKernel(tf, 'DepthwiseConv2dNative');
  function info(xShape: number[], filterShape: number[], attrs: Record<string, unknown>) {
    return tf.backend_util.computeConv2DInfo(
      xShape as [number, number, number, number], filterShape as [number, number, number, number],
      attrs.strides as [number, number], pair(attrs.dilations), attrs.pad as 'same',
      attrs.dimRoundingMode as 'floor' | undefined, true, 'channelsLast',
    );
  }

  function depthwiseConv2dNativeBackpropInput({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { dy, filter } = inputs;
    const ci = info(attrs.inputShape as number[], filter.shape, attrs);
    const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: oH, outWidth: oW, outChannels: CM } = ci;
    const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: KH, filterWidth: KW } = ci;
    const M = CM / C;
    const top = ci.padInfo.top, left = ci.padInfo.left;
    const out = backend.makeOutput([N, H, W, C], 'float32');
    const dx = f32(backend, out), g = f32(backend, dy), w = f32(backend, filter);
    const simd = simdKernels(backend);
    if (simd && dw3x3Fits(ci) && sh === 1 && sw === 1) {
      // Stride 1: dx is a forward 3x3 depthwise conv of dy with the spatially flipped filter, padded by
      // 2 - pad (dw3x3: ~3x faster than dw_dgrad's tap-by-tap runs; [32,48,48,16]: 7.5 -> 2.3 ms).
      const wf = backend.makeOutput([3, 3, C, 1], 'float32'), zero = backend.makeOutput([C], 'float32');
      const fv = f32(backend, wf), wv = f32(backend, filter); // views after the allocations (the heap may grow)
      for (let k = 0; k < 9; k++) fv.set(wv.subarray((8 - k) * C, (9 - k) * C), k * C);
      f32(backend, zero).fill(0);
      simd.dw3x3(ptr(backend, dy), ptr(backend, wf), ptr(backend, zero), ptr(backend, out), N, oH, oW, C, H, W, 1, 1, 2 - top, 2 - left, -Infinity, Infinity, 0, H);
      backend.disposeData(wf.dataId);
      backend.disposeData(zero.dataId);
      return out;
    }
    dx.fill(0);
    if (simd && dw3x3Fits(ci)) {
      // Other strides: each dy vector times the 9 taps (in registers) added into dx, dw_dgrad's sums in its
      // order without its per-tap call ([32,48,48,48] stride 2: ~5 -> ~2 ms).
      simd.dw3x3_dgrad(ptr(backend, out), ptr(backend, dy), ptr(backend, filter), N, H, W, C, oH, oW, sh, sw, top, left);
      return out;
    }
    if (simd && M === 1) {
      simd.dw_dgrad(ptr(backend, out), ptr(backend, dy), ptr(backend, filter), 0, N, H, W, C, oH, oW, KH, KW, sh, sw, dh, dw, top, left);
      return out;
    }
    for (let n = 0; n < N; n++)
      for (let oh = 0; oh < oH; oh++)
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh - top + kh * dh;
          if (ih < 0 || ih >= H) continue;
          for (let ow = 0; ow < oW; ow++) {
            const gBase = ((n * oH + oh) * oW + ow) * CM;
            for (let kw = 0; kw < KW; kw++) {
              const iw = ow * sw - left + kw * dw;
              if (iw < 0 || iw >= W) continue;
              const xBase = ((n * H + ih) * W + iw) * C;
              const wBase = (kh * KW + kw) * CM;
              if (M === 1) {
                for (let c = 0; c < C; c++) dx[xBase + c] += g[gBase + c] * w[wBase + c];
              } else {
                for (let c = 0; c < C; c++) {
                  let s = 0;
                  for (let m = 0; m < M; m++) s += g[gBase + c * M + m] * w[wBase + c * M + m];
                  dx[xBase + c] += s;
                }
              }
            }
          }
        }
    return out;
  }

  function depthwiseConv2dNativeBackpropFilter({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { x, dy } = inputs;
    const filterShape = attrs.filterShape as number[];
    const ci = info(x.shape, filterShape, attrs);
    const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: oH, outWidth: oW, outChannels: CM } = ci;
    const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: KH, filterWidth: KW } = ci;
    const M = CM / C;
    const top = ci.padInfo.top, left = ci.padInfo.left;
    const simd = simdKernels(backend);
    if (simd && dw3x3Fits(ci)) {
      // 3x3: a vector of channels' 9 tap sums held in registers over each image (dw_wgrad's sums, in
      // its order; [32,48,48,16]: 7.0 -> ~2.5 ms).
      const totals = backend.makeOutput([2 * 9 * C], 'float32'); // float64 sums
      f32(backend, totals).fill(0);
      simd.dw3x3_wgrad(ptr(backend, x), ptr(backend, dy), ptr(backend, totals), N, H, W, C, oH, oW, sh, sw, top, left);
      const out = backend.makeOutput(filterShape, 'float32');
      const t = f32(backend, totals);
      f32(backend, out).set(new Float64Array(t.buffer, t.byteOffset, 9 * C));
      backend.disposeData(totals.dataId);
      return out;
    }
    if (simd && M === 1) {
      const scratch = backend.makeOutput([KH * KW * C], 'float32');
      const totals = backend.makeOutput([2 * KH * KW * C], 'float32'); // float64 sums
      f32(backend, totals).fill(0);
      simd.dw_wgrad(ptr(backend, x), ptr(backend, dy), ptr(backend, scratch), ptr(backend, totals), N, H, W, C, oH, oW, KH, KW, sh, sw, dh, dw, top, left);
      const out = backend.makeOutput(filterShape, 'float32');
      const t = f32(backend, totals);
      f32(backend, out).set(new Float64Array(t.buffer, t.byteOffset, KH * KW * C));
      backend.disposeData(scratch.dataId);
      backend.disposeData(totals.dataId);
      return out;
    }
    const acc = new Float64Array(KH * KW * CM);
    const xs = f32(backend, x), g = f32(backend, dy);
    for (let n = 0; n < N; n++)
      for (let oh = 0; oh < oH; oh++)
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh - top + kh * dh;
          if (ih < 0 || ih >= H) continue;
          for (let ow = 0; ow < oW; ow++) {
            const gBase = ((n * oH + oh) * oW + ow) * CM;
            for (let kw = 0; kw < KW; kw++) {
              const iw = ow * sw - left + kw * dw;
              if (iw < 0 || iw >= W) continue;
              const xBase = ((n * H + ih) * W + iw) * C;
              const wBase = (kh * KW + kw) * CM;
              if (M === 1) {
                for (let c = 0; c < C; c++) acc[wBase + c] += xs[xBase + c] * g[gBase + c];
              } else {
                for (let c = 0; c < C; c++) {
                  const xv = xs[xBase + c];
                  for (let m = 0; m < M; m++) acc[wBase + c * M + m] += xv * g[gBase + c * M + m];
                }
              }
            }
          }
        }
    const out = backend.makeOutput(filterShape, 'float32');
    f32(backend, out).set(acc);
    return out;
  }

  /**
   * DepthwiseConv2dNative (training's forward; a plan's runs fused, below): 3x3, any stride, channel
   * multiplier 1 and C % 4 == 0 by the SIMD dw3x3 (no bias, no clamp; against XNNPACK's, ms CPU:
   * [32,48,48,16] stride 1 1.5 -> 1.5, [32,48,48,48] stride 2 3.4 -> 2.8, [32,12,12,96] stride 2
   * 0.64 -> 0.22), else XNNPACK's with 'same' padding made explicit.
   */
  function depthwiseConv2dNative(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { x, filter } = args.inputs;
    const simd = simdKernels(backend);
    const ci = simd && x.dtype === 'float32' && filter.dtype === 'float32' ? info(x.shape, filter.shape, args.attrs ?? {}) : undefined;
    if (!simd || !ci || !dw3x3Fits(ci)) return depthwise(explicitSamePadding(tf, args, true));
    const C = ci.inChannels;
    const zero = backend.makeOutput([C], 'float32');
    f32(backend, zero).fill(0);
    const out = backend.makeOutput([ci.batchSize, ci.outHeight, ci.outWidth, C], 'float32');
    simd.dw3x3(ptr(backend, x), ptr(backend, filter), ptr(backend, zero), ptr(backend, out), ci.batchSize, ci.inHeight, ci.inWidth, C,
      ci.outHeight, ci.outWidth, ci.strideHeight, ci.strideWidth, ci.padInfo.top, ci.padInfo.left, -Infinity, Infinity, 0, ci.outHeight);
    backend.disposeData(zero.dataId);
    return out;
  }

  /**
   * FusedDepthwiseConv2D (depthwise conv + bias + activation, what an inference plan runs): 3x3,
   * channel multiplier 1, no dilation, C a multiple of 4, any stride and padding, by the SIMD dw3x3
   * when `simdInference()`; else XNNPACK's, with 'same' padding made explicit (./padding.ts).
   */
  function fusedDepthwiseConv2D(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { x, filter, bias } = args.inputs;
    const simd = simdInference() ? simdKernels(backend) : undefined;
    const [KH, KW, C, M] = filter.shape;
    const [dh, dw] = pair(args.attrs?.dilations);
    const clamp = simd && KH === 3 && KW === 3 && M === 1 && C % 4 === 0 && dh === 1 && dw === 1 && x.shape[3] === C ? fusedClamp(args, C) : undefined;
    if (!simd || !clamp) return fusedDepthwise(explicitSamePadding(tf, args, true));
    const ci = info(x.shape, filter.shape, args.attrs ?? {});
    const out = backend.makeOutput([ci.batchSize, ci.outHeight, ci.outWidth, C], 'float32');
    simd.dw3x3(ptr(backend, x), ptr(backend, filter), ptr(backend, bias), ptr(backend, out), ci.batchSize, ci.inHeight, ci.inWidth, C,
      ci.outHeight, ci.outWidth, ci.strideHeight, ci.strideWidth, ci.padInfo.top, ci.padInfo.left, clamp[0], clamp[1], 0, ci.outHeight);
    return out;
  }

  return { depthwiseConv2dNativeBackpropInput, depthwiseConv2dNativeBackpropFilter, depthwiseConv2dNative, fusedDepthwiseConv2D };
}

/** What the SIMD dw3x3 computes: a 3x3 filter, channel multiplier 1, no dilation, channels a multiple of 4 (strides are checked by callers). */
function dw3x3Fits(ci: { filterHeight: number; filterWidth: number; inChannels: number; outChannels: number; dilationHeight: number; dilationWidth: number; dataFormat: string }): boolean {
  return ci.filterHeight === 3 && ci.filterWidth === 3 && ci.outChannels === ci.inChannels && ci.inChannels % 4 === 0 &&
    ci.dilationHeight === 1 && ci.dilationWidth === 1 && ci.dataFormat === 'channelsLast';
}
