import type * as tfType from '@tensorflow/tfjs';
import { simdKernels } from '../simd/module.js';
import { f32, ptr, type KernelArgs, type KernelImpl, type WasmBackend } from './util.js';

/** The kernel compress registers for batch norm's training gradient on wasm: [dx, dgamma, dbeta]. */
export const BN_GRAD_KERNEL = 'CompressBatchNormGrad';
/** ... and for the batch's statistics over every axis but the last: [mean, variance]. */
export const BN_MOMENTS_KERNEL = 'CompressMoments';

/** Below this many elements tfjs's composed gradient is as fast. */
const MIN_ELEMENTS = 1 << 12;

/**
 * Batch norm's training gradient over the last axis (statistics of the batch over every other axis,
 * M rows) in two SIMD passes, from the closed form: with xhat = (x - mean) * invstd,
 *   dbeta = sum dy, dgamma = sum dy * xhat,
 *   dx = gamma * invstd * (dy - dbeta / M - xhat * dgamma / M)
 * (the mean's and variance's own dependence on x included). tfjs differentiates batchNorm and moments
 * op by op: ~20 kernels a layer over the whole activation (MobileNetV2-0.35 96x96 batch 32: ~340 ms
 * CPU of a 1 s step in Multiply, Sum, Sub, Add, Mean, RealDiv, Tile, ...).
 */
