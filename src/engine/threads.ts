/**
 * tfjs-backend-wasm's multi-threaded build under Node. tfjs turns it off in Node (its pthread workers
 * start from blob: URLs, which worker_threads rejects) and caps XNNPACK's thread pool at half the
 * logical cores (num_cores / 2, read when the wasm module starts). While the backend starts, this
 * points the worker URL at ./wasm-thread-worker.js and reports twice the cores, so `threads` threads
 * (1..8, tfjs pre-creates 8 workers) are granted; both patches are undone when the backend is up.
 */
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type * as tfType from '@tensorflow/tfjs';

const WORKER = new URL('./wasm-thread-worker.js', import.meta.url);

/** Threads tfjs-backend-wasm can use: its pool holds 8 pre-created workers. */
export const MAX_WASM_THREADS = 8;

/**
 * Starts the wasm backend with `threads` XNNPACK threads (threads >= 2); resolves to the number it
 * runs with. Must run before any other code starts the wasm backend.
 */
export async function startThreadedWasm(tf: typeof tfType, threads: number): Promise<number> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasm.setThreadsCount(Math.min(MAX_WASM_THREADS, threads));
  const createObjectURL = URL.createObjectURL;
  const cpus = os.cpus;
  URL.createObjectURL = (obj: Blob) => (obj instanceof Blob && obj.type === 'application/javascript' ? fileURLToPath(WORKER) : createObjectURL(obj));
  os.cpus = () => Array.from({ length: 2 * Math.max(threads, cpus().length) }, (_, i) => cpus()[i % cpus().length]);
  try {
    const ok = await tf.setBackend('wasm');
    if (!ok) throw new Error('the threaded wasm backend could not be initialised');
    await tf.ready();
  } finally {
    URL.createObjectURL = createObjectURL;
    os.cpus = cpus;
  }
  return wasm.getThreadsCount();
}
