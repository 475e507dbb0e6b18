import type * as tfType from '@tensorflow/tfjs';
import { convThreads, simdKernels, type SimdKernels } from '../simd/module.js';
import { gemmScratchFloats, packGemmB } from '../simd/conv.wat.js';
import { assertNHWC, f32, fusedClamp, pair, ptr, wasmKernel, type KernelArgs, type KernelImpl, type WasmBackend } from './util.js';
import { explicitSamePadding } from './padding.js';

/** Input channels from which the filter gradient without SIMD is computed as a conv (see backpropFilterAsConv). */
const CONV_WGRAD_MIN_CI = 8;

/** Input channels up to which the forward conv runs as the SIMD conv_fwd rather than XNNPACK's. */
const CONV_FWD_MAX_CI = 4;

/** Largest im2col buffer (floats) built at once; larger problems are split over the batch. */
const COLS_LIMIT = 1 << 22;

/**
 * Conv2D gradients for wasm. Measured on LeNet-5 shapes (batch 64), in order of preference:
 *  - input gradient, stride 1 and 'same'-like padding: a forward conv (XNNPACK) of dy, padded by
 *    effK-1-pad, with the spatially flipped, in/out-swapped filter (costs one forward conv);
 *  - input gradient, stride 1 'valid' (KW*Ci % 4 == 0): the SIMD conv_dgrad, gemm and col2im fused
 *    (conv2: 7 ms; 10.5-13.5 ms as an XNNPACK gemm into an 8 MB cols buffer plus col2im);
 *  - input gradient otherwise (strides): cols = dy[P,Co] . W^T[Co,KK] (XNNPACK), then a col2im
 *    scatter-add (SIMD; JS without it); no work is spent on padding or stride holes;
 *  - filter gradient: the SIMD conv_wgrad, patches gathered per block of positions and summed in
 *    register tiles (conv1 2.0 ms, conv2 7.6 ms); without SIMD, im2col^T . dy or, from 8 input
 *    channels, one XNNPACK conv of the transposed operands (conv1 ~7.6 ms, conv2 ~11.3 ms).
 * All accept an optional `dilations` attribute (tfjs's own gradient never passes one; ours does).
 */
