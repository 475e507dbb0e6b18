import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import wabtInit from 'wabt';
import { KERNELS_WAT } from './kernels.wat.js';
import { convKernelsWat } from './conv.wat.js';
import { fusedMultiplyAdd } from './fma.js';
import { ConvPool, parallelConvKernels } from './pool.js';

export { fusedMultiplyAdd };

/** compress's wasm SIMD kernels; pointers are byte offsets into tfjs-backend-wasm's heap, counts are floats. */
export interface SimdKernels {
  relu_grad(dy: number, x: number, out: number, n: number): void;
  relu(x: number, out: number, n: number): void;
  /** n >= 4; writes min, max (f32) at out. */
  min_max(x: number, n: number, out: number): void;
  /** Writes sum r^2, sum (q - r)^2, max |q - r| (f64) at out over the first n values. */
  diff_sums(r: number, q: number, n: number, out: number): void;
  /** n >= 4; o = clamp(round-half-away(x / s), lo, hi) * s. */
  fake_quant(x: number, out: number, n: number, s: number, lo: number, hi: number): void;
  clip_grad(dy: number, x: number, out: number, n: number, lo: number, hi: number): void;
  /** acc (2C doubles) = sums of x - shift and of its square over the rows, one pass. */
  shifted_moments(x: number, shift: number, acc: number, rows: number, channels: number): void;
  bn_grad_sums(dy: number, x: number, mean: number, invstd: number, acc: number, rows: number, channels: number): void;
  bn_grad_dx(dy: number, x: number, mean: number, p: number, q: number, k: number, out: number, rows: number, channels: number): void;
  /** bn_grad_sums / bn_grad_dx with dy masked by the gradient of a fused activation (batch_norm_act's clamp to [0, hi]). */
  bn_act_grad_sums(dy: number, x: number, mean: number, invstd: number, a: number, offset: number, hi: number, acc: number, rows: number, channels: number): void;
  bn_act_grad_dx(dy: number, x: number, mean: number, p: number, q: number, k: number, a: number, offset: number, hi: number,
    out: number, rows: number, channels: number): void;
  bias_add(x: number, bias: number, out: number, rows: number, channels: number): void;
  channel_sub(x: number, v: number, out: number, rows: number, channels: number): void;
  channel_mul(x: number, v: number, out: number, rows: number, channels: number): void;
  batch_norm(x: number, mean: number, a: number, offset: number, out: number, rows: number, channels: number): void;
  batch_norm_act(x: number, mean: number, a: number, offset: number, out: number, rows: number, channels: number, lo: number, hi: number): void;
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
  dw3x3_wgrad(x: number, dy: number, acc: number, N: number, H: number, W: number, C: number, oH: number, oW: number,
    sh: number, sw: number, top: number, left: number): void;
  dw3x3_dgrad(dx: number, dy: number, w: number, N: number, H: number, W: number, C: number, oH: number, oW: number,
    sh: number, sw: number, top: number, left: number): void;
  /** b [K, N] (N % 4 == 0) packed in gemm_bias_act's column strips (packGemmB); pack_strips_t: b = a^T for a [N, K]. */
  pack_strips(b: number, out: number, K: number, N: number): void;
  pack_strips_t(a: number, out: number, K: number, N: number): void;
  maxpool_grad_2x2(dx: number, x: number, g: number, N: number, H: number, W: number, C: number): void;
  // ./conv.wat.ts (inference convs, fused multiply-add where the runtime has it)
  /** scratch: gemmScratchFloats(K) floats per conv thread (./conv.wat.ts), or 0 (a's rows read in place). */
  gemm_bias_act(a: number, b: number, bias: number, o: number, M: number, K: number, N: number, lo: number, hi: number, ld: number, scratch: number): void;
  dw3x3(x: number, w: number, bias: number, o: number, N: number, H: number, W: number, C: number, oH: number, oW: number,
    sh: number, sw: number, top: number, left: number, lo: number, hi: number, oh0: number, oh1: number): void;
  conv3x3c3(x: number, w: number, bias: number, o: number, N: number, H: number, W: number, Co: number, oH: number, oW: number,
    sh: number, sw: number, top: number, left: number, lo: number, hi: number, oh0: number, oh1: number): void;
}

/**
 * The wasm modules compress assembles: the training kernels (./kernels.wat.ts) and the inference
 * conv kernels (./conv.wat.ts) with SIMD128's mul + add or with relaxed SIMD's fused multiply-add.
 */
export const SOURCES = ['kernels', 'conv', 'conv-fma'] as const;
export type Source = (typeof SOURCES)[number];

function sourceText(source: Source): string {
  return source === 'kernels' ? KERNELS_WAT : convKernelsWat(source === 'conv-fma');
}


/**
 * The two builds of the kernels: over an ordinary heap (tfjs's single-threaded wasm) and over a shared
 * one (its threaded build, whose heap is a SharedArrayBuffer; a module must declare a shared memory to
 * import one). Same code, only the memory import differs.
 */
