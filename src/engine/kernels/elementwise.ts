import type * as tfType from '@tensorflow/tfjs';
import { wasmKernel, type KernelArgs, type KernelImpl, type WasmBackend } from './util.js';

interface RefCounting extends WasmBackend {
  incRef(dataId: tfType.DataId): void;
}

/**
 * Identity for wasm. tfjs clones every tensor it saves for the backward pass (on LeNet-5, 40 clones
 * a step, 3 of the largest activation); wasm's Identity copies the bytes (2.3 ms a step). Tensors
 * are immutable (no kernel writes its inputs; variables are re-assigned, never written in place), so
 * a clone can share the data by reference count, as tfjs's cpu backend and wasm's own Reshape do.
 * (A one-pass JS ReLU gradient was tried too: 4.2 ms against 2.75 ms for wasm's step/cast/mul.)
 */
export function makeElementwiseKernels(tf: typeof tfType) {
  const originalIdentity = wasmKernel(tf, 'Identity');

  function identity(args: KernelArgs): tfType.TensorInfo {
    const { x } = args.inputs;
    if (x.dtype === 'string') return originalIdentity(args);
    (args.backend as RefCounting).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  }
  return { identity: identity as KernelImpl };
}
