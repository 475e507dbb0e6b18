import type * as tfType from '@tensorflow/tfjs';
import { simdKernels } from '../simd/module.js';
import { f32, ptr, wasmKernel, type KernelArgs, type KernelImpl, type WasmBackend } from './util.js';

interface RefCounting extends WasmBackend {
  incRef(dataId: tfType.DataId): void;
}

/** Below this many elements tfjs-backend-wasm's own kernels are as fast (their call overhead is small). */
const MIN_ELEMENTS = 1 << 12;

/** The kernel compress registers for the ReLU gradient on wasm (tfjs has none: it composes step, cast, mul). */
export const RELU_GRAD_KERNEL = 'CompressReluGrad';
/** The same for ClipByValue (ReLU6 layers): tfjs composes greaterEqual, lessEqual, logicalAnd, zerosLike, select. */
export const CLIP_GRAD_KERNEL = 'CompressClipGrad';

const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Element-wise kernels for wasm.
 * - Identity: tfjs clones every tensor it saves for the backward pass (on LeNet-5, 40 clones a
 *   step, 3 of the largest activation); wasm's Identity copies the bytes (2.3 ms a step). Tensors
 *   are immutable (no kernel writes its inputs; variables are re-assigned, never written in place),
 *   so a clone shares the data by reference count, as tfjs's cpu backend and wasm's Reshape do.
 * - Relu, Add / Sub / Multiply of a channel vector ([..., C] with [C]) and the ReLU gradient run as
 *   SIMD loops (./simd): wasm broadcasts element by element (a bias add on LeNet-5's first conv
 *   output: 1.2 ms) and the gradient was three kernels (step, cast, mul: 2.75 ms); a one-pass JS
 *   loop was slower still (4.2 ms).
 */
export function makeElementwiseKernels(tf: typeof tfType) {
  const originalIdentity = wasmKernel(tf, 'Identity');
  const originalRelu = wasmKernel(tf, 'Relu');
  const originalAdd = wasmKernel(tf, 'Add');
  const originalSub = wasmKernel(tf, 'Sub');
  const originalMultiply = wasmKernel(tf, 'Multiply');
  const originalBatchNorm = wasmKernel(tf, 'FusedBatchNorm');

  function identity(args: KernelArgs): tfType.TensorInfo {
    const { x } = args.inputs;
    if (x.dtype === 'string') return originalIdentity(args);
    (args.backend as RefCounting).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  }

  function relu(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { x } = args.inputs;
    const simd = simdKernels(backend);
    const n = sizeOf(x.shape);
    if (!simd || x.dtype !== 'float32' || n < MIN_ELEMENTS) return originalRelu(args);
    const out = backend.makeOutput(x.shape, 'float32');
    simd.relu(ptr(backend, x), ptr(backend, out), n);
    return out;
  }

  /**
   * a (+ - *) b where one side is a vector over the other's last axis ([..., C] with [C] or
   * [1, ..., 1, C]: a bias, batch norm's mean and scale); anything else goes to wasm's kernel.
   * Sub only with the vector on the right (x - mean).
   */
  function channelOp(kind: 'bias_add' | 'channel_sub' | 'channel_mul', original: KernelImpl, commutes: boolean) {
    return (args: KernelArgs): tfType.TensorInfo => {
      const backend = args.backend as WasmBackend;
      const { a, b } = args.inputs;
      const simd = simdKernels(backend);
      if (simd && a.dtype === 'float32' && b.dtype === 'float32') {
        const [big, vec] = a.shape.length >= b.shape.length || !commutes ? [a, b] : [b, a];
        const C = big.shape[big.shape.length - 1];
        const n = sizeOf(big.shape);
        const isChannel = big.shape.length >= 2 && sizeOf(vec.shape) === C && vec.shape[vec.shape.length - 1] === C && vec.shape.length <= big.shape.length;
        if (isChannel && sizeOf(big.shape) > C && C >= 4 && n >= MIN_ELEMENTS) {
          const out = backend.makeOutput(big.shape, 'float32');
          simd[kind](ptr(backend, big), ptr(backend, vec), ptr(backend, out), n / C, C);
          return out;
        }
        // Same shapes (a residual connection's Add): one row of n floats (tfjs-wasm's broadcasting loop
        // takes ~5 ns an element; the same single-rounded op, same bits).
        if (a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]) && n >= MIN_ELEMENTS) {
          const out = backend.makeOutput(a.shape, 'float32');
          simd[kind](ptr(backend, a), ptr(backend, b), ptr(backend, out), 1, n);
          return out;
        }
      }
      return original(args);
    };
  }

  /**
   * FusedBatchNorm over the last axis ([..., C] with [C] statistics): wasm's loop takes ~5 ns an
   * element (1 ms for a [64,7,7,64] activation); here per-channel scale / sqrt(variance + eps) is
   * computed once and one SIMD pass does (x - mean) * a + offset.
   */
  function fusedBatchNorm(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { x, mean, variance, offset, scale } = args.inputs;
    const simd = simdKernels(backend);
    const C = x.shape[x.shape.length - 1];
    const n = sizeOf(x.shape);
    const stats = [mean, variance, offset, scale].filter((t) => t != null);
    const perChannel = stats.every((t) => t.dtype === 'float32' && sizeOf(t.shape) === C && t.shape[t.shape.length - 1] === C);
    if (!simd || x.dtype !== 'float32' || x.shape.length < 2 || !perChannel || C < 4 || n < MIN_ELEMENTS) return originalBatchNorm(args);
    const eps = (args.attrs?.varianceEpsilon as number | undefined) ?? 0.001;
    const a = backend.makeOutput([C], 'float32'), off = backend.makeOutput([C], 'float32');
    const out = backend.makeOutput(x.shape, 'float32');
    const av = f32(backend, a), ov = f32(backend, off), vv = f32(backend, variance);
    const sv = scale ? f32(backend, scale) : undefined, bv = offset ? f32(backend, offset) : undefined;
    for (let c = 0; c < C; c++) {
      av[c] = (sv ? sv[c] : 1) / Math.sqrt(vv[c] + eps);
      ov[c] = bv ? bv[c] : 0;
    }
    simd.batch_norm(ptr(backend, x), ptr(backend, mean), ptr(backend, a), ptr(backend, off), ptr(backend, out), n / C, C);
    backend.disposeData(a.dataId);
    backend.disposeData(off.dataId);
    return out;
  }

  /** dy where x > 0, else 0: the ReLU gradient in one pass. */
  function reluGrad(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { dy, x } = args.inputs;
    const simd = simdKernels(backend);
    const n = sizeOf(x.shape);
    if (!simd || n < 4) throw new Error(`${RELU_GRAD_KERNEL} needs the SIMD kernels and >= 4 elements`);
    const out = backend.makeOutput(x.shape, 'float32');
    simd.relu_grad(ptr(backend, dy), ptr(backend, x), ptr(backend, out), n);
    return out;
  }

  /** dy where lo <= x <= hi, else 0: the ClipByValue gradient in one pass. */
  function clipGrad(args: KernelArgs): tfType.TensorInfo {
    const backend = args.backend as WasmBackend;
    const { dy, x } = args.inputs;
    const { clipValueMin, clipValueMax } = args.attrs as { clipValueMin: number; clipValueMax: number };
    const simd = simdKernels(backend);
    const n = sizeOf(x.shape);
    if (!simd || n < 4) throw new Error(`${CLIP_GRAD_KERNEL} needs the SIMD kernels and >= 4 elements`);
    const out = backend.makeOutput(x.shape, 'float32');
    simd.clip_grad(ptr(backend, dy), ptr(backend, x), ptr(backend, out), n, clipValueMin, clipValueMax);
    return out;
  }

  return {
    identity: identity as KernelImpl,
    clipGrad: clipGrad as KernelImpl,
    relu: relu as KernelImpl,
    add: channelOp('bias_add', originalAdd, true) as KernelImpl,
    sub: channelOp('channel_sub', originalSub, false) as KernelImpl,
    multiply: channelOp('channel_mul', originalMultiply, true) as KernelImpl,
    reluGrad: reluGrad as KernelImpl,
    fusedBatchNorm: fusedBatchNorm as KernelImpl,
  };
}

