import { registerCustomLayers } from '../model/custom-layers.js';
import { createRequire } from 'node:module';
import type * as tfType from '@tensorflow/tfjs';
import { MAX_WASM_THREADS } from './threads.js';
import { trainWorkers } from './data-parallel.js';
import { fusedMultiplyAdd } from './simd/fma.js';

/** What `backend:` / `--backend` accept: `auto` picks tfjs-node when installed, else wasm. */
export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type BackendName = Exclude<BackendChoice, 'auto'>;

import { InputError } from '../errors/input-error.js';

const require = createRequire(import.meta.url);

/** Whether `@tensorflow/tfjs-node` can be resolved, without loading it (loading costs ~1 s). */
export function tfjsNodeAvailable(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
}

/** The backend `auto` would pick, decided without loading any engine, so cache keys are cheap. */
export function resolveBackend(choice: BackendChoice): BackendName {
  if (choice === 'tensorflow' && !tfjsNodeAvailable()) {
    throw new InputError("backend 'tensorflow' needs @tensorflow/tfjs-node, which is not installed", {
      hint: 'npm install @tensorflow/tfjs-node (it downloads libtensorflow), or use --backend auto / wasm',
    });
  }
  if (choice !== 'auto') return choice;
  return tfjsNodeAvailable() ? 'tensorflow' : 'wasm';
}

export function tfjsVersion(): string {
  return (require('@tensorflow/tfjs/package.json') as { version: string }).version;
}

/**
 * Revision of compress's own wasm kernels (src/engine/kernels, src/engine/simd). Bump it with any
 * change that alters their results (summation order, signed zeros), so cached artifacts computed
 * by the old kernels are not reused as if the new ones had made them.
 */
export const WASM_KERNELS_REVISION = 15;

/**
 * Revision of how compress runs inference (src/engine/inference.ts: batch norm folded into convs,
 * fused activations), on every backend. Bump it with any change that alters evaluation results.
 */
export const INFERENCE_REVISION = 3;

/**
 * COMPRESS_WASM_SIMD=0 keeps compress's SIMD kernels off (every kernel takes its JS or tfjs path):
 * for comparing numerics, and what a runtime without wasm SIMD gets.
 */
export function wasmSimdDisabled(): boolean {
  return process.env.COMPRESS_WASM_SIMD === '0';
}

/**
 * COMPRESS_WASM_THREADS=N (2..8) runs the wasm backend on tfjs-backend-wasm's threaded SIMD build
 * with N XNNPACK threads (src/engine/threads.ts); unset or 1: the single-threaded build (the default).
 */
export function wasmThreads(): number {
  const v = process.env.COMPRESS_WASM_THREADS;
  if (v === undefined || v === '') return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WASM_THREADS) throw new Error(`COMPRESS_WASM_THREADS must be an integer from 1 to ${MAX_WASM_THREADS}, got '${v}'`);
  return n;
}

/**
 * Engine identity that goes into every cache key: same identity => same numerics. On wasm it says
 * whether the inference convs multiply-add fused (`-fma`: relaxed SIMD on a CPU with FMA, see
 * src/engine/simd/module.ts), which rounds differently from the unfused kernels and XNNPACK.
 */
export function engineIdentity(choice: BackendChoice): string {
  const backend = resolveBackend(choice);
  // The threaded build computes bit-identical results (test/engine-threads.test.ts; the inference
  // plan's convs run on compress's kernels on 1 and N threads alike, src/engine/kernels/index.ts).
  const simd = () => (fusedMultiplyAdd() ? '-fma' : '');
  const kernels = () => `+kernels.${WASM_KERNELS_REVISION}${wasmSimdDisabled() ? '-nosimd' : simd()}`;
  // Data-parallel training's results depend on its replica count (src/engine/data-parallel.ts).
  const workers = trainWorkers();
  return `tfjs@${tfjsVersion()}/${backend}${backend === 'wasm' ? kernels() : ''}+inference.${INFERENCE_REVISION}${workers > 1 ? `+dp.${workers}` : ''}`;
}

let engine: { tf: typeof tfType; backend: BackendName } | undefined;

/**
 * Loads tfjs with the chosen backend, registers compress's extra kernels, and returns the module.
 * tfjs-node replaces the `tf` namespace with its own build, so the module itself is returned.
 */
export async function initEngine(choice: BackendChoice = 'auto'): Promise<{ tf: typeof tfType; backend: BackendName }> {
  const backend = resolveBackend(choice);
  if (engine) {
    if (engine.backend !== backend) throw new Error(`engine already initialised with backend ${engine.backend}, not ${backend}`);
    return engine;
  }
  let tf: typeof tfType;
  if (backend === 'tensorflow') {
    tf = (await import('@tensorflow/tfjs-node' as string)) as typeof tfType;
  } else {
    // require, not import(): both are CommonJS builds, and an ESM import of one first scans its whole
    // source for named exports (cjs-module-lexer): ~0.5 s of CPU in every stage worker, measured.
    tf = require('@tensorflow/tfjs') as typeof tfType;
    if (backend === 'wasm') {
      require('@tensorflow/tfjs-backend-wasm');
      const { registerWasmKernels } = await import('./kernels/index.js');
      registerWasmKernels(tf);
    }
  }
  registerCustomLayers(tf);
  const threads = backend === 'wasm' ? wasmThreads() : 1;
  if (threads > 1) {
    const { startThreadedWasm } = await import('./threads.js');
    await startThreadedWasm(tf, threads);
  } else {
    const ok = await tf.setBackend(backend);
    if (!ok) throw new Error(`backend ${backend} could not be initialised`);
    await tf.ready();
  }
  if (backend === 'wasm') {
    // compress's SIMD kernels share tfjs-wasm's heap (a shared one in the threaded build). Where they
    // cannot load (a runtime without wasm SIMD), every kernel keeps its JS or tfjs path: slower, and
    // equal to the SIMD path within float32 rounding (test/engine-kernels-nosimd.test.ts).
    const { heapMemory, loadSimdKernels } = await import('./simd/module.js');
    const memory = heapMemory(tf.backend());
    if (!wasmSimdDisabled() && memory) {
      await loadSimdKernels(memory, threads).catch(() => undefined);
    }
  }
  engine = { tf, backend };
  return engine;
}