export function makeConv2DKernels(tf: typeof tfType, matMul: KernelImpl, simdInference: () => boolean) {
  const conv2d = wasmKernel(tf, 'Conv2D');
  const fusedConv2d = wasmKernel(tf, 'FusedConv2D');
  const transpose = wasmKernel(tf, 'Transpose');

  function conv2DBackpropInput({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { dy, filter } = inputs;
    assertNHWC('Conv2DBackpropInput', attrs.dataFormat);
    const inputShape = attrs.inputShape as [number, number, number, number];
    const info = tf.backend_util.computeConv2DInfo(
      inputShape, filter.shape as [number, number, number, number], attrs.strides as [number, number],
      pair(attrs.dilations), attrs.pad as 'same', attrs.dimRoundingMode as 'floor' | undefined, false, 'channelsLast',
    );
    const { batchSize: N, inHeight: H, inWidth: W, inChannels: Ci, outHeight: oH, outWidth: oW, outChannels: Co } = info;
    const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: KH, filterWidth: KW } = info;
    const eKH = info.effectiveFilterHeight, eKW = info.effectiveFilterWidth;
    const pt = eKH - 1 - info.padInfo.top, pl = eKW - 1 - info.padInfo.left;
    const Hp = H + eKH - 1, Wp = W + eKW - 1;
    const pb = Hp - pt - ((oH - 1) * sh + 1), pr = Wp - pl - ((oW - 1) * sw + 1);

    const simd = simdKernels(backend);
    if (simd && KH === 1 && KW === 1 && sh === 1 && sw === 1 && Ci % 4 === 0 && oH === H && oW === W && dy.dtype === 'float32') {
      // 1x1 stride 1: dx[P, Ci] = dy[P, Co] . W^T, by the SIMD GEMM (1.5-2x XNNPACK's conv here, which
      // also repacks the new filter every step; [32,3,3,1280] -> 112: 7.2 -> 4.0 ms).
      const wT = backend.makeOutput([Co * Ci], 'float32'), zero = backend.makeOutput([Ci], 'float32');
      simd.pack_strips_t(ptr(backend, filter), ptr(backend, wT), Co, Ci);
      f32(backend, zero).fill(0);
      const out = backend.makeOutput([N, H, W, Ci], 'float32');
      runGemm(backend, simd, ptr(backend, dy), ptr(backend, wT), ptr(backend, zero), ptr(backend, out), N * H * W, Co, Ci, -Infinity, Infinity);
      backend.disposeData(wT.dataId);
      backend.disposeData(zero.dataId);
      return out;
    }
    const direct = sh === 1 && sw === 1 && pt >= 0 && pl >= 0 && pb >= 0 && pr >= 0;
    // The conv formulation computes every input position against the whole kernel; the col2im one
    // only real (output, tap) pairs. Use the conv one where they cost about the same ('same' padding).
    if (!direct || H * W > 1.3 * oH * oW) return backpropInputCol2im(backend, dy, filter, info);

    // Flipped, in/out-swapped filter: wf[kh,kw,co,ci] = w[KH-1-kh, KW-1-kw, ci, co].
    const wf = backend.makeOutput([KH, KW, Co, Ci], 'float32');
    const dyp = direct ? dy : backend.makeOutput([N, Hp, Wp, Co], 'float32');
    {
      const w = f32(backend, filter), o = f32(backend, wf);
      for (let kh = 0; kh < KH; kh++)
        for (let kw = 0; kw < KW; kw++) {
          const src = ((KH - 1 - kh) * KW + (KW - 1 - kw)) * Ci * Co;
          const dst = (kh * KW + kw) * Co * Ci;
          for (let ci = 0; ci < Ci; ci++) for (let co = 0; co < Co; co++) o[dst + co * Ci + ci] = w[src + ci * Co + co];
        }
    }
    if (!direct) {
      // Dilate dy by the stride and pad it so that a 'valid' stride-1 conv yields [N,H,W,Ci].
      const g = f32(backend, dy), p = f32(backend, dyp);
      p.fill(0);
      for (let n = 0; n < N; n++)
        for (let oh = 0; oh < oH; oh++) {
          const r = pt + oh * sh;
          if (r < 0 || r >= Hp) continue;
          for (let ow = 0; ow < oW; ow++) {
            const c = pl + ow * sw;
            if (c < 0 || c >= Wp) continue;
            const src = ((n * oH + oh) * oW + ow) * Co;
            p.set(g.subarray(src, src + Co), ((n * Hp + r) * Wp + c) * Co);
          }
        }
    }
    const pad = direct ? [[0, 0], [pt, pb], [pl, pr], [0, 0]] : 'valid';
    const out = conv2d({
      inputs: { x: dyp, filter: wf },
      backend,
      attrs: { strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [dh, dw], dimRoundingMode: undefined },
    });
    backend.disposeData(wf.dataId);
    if (!direct) backend.disposeData(dyp.dataId);
    return out;
  }

  type ConvInfo = ReturnType<typeof tf.backend_util.computeConv2DInfo>;

  /** Samples per chunk so that one im2col buffer stays under COLS_LIMIT floats. */
  const chunkOf = (info: ConvInfo) =>
    Math.max(1, Math.min(info.batchSize, Math.floor(COLS_LIMIT / (info.outHeight * info.outWidth * info.filterHeight * info.filterWidth * info.inChannels))));

  /** dy rows of samples [n0, n0+nb) as a [nb*oH*oW, Co] matrix (a view when it is all of dy). */
  function dyRows(backend: WasmBackend, dy: tfType.TensorInfo, info: ConvInfo, n0: number, nb: number) {
    const rows = info.outHeight * info.outWidth, Co = info.outChannels;
    if (nb === info.batchSize) return { t: { dataId: dy.dataId, shape: [nb * rows, Co], dtype: dy.dtype } as tfType.TensorInfo, owned: false };
    const t = backend.makeOutput([nb * rows, Co], 'float32');
    f32(backend, t).set(f32(backend, dy).subarray(n0 * rows * Co, (n0 + nb) * rows * Co));
    return { t, owned: true };
  }

  /** Range [lo, hi) of output columns whose tap kw lands inside the input (iw = ow*sw - left + kw*dw). */
  function validRange(kOff: number, stride: number, size: number, outSize: number): [number, number] {
    // iw = ow*stride + kOff must lie in [0, size)
    const lo = Math.max(0, Math.ceil(-kOff / stride));
    const hi = Math.min(outSize, Math.floor((size - 1 - kOff) / stride) + 1);
    return [lo, Math.max(lo, hi)];
  }

  /**
   * Input gradient as cols = dy[P, Co] . W^T[Co, KH*KW*Ci] (dy is used in place; only the small
   * filter is transposed, so XNNPACK packs just KK*Co weights), then a col2im scatter-add straight
   * into NHWC dx: for one output position and one kernel row the (kw, ci) block of cols lands on a
   * contiguous run of dx when the dilation is 1 (KW*Ci floats); no work on padding or stride holes.
   */
  function backpropInputCol2im(backend: WasmBackend, dy: tfType.TensorInfo, filter: tfType.TensorInfo, info: ConvInfo): tfType.TensorInfo {
    const { batchSize: N, inHeight: H, inWidth: W, inChannels: Ci, outHeight: oH, outWidth: oW, outChannels: Co } = info;
    const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: KH, filterWidth: KW } = info;
    const top = info.padInfo.top, left = info.padInfo.left;
    const KK = KH * KW * Ci;
    const w2d = { dataId: filter.dataId, shape: [KK, Co], dtype: filter.dtype } as tfType.TensorInfo;
    const wT = transpose({ inputs: { x: w2d }, backend, attrs: { perm: [1, 0] } });
    const out = backend.makeOutput([N, H, W, Ci], 'float32');
    f32(backend, out).fill(0);
    const simd = simdKernels(backend);
    const valid = top === 0 && left === 0 && oH === H - KH + 1 && oW === W - KW + 1;
    if (simd && sh === 1 && sw === 1 && dh === 1 && dw === 1 && valid && (KW * Ci) % 4 === 0) {
      // Fused gemm + col2im (LeNet-5 conv2: ~11-13 -> ~7 ms): see conv_dgrad in ../simd.
      simd.conv_dgrad(ptr(backend, out), ptr(backend, dy), ptr(backend, wT), N, H, W, Ci, oH, oW, Co, KH, KW);
      backend.disposeData(wT.dataId);
      return out;
    }
    // Per output column: the kernel columns [kwLo, kwHi) that land inside the input (dilation 1).
    const kwLo = new Int32Array(oW), kwHi = new Int32Array(oW);
    for (let ow = 0; ow < oW; ow++) {
      const iw0 = ow * sw - left;
      kwLo[ow] = Math.min(KW, Math.max(0, Math.ceil(-iw0 / dw)));
      kwHi[ow] = Math.max(kwLo[ow], Math.min(KW, Math.floor((W - 1 - iw0) / dw) + 1));
    }
    const nbMax = chunkOf(info);
    for (let n0 = 0; n0 < N; n0 += nbMax) {
      const nb = Math.min(nbMax, N - n0);
      const rows = dyRows(backend, dy, info, n0, nb);
      const cols = matMul({ inputs: { a: rows.t, b: wT }, backend, attrs: { transposeA: false, transposeB: false } });
      if (rows.owned) backend.disposeData(rows.t.dataId);
      const simd = simdKernels(backend);
      if (simd && dw === 1) {
        const sampleBytes = H * W * Ci * 4;
        simd.col2im_add(ptr(backend, out) + n0 * sampleBytes, ptr(backend, cols), nb, H, W, Ci, oH, oW, KH, KW, sh, sw, dh, top, left);
        backend.disposeData(cols.dataId);
        continue;
      }
      const c = f32(backend, cols), dx = f32(backend, out);
      let p = 0;
      for (let n = n0; n < n0 + nb; n++)
        for (let oh = 0; oh < oH; oh++)
          for (let ow = 0; ow < oW; ow++, p += KK) {
            const lo = kwLo[ow], hi = kwHi[ow];
            if (lo >= hi) continue;
            const iw0 = ow * sw - left;
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * sh - top + kh * dh;
              if (ih < 0 || ih >= H) continue;
              const rowBase = ((n * H + ih) * W + iw0) * Ci;
              if (dw === 1) {
                addRun(dx, rowBase + lo * Ci, c, p + (kh * KW + lo) * Ci, (hi - lo) * Ci);
              } else {
                for (let kw = lo; kw < hi; kw++) addRun(dx, rowBase + kw * dw * Ci, c, p + (kh * KW + kw) * Ci, Ci);
              }
            }
          }
      backend.disposeData(cols.dataId);
    }
    backend.disposeData(wT.dataId);
    return out;
  }

  function conv2DBackpropFilter({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { x, dy } = inputs;
    assertNHWC('Conv2DBackpropFilter', attrs.dataFormat);
    const filterShape = attrs.filterShape as [number, number, number, number];
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], filterShape, attrs.strides as [number, number],
      pair(attrs.dilations), attrs.pad as 'same', attrs.dimRoundingMode as 'floor' | undefined, false, 'channelsLast',
    );
    const { batchSize: N, inHeight: H, inWidth: W, inChannels: Ci, outHeight: oH, outWidth: oW, outChannels: Co } = info;
    const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, filterHeight: KH, filterWidth: KW } = info;
    const top = info.padInfo.top, left = info.padInfo.left;
    const KK = KH * KW * Ci;
    const simd = simdKernels(backend);
    if (simd && KH === 1 && KW === 1 && sh === 1 && sw === 1 && oH === H && oW === W && Ci % 4 === 0 && Co % 4 === 0 && Co <= Ci) {
      // 1x1 stride 1 with no more output than input channels (a projection): dW = x^T[Ci, P] . dy[P, Co]
      // by gemm_tn's tiles reading x and dy in place, without conv_wgrad's gather of x into blocks
      // (same process, ms CPU: [32,48,48,16] -> 8 2.4 -> 1.0, [32,24,24,48] -> 8 1.2 -> 0.8, 336 -> 112 1.9 -> 1.4;
      // with more output channels the gather's blocking wins).
      const out = backend.makeOutput(filterShape, 'float32');
      f32(backend, out).fill(0);
      simd.gemm_tn(ptr(backend, x), Ci * 4, ptr(backend, dy), Co * 4, N * H * W, ptr(backend, out), Ci, Co);
      return out;
    }
    if (simd) {
      // Direct SIMD kernel: no im2col of the whole batch, no packing of dy (LeNet-5 conv1: 7.6 -> 2.0 ms,
      // conv2: 11.3 ms as the conv below -> 7.6 ms).
      // Its tiles are 4 channels wide: other Co run on a copy of dy padded to a multiple of 4.
      const Cp = (Co + 3) & ~3;
      const KKp = (KK + 3) & ~3;
      const block = Math.max(16, Math.floor(12288 / (KKp + Cp))); // a block's patches and dy rows stay in L1/L2
      const scratch = backend.makeOutput([block * KKp], 'float32');
      const P = N * oH * oW;
      const dyp = Cp === Co ? dy : backend.makeOutput([P, Cp], 'float32');
      if (dyp !== dy) simd.pad_columns(ptr(backend, dy), ptr(backend, dyp), P, Co, Cp);
      const res = backend.makeOutput(Cp === Co ? filterShape : [KK, Cp], 'float32');
      simd.conv_wgrad(ptr(backend, x), ptr(backend, dyp), ptr(backend, res), ptr(backend, scratch), block,
        N, H, W, Ci, oH, oW, Cp, KH, KW, sh, sw, dh, dw, top, left);
      backend.disposeData(scratch.dataId);
      if (dyp === dy) return res;
      backend.disposeData(dyp.dataId);
      const out = backend.makeOutput(filterShape, 'float32');
      const o = f32(backend, out), r = f32(backend, res);
      for (let k = 0; k < KK; k++) o.set(r.subarray(k * Cp, k * Cp + Co), k * Co);
      backend.disposeData(res.dataId);
      return out;
    }
    if (Ci >= CONV_WGRAD_MIN_CI && sh === 1 && sw === 1 && dh === 1 && dw === 1) return backpropFilterAsConv(backend, x, dy, info, filterShape);
    // Channel-major x^T [Ci, N, H, W], so every im2col row is built from contiguous runs.
    const xt = Ci === 1 ? x : transpose({ inputs: { x }, backend, attrs: { perm: [3, 0, 1, 2] } });
    const nbMax = chunkOf(info);
    let acc: Float32Array | undefined;
    let result: tfType.TensorInfo | undefined;
    for (let n0 = 0; n0 < N; n0 += nbMax) {
      const nb = Math.min(nbMax, N - n0);
      const P = nb * oH * oW;
      // im2col^T: [KH*KW*Ci, P], row (kh,kw,ci), column (n,oh,ow); zero where the tap hits padding.
      const cols = backend.makeOutput([KK, P], 'float32');
      {
        const xs = f32(backend, xt), o = f32(backend, cols);
        let idx = 0;
        for (let kh = 0; kh < KH; kh++)
          for (let kw = 0; kw < KW; kw++) {
            const kOff = kw * dw - left;
            const [lo, hi] = validRange(kOff, sw, W, oW);
            for (let ci = 0; ci < Ci; ci++)
              for (let n = n0; n < n0 + nb; n++)
                for (let oh = 0; oh < oH; oh++, idx += oW) {
                  const ih = oh * sh - top + kh * dh;
                  if (ih < 0 || ih >= H) {
                    o.fill(0, idx, idx + oW);
                    continue;
                  }
                  const base = ((ci * N + n) * H + ih) * W + kOff;
                  if (sw === 1 && lo === 0 && hi === oW) {
                    copyRun(o, idx, xs, base, oW);
                    continue;
                  }
                  for (let ow = 0; ow < lo; ow++) o[idx + ow] = 0;
                  if (sw === 1) copyRun(o, idx + lo, xs, base + lo, hi - lo);
                  else for (let ow = lo; ow < hi; ow++) o[idx + ow] = xs[base + ow * sw];
                  for (let ow = hi; ow < oW; ow++) o[idx + ow] = 0;
                }
          }
      }
      const rows = dyRows(backend, dy, info, n0, nb);
      const part = matMul({ inputs: { a: cols, b: rows.t }, backend, attrs: { transposeA: false, transposeB: false } });
      backend.disposeData(cols.dataId);
      if (rows.owned) backend.disposeData(rows.t.dataId);
      if (nb === N) {
        result = part;
        break;
      }
      const pv = f32(backend, part);
      if (!acc) acc = Float32Array.from(pv);
      else for (let i = 0; i < acc.length; i++) acc[i] += pv[i];
      backend.disposeData(part.dataId);
    }
    if (xt !== x) backend.disposeData(xt.dataId);
    if (!result) {
      result = backend.makeOutput([KK, Co], 'float32');
      f32(backend, result).set(acc!);
    }
    result.shape = filterShape;
    return result;
  }

  /**
   * Filter gradient as one XNNPACK conv, no JS im2col: x^T [Ci,H,W,N] (batch Ci, channels N) convolved
   * with dy^T [oH,oW,N,Co] as the filter gives dW as [Ci,KH,KW,Co]. Pays off with many input channels
   * (LeNet-5 conv2: 12.7 vs 14.5 ms); with few the im2col one is faster (conv1, Ci=1: 3.8 vs 11 ms).
   */
  function backpropFilterAsConv(backend: WasmBackend, x: tfType.TensorInfo, dy: tfType.TensorInfo, info: ConvInfo, filterShape: number[]): tfType.TensorInfo {
    const { top, bottom, left, right } = info.padInfo;
    const xt = transpose({ inputs: { x }, backend, attrs: { perm: [3, 1, 2, 0] } });
    const dyt = transpose({ inputs: { x: dy }, backend, attrs: { perm: [1, 2, 0, 3] } });
    const pad = [[0, 0], [top, bottom], [left, right], [0, 0]];
    const g = conv2d({ inputs: { x: xt, filter: dyt }, backend, attrs: { strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined } });
    backend.disposeData(xt.dataId);
    backend.disposeData(dyt.dataId);
    const out = transpose({ inputs: { x: g }, backend, attrs: { perm: [1, 2, 0, 3] } });
    backend.disposeData(g.dataId);
    out.shape = filterShape;
    return out;
  }

  /**
   * Conv2D forward for few input channels (as the first layer of an image model): XNNPACK's
   * indirect gemm runs a K of KH*KW*Ci this short at half speed (LeNet-5 conv1: 3.3 ms); the SIMD
   * conv_fwd gathers patches into L1-sized blocks and multiplies them in register tiles.
   */
  function conv2DForward(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { x, filter } = args.inputs;
    const attrs = args.attrs ?? {};
    const simd = simdKernels(backend);
    const df = attrs.dataFormat;
    const Ci = x.shape[3], Co = filter.shape[3];
    const nhwc = df == null || df === 'NHWC' || df === 'channelsLast';
    const packed = simd && nhwc && x.dtype === 'float32' && filter.dtype === 'float32' && (attrs.pad === 'same' || attrs.pad === 'valid')
      ? packedConv(filter.shape, attrs.strides, attrs.dilations, attrs.pad) : undefined;
    if (simd && packed) {
      // The convs the inference plan runs on compress's SIMD kernels (PACKED_CONVS: 1x1 stride 1 as one
      // GEMM, an image's first 3x3 conv over 3 channels) run so in training too, with a zero bias and no
      // clamp, the filter packed per call by pack_strips (XNNPACK repacks a new filter every step as well): 1x1 1.2-2.7x
      // faster than XNNPACK's conv on MobileNetV2-0.35's training shapes.
      const info = tf.backend_util.computeConv2DInfo(
        x.shape as [number, number, number, number], filter.shape as [number, number, number, number], pair(attrs.strides),
        pair(attrs.dilations), attrs.pad as 'same' | 'valid', attrs.dimRoundingMode as 'floor' | undefined, false, 'channelsLast',
      );
      const K = filter.shape[0] * filter.shape[1] * Ci;
      const zero = backend.makeOutput([Co], 'float32'), w = backend.makeOutput([K * Co], 'float32');
      f32(backend, zero).fill(0);
      simd.pack_strips(ptr(backend, filter), ptr(backend, w), K, Co);
      const out = backend.makeOutput([info.batchSize, info.outHeight, info.outWidth, Co], 'float32');
      packed.run(simd, backend, { x: ptr(backend, x), w: ptr(backend, w), bias: ptr(backend, zero), out: ptr(backend, out) }, info, [-Infinity, Infinity]);
      backend.disposeData(zero.dataId);
      backend.disposeData(w.dataId);
      return out;
    }
    if (!simd || x.dtype !== 'float32' || filter.dtype !== 'float32' || (df != null && df !== 'NHWC' && df !== 'channelsLast') || Ci > CONV_FWD_MAX_CI || Co % 4 !== 0) {
      return conv2d(explicitSamePadding(tf, args, false));
    }
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], filter.shape as [number, number, number, number], attrs.strides as [number, number],
      pair(attrs.dilations), attrs.pad as 'same', attrs.dimRoundingMode as 'floor' | undefined, false, 'channelsLast',
    );
    const { batchSize: N, inHeight: H, inWidth: W, outHeight: oH, outWidth: oW } = info;
    const KK = info.filterHeight * info.filterWidth * Ci, KKp = (KK + 3) & ~3;
    const block = Math.max(16, Math.floor(12288 / (KKp + Co)));
    const scratch = backend.makeOutput([block * KKp], 'float32');
    const out = backend.makeOutput([N, oH, oW, Co], 'float32');
    simd.conv_fwd(ptr(backend, x), ptr(backend, filter), ptr(backend, out), ptr(backend, scratch), block,
      N, H, W, Ci, oH, oW, Co, info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth,
      info.dilationHeight, info.dilationWidth, info.padInfo.top, info.padInfo.left);
    backend.disposeData(scratch.dataId);
    return out;
  }

  /**
   * FusedConv2D (conv + bias + activation, what an inference plan runs): the convs of PACKED_CONVS
   * by compress's SIMD kernels when `simdInference()` (the bias and the activation's clamp in their
   * output pass), every other conv by XNNPACK, with 'same' padding made explicit (./padding.ts).
   * Explicit padding (a plan's folded ZeroPadding2D) runs on the SIMD kernels that take padding (packedConv).
   * The SIMD kernels read the filter as a [KH*KW*Ci, Co] matrix in column strips (packGemmB): an
   * inference plan packs its constant filters once and passes them as the extra input `packedFilter`
   * (XNNPACK ignores it); other callers' filters are packed here, per call.
   */
  function fusedConv2D(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { x, filter, bias, packedFilter } = args.inputs;
    const simd = simdInference() ? simdKernels(backend) : undefined;
    const [KH, KW, Ci, Co] = filter.shape;
    const pad = args.attrs?.pad;
    const conv = simd && x.shape[3] === Ci ? packedConv(filter.shape, args.attrs?.strides, args.attrs?.dilations, pad) : undefined;
    const clamp = conv ? fusedClamp(args, Co) : undefined;
    if (!simd || !conv || !clamp) return fusedConv2d(explicitSamePadding(tf, args, false));
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number], filter.shape as [number, number, number, number], pair(args.attrs?.strides),
      pair(args.attrs?.dilations), pad as 'same' | 'valid' | ExplicitPadding, args.attrs?.dimRoundingMode as 'floor' | undefined, false, 'channelsLast',
    );
    const K = KH * KW * Ci;
    const prepacked = packedFilter?.dtype === 'float32' && packedFilter.shape.reduce((a, b) => a * b, 1) === K * Co ? packedFilter : undefined;
    const packed = prepacked ?? backend.makeOutput([K * Co], 'float32');
    const out = backend.makeOutput([info.batchSize, info.outHeight, info.outWidth, Co], 'float32');
    if (!prepacked) packGemmB(f32(backend, filter), K, Co, f32(backend, packed));
    conv.run(simd, backend, { x: ptr(backend, x), w: ptr(backend, packed), bias: ptr(backend, bias), out: ptr(backend, out) }, info, clamp);
    if (!prepacked) backend.disposeData(packed.dataId);
    return out;
  }

  return { conv2DBackpropInput, conv2DBackpropFilter, conv2DForward, fusedConv2D };
}

