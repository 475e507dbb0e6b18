import type * as tfType from '@tensorflow/tfjs';

/** The parts of tfjs-backend-wasm's BackendWasm that compress's kernels use. */
export interface WasmBackend {
  makeOutput(shape: number[], dtype: tfType.DataType): tfType.TensorInfo;
  typedArrayFromHeap(t: tfType.TensorInfo): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: tfType.DataId): boolean;
  getMemoryOffset(dataId: tfType.DataId): number;
}

export interface KernelArgs {
  inputs: Record<string, tfType.TensorInfo>;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

export type KernelImpl = (args: KernelArgs) => tfType.TensorInfo;

/** A float32 view of a tensor on the wasm heap. Re-fetch after any allocation (the heap may grow). */
export function f32(backend: WasmBackend, t: tfType.TensorInfo): Float32Array {
  const a = backend.typedArrayFromHeap(t);
  if (!(a instanceof Float32Array)) throw new Error(`expected a float32 tensor, got ${t.dtype}`);
  return a;
}

/** Byte offset of a tensor's data on the wasm heap (what the SIMD kernels take as a pointer). */
export function ptr(backend: WasmBackend, t: tfType.TensorInfo): number {
  return backend.getMemoryOffset(t.dataId);
}

export function pair(v: unknown, fallback = 1): [number, number] {
  if (v == null) return [fallback, fallback];
  if (typeof v === 'number') return [v, v];
  const a = v as number[];
  return [a[0], a.length > 1 ? a[1] : a[0]];
}

export function assertNHWC(kernel: string, dataFormat: unknown): void {
  if (dataFormat != null && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`${kernel} on wasm supports only NHWC (got ${String(dataFormat)})`);
  }
}

/** Looks up a wasm kernel already registered (tfjs's own or ours) and returns its function. */
export function wasmKernel(tf: typeof tfType, name: string): KernelImpl {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm kernel ${name} is not registered`);
  return k.kernelFunc as unknown as KernelImpl;
}

/** Fused activations compress's inference conv kernels apply as a clamp of their output, by tfjs name. */
export const FUSED_CLAMP: Readonly<Record<string, readonly [number, number]>> = {
  linear: [-Infinity, Infinity],
  relu: [0, Infinity],
  relu6: [0, 6],
};

/**
 * The [lo, hi] clamp of a fused conv's activation when the SIMD inference kernels can run it: float32
 * input and filter, a rank-1 bias of `channels` values, no PReLU weights; else undefined.
 */
export function fusedClamp(args: KernelArgs, channels: number): readonly [number, number] | undefined {
  const { x, filter, bias, preluActivationWeights } = args.inputs;
  const clamp = FUSED_CLAMP[String(args.attrs?.activation ?? 'linear')];
  if (!clamp || preluActivationWeights || !bias || bias.dtype !== 'float32' || bias.shape.length !== 1 || bias.shape[0] !== channels) return undefined;
  const df = args.attrs?.dataFormat;
  if (x.dtype !== 'float32' || filter.dtype !== 'float32' || (df != null && df !== 'NHWC' && df !== 'channelsLast')) return undefined;
  return clamp;
}
