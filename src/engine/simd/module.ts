import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import wabtInit from 'wabt';
import { KERNELS_WAT } from './kernels.wat.js';

/** compress's wasm SIMD kernels; pointers are byte offsets into tfjs-backend-wasm's heap, counts are floats. */
export interface SimdKernels {
  relu_grad(dy: number, x: number, out: number, n: number): void;
  relu(x: number, out: number, n: number): void;
  clip_grad(dy: number, x: number, out: number, n: number, lo: number, hi: number): void;
  sq_dev_rows(x: number, mean: number, acc: number, rows: number, channels: number): void;
  bn_grad_sums(dy: number, x: number, mean: number, invstd: number, acc: number, rows: number, channels: number): void;
  bn_grad_dx(dy: number, x: number, mean: number, p: number, q: number, k: number, out: number, rows: number, channels: number): void;
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

/**
 * The two builds of the kernels: over an ordinary heap (tfjs's single-threaded wasm) and over a shared
 * one (its threaded build, whose heap is a SharedArrayBuffer; a module must declare a shared memory to
 * import one). Same code, only the memory import differs.
 */
export type MemoryKind = 'plain' | 'shared';
const MEMORY_IMPORT = '(import "env" "memory" (memory 0))';

/** The kernels' text for a memory kind. */
export function kernelsText(kind: MemoryKind): string {
  if (!KERNELS_WAT.includes(MEMORY_IMPORT)) throw new Error('kernels.wat.ts: memory import not found');
  return kind === 'plain' ? KERNELS_WAT : KERNELS_WAT.replace(MEMORY_IMPORT, '(import "env" "memory" (memory 0 65536 shared))');
}

/** Where `npm run build` puts the assembled module (next to this file in dist/), with the digest of its source. */
export function prebuilt(kind: MemoryKind): { wasm: URL; digest: URL } {
  const base = kind === 'plain' ? './kernels.wasm' : './kernels-shared.wasm';
  return { wasm: new URL(base, import.meta.url), digest: new URL(`${base}.sha256`, import.meta.url) };
}

let kernels: SimdKernels | undefined;
let boundMemory: WebAssembly.Memory | undefined;
const compiled: Partial<Record<MemoryKind, WebAssembly.Module>> = {};

/** sha256 of the kernels' text: a prebuilt binary is used only if it was assembled from exactly this. */
export function kernelsDigest(kind: MemoryKind = 'plain'): string {
  return createHash('sha256').update(kernelsText(kind)).digest('hex');
}

/** Assembles the text with wabt (~75 ms, most of it wabt's own start-up). */
export async function assembleKernels(kind: MemoryKind = 'plain'): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const features = { simd: true, bulk_memory: true, threads: kind === 'shared' };
  const parsed = wabt.parseWat('compress-kernels.wat', kernelsText(kind), features);
  try {
    // wabt validates with the features it is given (its typings omit the parameter)
    (parsed.validate as (f: typeof features) => void)(features);
    return parsed.toBinary({}).buffer;
  } finally {
    parsed.destroy();
  }
}

const memoryKind = (memory: WebAssembly.Memory): MemoryKind => (memory.buffer instanceof SharedArrayBuffer ? 'shared' : 'plain');

/** The prebuilt binary when its digest matches the source, else the source assembled now. */
async function compile(kind: MemoryKind): Promise<WebAssembly.Module> {
  const done = compiled[kind];
  if (done) return done;
  let bytes: Uint8Array | undefined;
  const files = prebuilt(kind);
  try {
    if (readFileSync(files.digest, 'utf8').trim() === kernelsDigest(kind)) bytes = readFileSync(files.wasm);
  } catch {
    bytes = undefined; // not built (tsc only): assemble below
  }
  const module = new WebAssembly.Module((bytes ?? (await assembleKernels(kind))) as Uint8Array<ArrayBuffer>);
  compiled[kind] = module;
  return module;
}

/**
 * Instantiates the kernels over `memory` (tfjs-backend-wasm's heap). Tensor data never moves between
 * heaps: the kernels read and write tfjs's buffers in place. Idempotent per process.
 */
export async function loadSimdKernels(memory: WebAssembly.Memory): Promise<SimdKernels> {
  if (kernels && boundMemory === memory) return kernels;
  return bind(await compile(memoryKind(memory)), memory);
}

function bind(module: WebAssembly.Module, memory: WebAssembly.Memory): SimdKernels {
  kernels = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as SimdKernels;
  boundMemory = memory;
  return kernels;
}

/**
 * The wasm memory of a tfjs-backend-wasm backend: exported by its single-threaded builds, imported
 * (Module.wasmMemory) by its threaded one.
 */
export function heapMemory(backend: unknown): WebAssembly.Memory | undefined {
  const wasm = (backend as { wasm?: { asm?: { memory?: unknown }; wasmMemory?: unknown } }).wasm;
  const memory = wasm?.asm?.memory ?? wasm?.wasmMemory;
  return memory instanceof WebAssembly.Memory ? memory : undefined;
}

/**
 * The loaded kernels, or undefined before the wasm backend has started (callers fall back to JS).
 * Given the backend a kernel runs on, the kernels bound to that backend's heap: if tfjs has made a
 * new wasm backend since (tf.engine().reset() does), they are bound to its heap first.
 */
export function simdKernels(backend?: unknown): SimdKernels | undefined {
  if (!kernels || backend === undefined) return kernels;
  const memory = heapMemory(backend);
  if (memory === boundMemory) return kernels;
  const module = memory instanceof WebAssembly.Memory ? compiled[memoryKind(memory)] : undefined;
  return module ? bind(module, memory as WebAssembly.Memory) : undefined;
}