/** dst[d..d+len) = src[s..s+len), unrolled by 4 (the runs here are short: JS loop overhead dominates). */
function copyRun(dst: Float32Array, d: number, src: Float32Array, s: number, len: number): void {
  let j = 0;
  for (; j + 4 <= len; j += 4) {
    dst[d + j] = src[s + j];
    dst[d + j + 1] = src[s + j + 1];
    dst[d + j + 2] = src[s + j + 2];
    dst[d + j + 3] = src[s + j + 3];
  }
  for (; j < len; j++) dst[d + j] = src[s + j];
}

/** dst[d..d+len) += src[s..s+len), unrolled by 4. */
function addRun(dst: Float32Array, d: number, src: Float32Array, s: number, len: number): void {
  let j = 0;
  for (; j + 4 <= len; j += 4) {
    dst[d + j] += src[s + j];
    dst[d + j + 1] += src[s + j + 1];
    dst[d + j + 2] += src[s + j + 2];
    dst[d + j + 3] += src[s + j + 3];
  }
  for (; j < len; j++) dst[d + j] += src[s + j];
}

type ConvInfo2D = ReturnType<typeof tfType.backend_util.computeConv2DInfo>;
/** tfjs's explicit conv padding, NHWC: [[0, 0], [top, bottom], [left, right], [0, 0]]. */
type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];
interface PackedConv {
  fits(filter: number[], strides: [number, number], dilations: [number, number]): boolean;
  /** Whether it computes padded outputs (else only convs that read no padding: 'same' or 'valid' of a 1x1 stride 1, or zero explicit padding). */
  pads: boolean;
  run(simd: SimdKernels, backend: WasmBackend, p: { x: number; w: number; bias: number; out: number }, info: ConvInfo2D, clamp: readonly [number, number]): void;
}

