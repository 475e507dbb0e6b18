import type * as tfType from '@tensorflow/tfjs';
import { simdKernels } from '../simd/module.js';
import { activated, activeFusion, FUSABLE_ACTIVATIONS, inTrainingStep } from '../fused-activations.js';
import { CLIP_GRAD_KERNEL, RELU_GRAD_KERNEL } from './elementwise.js';
import { f32, ptr, type KernelArgs, type KernelImpl, type WasmBackend } from './util.js';

/** The kernel compress registers for batch norm's training gradient on wasm: [dx, dgamma, dbeta]. */
export const BN_GRAD_KERNEL = 'CompressBatchNormGrad';
/** ... and for the batch's statistics over every axis but the last: [mean, variance]. */
export const BN_MOMENTS_KERNEL = 'CompressMoments';
/** ... and for its forward with the activation that follows fused in (attr activationMax: clamp to [0, max]). */
export const BN_ACT_KERNEL = 'CompressBatchNormAct';

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
    const { dy, x, mean, variance, gamma, beta } = inputs;
    const eps = attrs.varianceEpsilon as number;
    // With an activation fused into the forward (BN_ACT_KERNEL), dy is its output's gradient: masked here.
    const hi = attrs.activationMax as number | undefined;
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
    const scale = hi === undefined ? undefined : scaleAndOffset(backend, variance, gamma, beta, eps);
    if (scale) simd.bn_act_grad_sums(ptr(backend, dy), ptr(backend, x), ptr(backend, mean), ptr(backend, invstd), ptr(backend, scale[0]), ptr(backend, scale[1]), hi!, ptr(backend, acc), M, C);
    else simd.bn_grad_sums(ptr(backend, dy), ptr(backend, x), ptr(backend, mean), ptr(backend, invstd), ptr(backend, acc), M, C);
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
    if (scale) {
      simd.bn_act_grad_dx(ptr(backend, dy), ptr(backend, x), ptr(backend, mean), ptr(backend, p), ptr(backend, q), ptr(backend, k),
        ptr(backend, scale[0]), ptr(backend, scale[1]), hi!, ptr(backend, dx), M, C);
      for (const t of scale) backend.disposeData(t.dataId);
    } else simd.bn_grad_dx(ptr(backend, dy), ptr(backend, x), ptr(backend, mean), ptr(backend, p), ptr(backend, q), ptr(backend, k), ptr(backend, dx), M, C);
    for (const t of [invstd, acc, p, q, k]) backend.disposeData(t.dataId);
    return [dx, dgamma, dbeta];
  }

  /**
   * Batch norm's forward over the last axis, C % 4 == 0, clamped to [0, activationMax] (a ReLU or ReLU6
   * that follows it, fused in: one pass instead of three). Its input z = (x - mean) * a + offset is
   * computed as FusedBatchNorm's SIMD path computes it (./elementwise.ts), and recomputed so by the
   * masked gradient, so the mask is the one the unfused ReLU and ClipByValue gradients would apply.
   */
  function batchNormAct({ inputs, backend: b, attrs = {} }: KernelArgs): tfType.TensorInfo {
    const backend = b as WasmBackend;
    const { x, mean, variance, gamma, beta } = inputs;
    const simd = simdKernels(backend);
    const C = x.shape[x.shape.length - 1];
    if (!simd || C % 4 !== 0) throw new Error(`${BN_ACT_KERNEL} needs the SIMD kernels and channels % 4 == 0`);
    const [a, off] = scaleAndOffset(backend, variance, gamma, beta, attrs.varianceEpsilon as number);
    const out = backend.makeOutput(x.shape, 'float32');
    simd.batch_norm_act(ptr(backend, x), ptr(backend, mean), ptr(backend, a), ptr(backend, off), ptr(backend, out), x.shape.reduce((p, d) => p * d, 1) / C, C, 0, attrs.activationMax as number);
    backend.disposeData(a.dataId);
    backend.disposeData(off.dataId);
    return out;
  }
  /**
   * Mean and (biased) variance over every axis but the last, C % 4 == 0, reading x once: sums of
   * d = x - shift and d^2 in one SIMD pass (float32 over blocks of 64 rows, float64 totals), shift the
   * mean of the first 64 rows (sum_rows over them), so variance = E[d^2] - E[d]^2 does not cancel
   * (E[d] is small against the spread). tfjs's moments is four kernels (Mean, Sub, Square, Mean)
   * with float32 sums; two passes (mean, then squared deviations) read x twice.
   */
  function moments({ inputs, backend: b }: KernelArgs): tfType.TensorInfo[] {
    const backend = b as WasmBackend;
    const { x } = inputs;
    const simd = simdKernels(backend);
    const C = x.shape[x.shape.length - 1];
    const M = x.shape.reduce((a, d) => a * d, 1) / C;
    if (!simd || C % 4 !== 0) throw new Error(`${BN_MOMENTS_KERNEL} needs the SIMD kernels and channels % 4 == 0`);
    const mean = backend.makeOutput([C], 'float32'), variance = backend.makeOutput([C], 'float32');
    const shift = backend.makeOutput([C], 'float32');
    const acc = backend.makeOutput([4 * C], 'float32'); // 2C float64 sums
    const head = Math.min(64, M);
    simd.sum_rows(ptr(backend, x), ptr(backend, shift), ptr(backend, acc), head, C);
    {
      const sv = f32(backend, shift);
      for (let c = 0; c < C; c++) sv[c] /= head;
    }
    simd.shifted_moments(ptr(backend, x), ptr(backend, shift), ptr(backend, acc), M, C);
    {
      const a = f32(backend, acc), mv = f32(backend, mean), vv = f32(backend, variance), sv = f32(backend, shift);
      const sums = new Float64Array(a.buffer, a.byteOffset, 2 * C);
      for (let c = 0; c < C; c++) {
        const d = sums[c] / M;
        mv[c] = sv[c] + d;
        vv[c] = Math.max(0, sums[C + c] / M - d * d);
      }
    }
    backend.disposeData(acc.dataId);
    backend.disposeData(shift.dataId);
    return [mean, variance];
  }

  return { batchNormGrad: batchNormGrad as unknown as KernelImpl, moments: moments as unknown as KernelImpl, batchNormAct: batchNormAct as KernelImpl };
}

