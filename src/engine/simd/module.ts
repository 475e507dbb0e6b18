import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import wabtInit from 'wabt';
import { KERNELS_WAT } from './kernels.wat.js';

/** compress's wasm SIMD kernels; pointers are byte offsets into tfjs-backend-wasm's heap, counts are floats. */
export interface SimdKernels {
  relu_grad(dy: number, x: number, out: number, n: number): void;
  relu(x: number, out: number, n: number): void;
  bias_add(x: number, bias: number, out: number, rows: number, channels: number): void;
  channel_sub(x: number, v: number, out: number, rows: number, channels: number): void;
  channel_mul(x: number, v: number, out: number, rows: number, channels: number): void;
  batch_norm(x: number, mean: number, a: number, offset: number, out: number, rows: number, channels: number): void;
  sum_rows(x: number, out: number, scratch: number, rows: number, channels: number): void;
  col2im_add(dx: number, cols: number, N: number, H: number, W: number, Ci: number, oH: number, oW: number,
    KH: number, KW: number, sh: number, sw: number, dh: number, top: number, left: number): void;
  conv_wgrad(x: number, dy: number, out: number, cols: number, blockPositions: number, N: number, H: number, W: number,
    Ci: number, oH: number, oW: number, Co: number, KH: number, KW: number, sh: number, sw: number, dh: number, dw: number,
    top: number, left: number): void;
  adam(out: number, p: number, g: number, m: number, v: number, n: number,
    b1: number, b2: number, c1: number, c2: number, inv1: number, inv2: number, eps: number, nlr: number): void;
  conv_dgrad(dx: number, dy: number, wT: number, N: number, H: number, W: number, Ci: number, oH: number, oW: number,
    Co: number, KH: number, KW: number): void;
  gemm_acc(a: number, aStride: number, b: number, bStride: number, K: number, out: number, outStride: number, M: number, N: number): void;
  gemm_tn(a: number, aStride: number, b: number, bStride: number, K: number, out: number, M: number, N: number): void;
  conv_fwd(x: number, w: number, y: number, cols: number, blockPositions: number, N: number, H: number, W: number,
    Ci: number, oH: number, oW: number, Co: number, KH: number, KW: number, sh: number, sw: number, dh: number, dw: number,
    top: number, left: number): void;
  pad_columns(src: number, dst: number, rows: number, C: number, Cp: number): void;
  dw_dgrad(dx: number, dy: number, filter: number, unused: number, N: number, H: number, W: number, C: number, oH: number, oW: number,
    KH: number, KW: number, sh: number, sw: number, dh: number, dw: number, top: number, left: number): void;
  dw_wgrad(x: number, dy: number, scratch: number, acc: number, N: number, H: number, W: number, C: number, oH: number, oW: number,
    KH: number, KW: number, sh: number, sw: number, dh: number, dw: number, top: number, left: number): void;
  maxpool_grad_2x2(dx: number, x: number, g: number, N: number, H: number, W: number, C: number): void;
}

/** Where `npm run build` puts the assembled module (next to this file in dist/), with the digest of its source. */
export const PREBUILT_WASM = new URL('./kernels.wasm', import.meta.url);
export const PREBUILT_DIGEST = new URL('./kernels.wasm.sha256', import.meta.url);

let kernels: SimdKernels | undefined;
let boundMemory: WebAssembly.Memory | undefined;
let compiled: WebAssembly.Module | undefined;

/** sha256 of the kernels' text: a prebuilt binary is used only if it was assembled from exactly this. */
export function kernelsDigest(): string {
  return createHash('sha256').update(KERNELS_WAT).digest('hex');
}

/** Assembles the text with wabt (~75 ms, most of it wabt's own start-up). */
export async function assembleKernels(): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const parsed = wabt.parseWat('compress-kernels.wat', KERNELS_WAT, { simd: true, bulk_memory: true });
  try {
    parsed.validate();
    return parsed.toBinary({}).buffer;
  } finally {
    parsed.destroy();
  }
}

/** The prebuilt binary when its digest matches the source, else the source assembled now. */
async function compile(): Promise<WebAssembly.Module> {
  if (compiled) return compiled;
  let bytes: Uint8Array | undefined;
  try {
    if (readFileSync(PREBUILT_DIGEST, 'utf8').trim() === kernelsDigest()) bytes = readFileSync(PREBUILT_WASM);
  } catch {
    bytes = undefined; // not built (tsc only): assemble below
  }
  compiled = new WebAssembly.Module((bytes ?? (await assembleKernels())) as Uint8Array<ArrayBuffer>);
  return compiled;
}

/**
 * Instantiates the kernels over `memory` (tfjs-backend-wasm's heap). Tensor data never moves between
 * heaps: the kernels read and write tfjs's buffers in place. Idempotent per process.
 */
export async function loadSimdKernels(memory: WebAssembly.Memory): Promise<SimdKernels> {
  if (kernels && boundMemory === memory) return kernels;
  return bind(await compile(), memory);
}

function bind(module: WebAssembly.Module, memory: WebAssembly.Memory): SimdKernels {
  kernels = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as SimdKernels;
  boundMemory = memory;
  return kernels;
}

/**
 * The loaded kernels, or undefined before the wasm backend has started (callers fall back to JS).
 * Given the backend a kernel runs on, the kernels bound to that backend's heap: if tfjs has made a
 * new wasm backend since (tf.engine().reset() does), they are bound to its heap first.
 */
export function simdKernels(backend?: unknown): SimdKernels | undefined {
  if (!kernels || backend === undefined) return kernels;
  const memory = (backend as { wasm?: { asm?: { memory?: unknown } } }).wasm?.asm?.memory;
  if (memory === boundMemory) return kernels;
  return memory instanceof WebAssembly.Memory && compiled ? bind(compiled, memory) : undefined;
}
