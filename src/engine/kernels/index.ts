import type * as tfType from '@tensorflow/tfjs';

/** Registers the training kernels the wasm backend lacks (see ../../../docs in the engine issue). */
export function registerWasmKernels(_tf: typeof tfType): void {
  // Filled in by the engine kernels work.
}