/** Per channel a = gamma / sqrt(variance + eps) and the offset beta, as FusedBatchNorm's SIMD path computes them. */
function scaleAndOffset(backend: WasmBackend, variance: tfType.TensorInfo, gamma: tfType.TensorInfo, beta: tfType.TensorInfo, eps: number): [tfType.TensorInfo, tfType.TensorInfo] {
  const C = variance.shape[variance.shape.length - 1];
  const a = backend.makeOutput([C], 'float32'), off = backend.makeOutput([C], 'float32');
  const av = f32(backend, a), ov = f32(backend, off), vv = f32(backend, variance), gv = f32(backend, gamma), bv = f32(backend, beta);
  for (let c = 0; c < C; c++) {
    av[c] = gv[c] / Math.sqrt(vv[c] + eps);
    ov[c] = bv[c];
  }
  return [a, off];
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
 * forward (or BN_ACT_KERNEL with the activation after it fused, see withFusedActivations), and a
 * custom gradient that is BN_GRAD_KERNEL; the moving mean and variance are updated as tfjs-layers
 * updates them, in one pass each. Outputs, gradients and moving statistics equal tfjs-layers' within
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
    // On a gradient tape (a training step; a frozen batch norm there runs in inference mode, still taped).
    const taped = (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
    if (taped && (!this.scale || !this.center)) return withUnitAffine(tf, this, () => proto.call.call(this, inputs, kwargs));
    const C = x.shape[x.rank - 1];
    const fast =
      kwargs?.training === true &&
      (this.axis === -1 || this.axis === x.rank - 1) &&
      this.scale && this.center && x.dtype === 'float32' && x.rank >= 2 && C % 4 === 0 && x.size >= MIN_ELEMENTS &&
      tf.getBackend() === 'wasm' && simdKernels() !== undefined;
    if (!fast) return original.call(this, inputs, kwargs);
    const max = activeFusion(this);
    const act = max === undefined ? {} : { activationMax: max };
    const y = tf.tidy(() => {
      const eps = this.epsilon;
      // Not on the path to any loss (only the moving averages read them): the tape skips them.
      const [mean, variance] = tf.engine().runKernel(BN_MOMENTS_KERNEL, { x }) as tfType.Tensor[];
      const normalize = tf.customGrad((xi, gamma, beta, save) => {
        const [g, b] = [gamma as tfType.Tensor, beta as tfType.Tensor];
        const value = max === undefined
          ? tf.batchNorm(xi as tfType.Tensor, mean, variance, b, g, eps)
          : (tf.engine().runKernel(BN_ACT_KERNEL, { x: xi as tfType.Tensor, mean, variance, gamma: g, beta: b }, { varianceEpsilon: eps, ...act } as unknown as tfType.NamedAttrMap) as tfType.Tensor);
        (save as tfType.GradSaveFunc)([xi as tfType.Tensor, mean, variance, g, b]);
        return {
          value,
          gradFunc: (dy: tfType.Tensor, saved: tfType.Tensor[]) => {
            const [sx, sm, sv, sg, sb] = saved;
            return tf.engine().runKernel(BN_GRAD_KERNEL, { dy, x: sx, mean: sm, variance: sv, gamma: sg, beta: sb }, { varianceEpsilon: eps, ...act } as unknown as tfType.NamedAttrMap) as tfType.Tensor[];
          },
        };
      });
      const out = normalize(x, this.gamma.read(), this.beta.read());
      updateMovingAverage(tf, this.movingMean, mean, this.momentum);
      updateMovingAverage(tf, this.movingVariance, variance, this.momentum);
      return out;
    });
    if (max !== undefined) activated.set(y, max);
    return y;
  };
  // The activation layers a batch norm may have applied already (FUSABLE_ACTIVATIONS) pass such an input through.
  const relu = Object.getPrototypeOf(tf.layers.reLU({})) as { call: (this: unknown, inputs: tfType.Tensor | tfType.Tensor[], kwargs: unknown) => tfType.Tensor };
  const reluCall = relu.call;
  relu.call = function (inputs, kwargs) {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const done = activated.get(x);
    // A reshape to its own shape: no copy, and its gradient passes dy on without one (returned as is,
    // the layer would clone it: Identity, whose gradient is a Cast that copies).
    const max = FUSABLE_ACTIVATIONS.ReLU(this);
    if (done !== undefined && done === max) return tf.reshape(x, x.shape);
    if (max !== undefined && inTrainingStep() && x.dtype === 'float32' && x.size >= MIN_ELEMENTS && tf.getBackend() === 'wasm' && simdKernels() !== undefined) {
      return reluFromOutput(tf, x, max);
    }
    return reluCall.call(this, inputs, kwargs);
  };
}