export type MemoryKind = 'plain' | 'shared';
const MEMORY_IMPORT = '(import "env" "memory" (memory 0))';

/** A module's text for a memory kind. */
export function kernelsText(kind: MemoryKind, source: Source = 'kernels'): string {
  const text = sourceText(source);
  if (!text.includes(MEMORY_IMPORT)) throw new Error(`${source}: memory import not found`);
  return kind === 'plain' ? text : text.replace(MEMORY_IMPORT, '(import "env" "memory" (memory 0 65536 shared))');
}

/** Where `npm run build` puts the assembled module (next to this file in dist/), with the digest of its source. */
export function prebuilt(kind: MemoryKind, source: Source = 'kernels'): { wasm: URL; digest: URL } {
  const base = `./${source}${kind === 'plain' ? '' : '-shared'}.wasm`;
  return { wasm: new URL(base, import.meta.url), digest: new URL(`${base}.sha256`, import.meta.url) };
}

let kernels: SimdKernels | undefined;
let boundMemory: WebAssembly.Memory | undefined;
const compiled: Partial<Record<`${Source}/${MemoryKind}`, WebAssembly.Module>> = {};

/** sha256 of a module's text: a prebuilt binary is used only if it was assembled from exactly this. */
export function kernelsDigest(kind: MemoryKind = 'plain', source: Source = 'kernels'): string {
  return createHash('sha256').update(kernelsText(kind, source)).digest('hex');
}

/** Assembles a module's text with wabt (~75 ms, most of it wabt's own start-up). */
export async function assembleKernels(kind: MemoryKind = 'plain', source: Source = 'kernels'): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const features = { simd: true, bulk_memory: true, threads: kind === 'shared', relaxed_simd: source === 'conv-fma' };
  const parsed = wabt.parseWat(`compress-${source}.wat`, kernelsText(kind, source), features);
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
async function compile(kind: MemoryKind, source: Source): Promise<WebAssembly.Module> {
  const done = compiled[`${source}/${kind}`];
  if (done) return done;
  let bytes: Uint8Array | undefined;
  const files = prebuilt(kind, source);
  try {
    if (readFileSync(files.digest, 'utf8').trim() === kernelsDigest(kind, source)) bytes = readFileSync(files.wasm);
  } catch {
    bytes = undefined; // not built (tsc only): assemble below
  }
  const module = new WebAssembly.Module((bytes ?? (await assembleKernels(kind, source))) as Uint8Array<ArrayBuffer>);
  compiled[`${source}/${kind}`] = module;
  return module;
}

/** The conv module this process runs: with fused multiply-add where the runtime has it. */
const convSource = (): Source => (fusedMultiplyAdd() ? 'conv-fma' : 'conv');

/**
 * Instantiates the kernels over `memory` (tfjs-backend-wasm's heap). Tensor data never moves between
 * heaps: the kernels read and write tfjs's buffers in place. Idempotent per process.
 */
export async function loadSimdKernels(memory: WebAssembly.Memory, threads = 1): Promise<SimdKernels> {
  poolThreads = threads;
  if (kernels && boundMemory === memory) return kernels;
  const kind = memoryKind(memory);
  await compile(kind, convSource());
  const k = bind(await compile(kind, 'kernels'), memory)!;
  // Threads ready before the first kernel call: which calls split must not depend on start-up timing.
  await pool?.started;
  return k;
}

/** Threads the conv kernels use (the engine's COMPRESS_WASM_THREADS), and their pool when > 1. */
let poolThreads = 1;
let pool: ConvPool | undefined;

/** Threads the conv kernels run on: the engine's thread count in the threaded build, else 1. */
export const convThreads = (): number => (pool ? poolThreads : 1);

/** Kernel parts the conv pool has run on worker threads (0 without a pool). */
export const convPoolParts = (): number => pool?.posted ?? 0;

function bind(module: WebAssembly.Module, memory: WebAssembly.Memory): SimdKernels | undefined {
  const conv = compiled[`${convSource()}/${memoryKind(memory)}`];
  if (!conv) return undefined;
  const imports = { env: { memory } };
  kernels = {
    ...(new WebAssembly.Instance(module, imports).exports as object),
    ...(new WebAssembly.Instance(conv, imports).exports as object),
  } as SimdKernels;
  pool?.close();
  pool = undefined;
  // Only a shared heap (the threaded build) can be computed on from other threads.
  if (poolThreads > 1 && memoryKind(memory) === 'shared') {
    pool = new ConvPool(conv, memory, poolThreads - 1);
    kernels = parallelConvKernels(kernels, pool);
  }
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
  const module = memory instanceof WebAssembly.Memory ? compiled[`kernels/${memoryKind(memory)}`] : undefined;
  return module ? bind(module, memory as WebAssembly.Memory) : undefined;
}
