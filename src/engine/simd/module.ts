import wabtInit from 'wabt';
import { KERNELS_WAT } from './kernels.wat.js';

/** compress's wasm SIMD kernels; pointers are byte offsets into tfjs-backend-wasm's heap, counts are floats. */
export interface SimdKernels {
  relu_grad(dy: number, x: number, out: number, n: number): void;
  relu(x: number, out: number, n: number): void;
  bias_add(x: number, bias: number, out: number, rows: number, channels: number): void;
  sum_rows(x: number, out: number, scratch: number, rows: number, channels: number): void;
  col2im_add(dx: number, cols: number, N: number, H: number, W: number, Ci: number, oH: number, oW: number,
    KH: number, KW: number, sh: number, sw: number, top: number, left: number): void;
  conv_wgrad(x: number, dy: number, out: number, cols: number, blockPositions: number, N: number, H: number, W: number,
    Ci: number, oH: number, oW: number, Co: number, KH: number, KW: number, sh: number, sw: number, dh: number, dw: number,
    top: number, left: number): void;
  adam(out: number, p: number, g: number, m: number, v: number, n: number,
    b1: number, b2: number, c1: number, c2: number, inv1: number, inv2: number, eps: number, nlr: number): void;
  conv_dgrad(dx: number, dy: number, wT: number, N: number, H: number, W: number, Ci: number, oH: number, oW: number,
    Co: number, KH: number, KW: number): void;
  pad_columns(src: number, dst: number, rows: number, C: number, Cp: number): void;
  maxpool_grad_2x2(dx: number, x: number, g: number, N: number, H: number, W: number, C: number): void;
}

let kernels: SimdKernels | undefined;
let compiled: WebAssembly.Module | undefined;

/** The module's binary, assembled once per process (~75 ms: wabt's own start-up is most of it). */
async function compile(): Promise<WebAssembly.Module> {
  if (compiled) return compiled;
  const wabt = await wabtInit();
  const parsed = wabt.parseWat('compress-kernels.wat', KERNELS_WAT, { simd: true, bulk_memory: true });
  try {
    parsed.validate();
    compiled = new WebAssembly.Module(parsed.toBinary({}).buffer as Uint8Array<ArrayBuffer>);
  } finally {
    parsed.destroy();
  }
  return compiled;
}

/**
 * Instantiates the kernels over `memory` (tfjs-backend-wasm's heap). Tensor data never moves between
 * heaps: the kernels read and write tfjs's buffers in place. Idempotent per process.
 */
export async function loadSimdKernels(memory: WebAssembly.Memory): Promise<SimdKernels> {
  if (kernels) return kernels;
  const instance = new WebAssembly.Instance(await compile(), { env: { memory } });
  kernels = instance.exports as unknown as SimdKernels;
  return kernels;
}

/** The loaded kernels, or undefined before the wasm backend has started (callers fall back to JS). */
export function simdKernels(): SimdKernels | undefined {
  return kernels;
}