/**
 * A ReLU / ReLU(maxValue) layer in a training step, as one op that keeps only its output for the backward
 * pass: y = min(max(x, 0), max), dy passed where 0 < y < max (RELU_GRAD_KERNEL / CLIP_GRAD_KERNEL on y, one
 * pass). tfjs-layers' ReLU6 is relu then clipByValue, which keep their inputs (the conv's output and the relu's)
 * on the tape besides the output the next layer keeps: a conv -> ReLU6 chain without batch norm (the importers'
 * convs with the batch norm folded in: ONNX from PyTorch, TF.js graph models) held three activations per layer
 * until the backward pass, now one. The gradient differs from the layer's only where x == max exactly (the
 * layer passes dy there, this does not; y cannot tell x == max from x > max).
 */
function reluFromOutput(tf: typeof tfType, x: tfType.Tensor, max: number): tfType.Tensor {
  const op = tf.customGrad((xi, save) => {
    const y = max === Infinity ? tf.relu(xi as tfType.Tensor) : tf.clipByValue(xi as tfType.Tensor, 0, max);
    (save as tfType.GradSaveFunc)([y]);
    return {
      value: y,
      gradFunc: (dy: tfType.Tensor, [sy]: tfType.Tensor[]) =>
        max === Infinity
          ? (tf.engine().runKernel(RELU_GRAD_KERNEL, { dy, x: sy }) as tfType.Tensor)
          : (tf.engine().runKernel(CLIP_GRAD_KERNEL, { dy, x: sy }, { clipValueMin: MIN_POSITIVE_FLOAT32, clipValueMax: belowFloat32(max) } as unknown as tfType.NamedAttrMap) as tfType.Tensor),
    };
  });
  return op(x) as tfType.Tensor;
}

/** The smallest positive float32 (a denormal): `lo <= y` with it is `y > 0`. */
const MIN_POSITIVE_FLOAT32 = 1.401298464324817e-45;

/** The largest float32 below `v` (v > 0): `y <= belowFloat32(v)` is `y < v`. */
function belowFloat32(v: number): number {
  const f = new Float32Array([v]);
  const bits = new Uint32Array(f.buffer);
  bits[0] -= 1;
  return f[0];
}

/**
 * A batch norm without scale (`scale: false`, as keras.applications InceptionV3 builds every one) or without
 * centre runs its training step with a constant gamma of ones / beta of zeros: the same values, and tfjs's
 * batchNorm gradient, which saves the scale input for the backward pass, fails on a missing one ("Cannot read
 * properties of undefined (reading 'dtype')": such a model could not be fine-tuned at all).
 */
function withUnitAffine(tf: typeof tfType, layer: BatchNormLayer, call: () => tfType.Tensor): tfType.Tensor {
  const own = { scale: layer.scale, center: layer.center, gamma: layer.gamma, beta: layer.beta };
  const C = layer.movingMean.read().shape[0];
  const constant = (v: number) => ({ read: () => tf.fill([C], v) });
  try {
    if (!layer.scale) Object.assign(layer, { scale: true, gamma: constant(1) });
    if (!layer.center) Object.assign(layer, { center: true, beta: constant(0) });
    return call();
  } finally {
    Object.assign(layer, own);
  }
}

/**
 * tfjs-layers' moving average v - (v - value) * (1 - momentum) in one pass on the wasm heap, each
 * operation rounded to float32 as its three kernels round it (so the same values): 4 kernels and
 * their engine overhead per statistic per layer before (MobileNetV2: 208 Sub, 104 Multiply a step).
 */
function updateMovingAverage(tf: typeof tfType, v: { read(): tfType.Tensor; write(t: tfType.Tensor): void }, value: tfType.Tensor, momentum: number): void {
  const backend = tf.backend() as unknown as WasmBackend;
  const orig = v.read();
  const info = backend.makeOutput(orig.shape, 'float32');
  const o = f32(backend, info), a = f32(backend, orig), b = f32(backend, value);
  const m = Math.fround(1 - momentum), r = Math.fround;
  for (let i = 0; i < o.length; i++) o[i] = r(a[i] - r(r(a[i] - b[i]) * m));
  const t = tf.engine().makeTensorFromTensorInfo(info);
  v.write(t);
  t.dispose();
}
