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
    dx.fill(0);
    const simd = simdKernels(backend);
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

  return { depthwiseConv2dNativeBackpropInput, depthwiseConv2dNativeBackpropFilter, fusedDepthwiseConv2D };
}