/**
 * The Relu gradient: on wasm with the SIMD kernels loaded, one pass (RELU_GRAD_KERNEL); elsewhere
 * (cpu, tfjs-node, small tensors, non-float) tfjs's own formula dy * step(x).
 */
export function registerReluGradient(tf: typeof tfType): void {
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved;
      const g = dy as tfType.Tensor;
      const fast = tf.getBackend() === 'wasm' && simdKernels() !== undefined && x.dtype === 'float32' && g.dtype === 'float32' && x.size >= MIN_ELEMENTS;
      return {
        x: () => (fast ? (tf.engine().runKernel(RELU_GRAD_KERNEL, { dy: g, x }) as tfType.Tensor) : tf.mul(g, tf.cast(tf.step(x), 'float32'))),
      };
    },
  });
}

/**
 * The ClipByValue gradient (a ReLU6 layer runs relu then clipByValue(0, 6)): on wasm with the SIMD
 * kernels, one pass (CLIP_GRAD_KERNEL; MobileNetV2-0.35 96x96 batch 32: the five kernels tfjs composes
 * took ~430 ms CPU of a 1.7 s step); elsewhere tfjs's own formula.
 */
export function registerClipGradient(tf: typeof tfType): void {
  tf.registerGradient({
    kernelName: 'ClipByValue',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const g = dy as tfType.Tensor;
      const { clipValueMin, clipValueMax } = attrs as unknown as { clipValueMin: number; clipValueMax: number };
      const fast = tf.getBackend() === 'wasm' && simdKernels() !== undefined && x.dtype === 'float32' && g.dtype === 'float32' && x.size >= MIN_ELEMENTS;
      return {
        x: () =>
          fast
            ? (tf.engine().runKernel(CLIP_GRAD_KERNEL, { dy: g, x }, { clipValueMin, clipValueMax } as unknown as tfType.NamedAttrMap) as tfType.Tensor)
            : tf.where(tf.logicalAnd(tf.greaterEqual(x, clipValueMin), tf.lessEqual(x, clipValueMax)), g, tf.zerosLike(g)),
      };
    },
  });
}