/**
 * The fused convs compress's SIMD inference kernels run (src/engine/simd/conv.wat.ts), output
 * channels a multiple of 4, 'same' or 'valid' padding; each reads the filter packed by packGemmB.
 */
const PACKED_CONVS: readonly PackedConv[] = [
  {
    // 1x1 stride 1: one matrix product [pixels, Ci] . [Ci, Co] (register tiles of 4 x 8)
    fits: ([KH, KW], [sh, sw]) => KH === 1 && KW === 1 && sh === 1 && sw === 1,
    pads: false,
    run: (simd, backend, p, i, [lo, hi]) =>
      runGemm(backend, simd, p.x, p.w, p.bias, p.out, i.batchSize * i.inHeight * i.inWidth, i.inChannels, i.outChannels, lo, hi),
  },
  {
    // an image model's first conv: 3x3 over 3 channels, any stride (XNNPACK: ~4.5 GMAC/s on MobileNetV2's)
    fits: ([KH, KW, Ci], _s, [dh, dw]) => KH === 3 && KW === 3 && Ci === 3 && dh === 1 && dw === 1,
    pads: true,
    run: (simd, _backend, p, i, [lo, hi]) =>
      simd.conv3x3c3(p.x, p.w, p.bias, p.out, i.batchSize, i.inHeight, i.inWidth, i.outChannels, i.outHeight, i.outWidth,
        i.strideHeight, i.strideWidth, i.padInfo.top, i.padInfo.left, lo, hi, 0, i.outHeight),
  },
];