export function makeBatchNormKernels() {
  function batchNormGrad({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo[] {
    const backend = b as WasmBackend;
    const { dy, x, mean, variance, gamma } = inputs;
    const eps = attrs.varianceEpsilon as number;
    const simd = simdKernels(backend);
    const C = x.shape[x.shape.length - 1];
    const M = x.shape.reduce((a, d) => a * d, 1) / C;
    if (!simd || C % 4 !== 0) throw new Error(`${BN_GRAD_KERNEL} needs the SIMD kernels and channels % 4 == 0`);
    const invstd = backend.makeOutput([C], 'float32');
    const acc = backend.makeOutput([4 * C], 'float32'); // 2C float64 sums
    const p = backend.makeOutput([C], 'float32'), q = backend.makeOutput([C], 'float32'), k = backend.makeOutput([C], 'float32');
    const dgamma = backend.makeOutput([C], 'float32'), dbeta = backend.makeOutput([C], 'float32');
    const dx = backend.makeOutput(x.shape, 'float32');
    {
      const iv = f32(backend, invstd), vv = f32(backend, variance);
      for (let c = 0; c < C; c++) iv[c] = 1 / Math.sqrt(vv[c] + eps);
    }
    simd.bn_grad_sums(ptr(backend, dy), ptr(backend, x), ptr(backend, mean), ptr(backend, invstd), ptr(backend, acc), M, C);
    {
      const a = f32(backend, acc);
      const sums = new Float64Array(a.buffer, a.byteOffset, 2 * C);
      const iv = f32(backend, invstd), gv = f32(backend, gamma);
      const pv = f32(backend, p), qv = f32(backend, q), kv = f32(backend, k), dg = f32(backend, dgamma), db = f32(backend, dbeta);
      for (let c = 0; c < C; c++) {
        const sdy = sums[c], sdyx = sums[C + c], s = gv[c] * iv[c];
        db[c] = sdy;
        dg[c] = sdyx;
        pv[c] = s;
        qv[c] = (-s * iv[c] * sdyx) / M;
        kv[c] = (-s * sdy) / M;
      }
    }
    simd.bn_grad_dx(ptr(backend, dy), ptr(backend, x), ptr(backend, mean), ptr(backend, p), ptr(backend, q), ptr(backend, k), ptr(backend, dx), M, C);
    for (const t of [invstd, acc, p, q, k]) backend.disposeData(t.dataId);
    return [dx, dgamma, dbeta];
  }
  /**
   * Mean and (biased) variance over every axis but the last, C % 4 == 0: two SIMD passes with float64
   * sums (the mean, then the squared deviations from it). tfjs's moments is four kernels (Mean, Sub,
   * Square, Mean) with float32 sums.
   */
  function moments({ inputs, backend: b }: KernelArgs): tfType.TensorInfo[] {
    const backend = b as WasmBackend;
    const { x } = inputs;
    const simd = simdKernels(backend);
    const C = x.shape[x.shape.length - 1];
    const M = x.shape.reduce((a, d) => a * d, 1) / C;
    if (!simd || C % 4 !== 0) throw new Error(`${BN_MOMENTS_KERNEL} needs the SIMD kernels and channels % 4 == 0`);
    const mean = backend.makeOutput([C], 'float32'), variance = backend.makeOutput([C], 'float32');
    const acc = backend.makeOutput([2 * C], 'float32'); // C float64 sums
    simd.sum_rows(ptr(backend, x), ptr(backend, mean), ptr(backend, acc), M, C);
    {
      const a = f32(backend, acc), mv = f32(backend, mean);
      const sums = new Float64Array(a.buffer, a.byteOffset, C);
      for (let c = 0; c < C; c++) mv[c] = sums[c] / M;
    }
    simd.sq_dev_rows(ptr(backend, x), ptr(backend, mean), ptr(backend, acc), M, C);
    {
      const a = f32(backend, acc), vv = f32(backend, variance);
      const sums = new Float64Array(a.buffer, a.byteOffset, C);
      for (let c = 0; c < C; c++) vv[c] = sums[c] / M;
    }
    backend.disposeData(acc.dataId);
    return [mean, variance];
  }

  return { batchNormGrad: batchNormGrad as unknown as KernelImpl, moments: moments as unknown as KernelImpl };
}

interface BatchNormLayer {
  axis: number;
  epsilon: number;
  momentum: number;
  center: boolean;
  scale: boolean;
  gamma: { read(): tfType.Tensor };
  beta: { read(): tfType.Tensor };
  movingMean: { read(): tfType.Tensor; write(t: tfType.Tensor): void };
  movingVariance: { read(): tfType.Tensor; write(t: tfType.Tensor): void };
}

type Call = (this: BatchNormLayer, inputs: tfType.Tensor | tfType.Tensor[], kwargs: Record<string, unknown>) => tfType.Tensor;

let patched = false;

/**
 * Training-mode BatchNormalization layers (last axis, scale and centre, float32, channels % 4 == 0)
 * run on wasm with the SIMD kernels as: the batch moments (BN_MOMENTS_KERNEL), tfjs's batchNorm
 * forward, and a custom gradient that is BN_GRAD_KERNEL; the moving mean and variance are updated as
 * tfjs-layers updates them. Outputs, gradients and moving statistics equal tfjs-layers' within
 * float32 rounding (tested against the cpu backend). Inference, other backends and other layouts run
 * tfjs-layers' own call. Idempotent.
 */
export function installBatchNormTraining(tf: typeof tfType): void {
  if (patched) return;
  patched = true;
  const proto = Object.getPrototypeOf(tf.layers.batchNormalization({})) as { call: Call };
  const original = proto.call;
  proto.call = function (this: BatchNormLayer, inputs, kwargs) {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const C = x.shape[x.rank - 1];
    const fast =
      kwargs?.training === true &&
      (this.axis === -1 || this.axis === x.rank - 1) &&
      this.scale && this.center && x.dtype === 'float32' && x.rank >= 2 && C % 4 === 0 && x.size >= MIN_ELEMENTS &&
      tf.getBackend() === 'wasm' && simdKernels() !== undefined;
    if (!fast) return original.call(this, inputs, kwargs);
    return tf.tidy(() => {
      const eps = this.epsilon;
      // Not on the path to any loss (only the moving averages read them): the tape skips them.
      const [mean, variance] = tf.engine().runKernel(BN_MOMENTS_KERNEL, { x }) as tfType.Tensor[];
      const normalize = tf.customGrad((xi, gamma, beta, save) => {
        const y = tf.batchNorm(xi as tfType.Tensor, mean, variance, beta as tfType.Tensor, gamma as tfType.Tensor, eps);
        (save as tfType.GradSaveFunc)([xi as tfType.Tensor, mean, variance, gamma as tfType.Tensor]);
        return {
          value: y,
          gradFunc: (dy: tfType.Tensor, saved: tfType.Tensor[]) => {
            const [sx, sm, sv, sg] = saved;
            return tf.engine().runKernel(BN_GRAD_KERNEL, { dy, x: sx, mean: sm, variance: sv, gamma: sg }, { varianceEpsilon: eps } as unknown as tfType.NamedAttrMap) as tfType.Tensor[];
          },
        };
      });
      const y = normalize(x, this.gamma.read(), this.beta.read());
      // tfjs-layers' moving average: v - (v - value) * (1 - momentum)
      for (const [v, value] of [[this.movingMean, mean], [this.movingVariance, variance]] as const) {
        tf.tidy(() => {
          const orig = v.read();
          v.write(tf.sub(orig, tf.mul(tf.sub(orig, value), 1 - this.momentum)));
        });
      }
      return y;
    });
  };
}