/**
 * The SIMD kernel that runs a fused conv of this filter shape, strides, dilations and padding ('same', 'valid' or
 * explicit [[0, 0], [top, bottom], [left, right], [0, 0]], e.g. an inference plan's folded ZeroPadding2D), if any.
 */
export function packedConv(filterShape: number[], strides: unknown, dilations: unknown, pad: unknown): PackedConv | undefined {
  if (filterShape[3] % 4 !== 0) return undefined;
  const explicit = Array.isArray(pad) ? (pad as ExplicitPadding) : undefined;
  if (!explicit && pad !== 'same' && pad !== 'valid') return undefined;
  if (explicit && (explicit[0].some((p) => p !== 0) || explicit[3].some((p) => p !== 0))) return undefined;
  const padded = explicit !== undefined && (explicit[1].some((p) => p !== 0) || explicit[2].some((p) => p !== 0));
  const s = pair(strides), d = pair(dilations);
  return PACKED_CONVS.find((c) => c.fits(filterShape, s, d) && (c.pads || !padded));
}

/**
 * o[M, N] = clamp(a[M, K] . b + bias, lo, hi) by the SIMD gemm_bias_act (b packed by packGemmB, o's
 * rows N floats apart), with the scratch it packs a's rows into (per conv thread) allocated around it.
 */
function runGemm(backend: WasmBackend, simd: SimdKernels, a: number, b: number, bias: number, o: number, M: number, K: number, N: number, lo: number, hi: number): void {
  const scratch = backend.makeOutput([gemmScratchFloats(K) * convThreads()], 'float32');
  simd.gemm_bias_act(a, b, bias, o, M, K, N, lo, hi, N, ptr(backend, scratch));
  backend.disposeData(scratch.dataId);
}
