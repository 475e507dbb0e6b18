/**
 * Threads for compress's inference conv kernels (./conv.wat.ts) in tfjs-backend-wasm's threaded build,
 * whose heap is a shared WebAssembly.Memory: `threads - 1` worker threads instantiate the conv module
 * over the same heap, and a kernel call is split in `threads` parts (GEMM rows, or columns when the
 * rows are few; depthwise output rows), the main thread computing the first. Each part writes its own
 * outputs with the same per-element arithmetic, so results are bit-identical to one thread.
 * Calls below MIN_PARALLEL_MACS multiply-adds stay on the main thread: waking a worker costs more
 * than it saves there (a batch-1 MobileNetV2 has many small ops).
 */
import { Worker } from 'node:worker_threads';
import type { SimdKernels } from './module.js';
import { gemmScratchFloats } from './conv.wat.js';

export const KERNELS = ['gemm_bias_act', 'dw3x3', 'conv3x3c3'] as const;
/** Layout of a worker's control block (a SharedArrayBuffer): int32 slots, then float64 arguments. */
export const CONTROL = { posted: 0, done: 1, kernel: 2, argc: 3, ready: 4, ints: 8, argsOffset: 32, args: 24, bytes: 32 + 24 * 8 } as const;
export interface PoolWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
}

/** Multiply-adds below which a kernel call runs on the calling thread alone. */
export const MIN_PARALLEL_MACS = 1 << 19;

/**
 * Milliseconds a thread polls for the other side (the next part to run; a part's end) before it sleeps in
 * Atomics.wait. A futex wake on this VM takes long enough that a batch-1 MobileNetV2 pass (~50 parts, most
 * under 0.5 ms) gained nothing from a second thread (16.6 ms a pass on 1 thread and on 2); polling 0.1 ms
 * first: 13.7 ms on 2, for ~7% more CPU in all (1 ms of polling: 13.4 ms, ~15% more); batch 16 unchanged.
 * onnxruntime's intra-op threads spin likewise (its session option allow_spinning, on by default).
 */
export const SPIN_MS = 0.1;

/** Polls until `ctl[slot]` differs from `value` or SPIN_MS pass; true if it changed. */
export function spinWhileEqual(ctl: Int32Array, slot: number, value: number): boolean {
  const until = performance.now() + SPIN_MS;
  for (;;) {
    if (Atomics.load(ctl, slot) !== value) return true;
    if (performance.now() >= until) return false;
  }
}

interface PoolThread {
  worker: Worker;
  ctl: Int32Array;
  args: Float64Array;
  seq: number;
}

export class ConvPool {
  private readonly threads: PoolThread[];
  /** Parts posted to workers so far (tests check that the pool was used). */
  posted = 0;
  /** Resolves when every worker has instantiated the kernels and waits for work. */
  readonly started: Promise<void>;

  constructor(module: WebAssembly.Module, memory: WebAssembly.Memory, workers: number) {
    this.threads = Array.from({ length: workers }, () => {
      const control = new SharedArrayBuffer(CONTROL.bytes);
      const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: { module, memory, control } satisfies PoolWorkerData });
      worker.unref();
      return { worker, ctl: new Int32Array(control, 0, CONTROL.ints), args: new Float64Array(control, CONTROL.argsOffset, CONTROL.args), seq: 0 };
    });
    this.started = Promise.all(this.threads.map((t) => new Promise<void>((resolve, reject) => {
      t.worker.once('message', () => resolve());
      t.worker.once('error', reject);
    }))).then(() => undefined);
  }

  /** Workers started and waiting for work (until then every call runs on the calling thread). */
  ready(): PoolThread[] {
    return this.threads.filter((t) => Atomics.load(t.ctl, CONTROL.ready) === 1);
  }

  post(t: PoolThread, kernel: (typeof KERNELS)[number], args: number[]): void {
    t.args.set(args);
    Atomics.store(t.ctl, CONTROL.kernel, KERNELS.indexOf(kernel));
    Atomics.store(t.ctl, CONTROL.argc, args.length);
    this.posted++;
    Atomics.store(t.ctl, CONTROL.posted, ++t.seq);
    Atomics.notify(t.ctl, CONTROL.posted);
  }

  /** Blocks until thread `t` has finished the part last posted to it. */
  join(t: PoolThread): void {
    for (let d = Atomics.load(t.ctl, CONTROL.done); d !== t.seq; d = Atomics.load(t.ctl, CONTROL.done)) {
      if (!spinWhileEqual(t.ctl, CONTROL.done, d)) Atomics.wait(t.ctl, CONTROL.done, d);
    }
  }

  close(): void {
    for (const t of this.threads) {
      Atomics.store(t.ctl, CONTROL.posted, -1);
      Atomics.notify(t.ctl, CONTROL.posted);
      void t.worker.terminate();
    }
  }
}

/** [start, end) of part p of n items split in `parts`, each a multiple of `align` (the last takes the rest). */
function part(n: number, parts: number, p: number, align: number): [number, number] {
  const per = Math.ceil(n / parts / align) * align;
  return [Math.min(n, p * per), Math.min(n, (p + 1) * per)];
}

/** `k` with its conv kernels split over the pool's threads (the other kernels as they are). */
export function parallelConvKernels(k: SimdKernels, pool: ConvPool): SimdKernels {
  const gemm = k.gemm_bias_act.bind(k);
  return {
    ...k,
    gemm_bias_act(a, b, bias, o, M, K, N, lo, hi, ld, scratch) {
      const workers = M * K * N >= MIN_PARALLEL_MACS ? pool.ready() : [];
      if (workers.length === 0) return gemm(a, b, bias, o, M, K, N, lo, hi, ld, scratch);
      const parts = workers.length + 1;
      const byRows = M >= 16 * parts;
      const range = (p: number) => part(byRows ? M : N, parts, p, byRows ? 4 : 8);
      // each part packs a's rows into its own scratch
      const own = (p: number) => (scratch === 0 ? 0 : scratch + p * gemmScratchFloats(K) * 4);
      const args = (p: number) => {
        const [s, e] = range(p);
        return byRows
          ? [a + s * K * 4, b, bias, o + s * ld * 4, e - s, K, N, lo, hi, ld, own(p)]
          : [a, b + s * K * 4, bias + s * 4, o + s * 4, M, K, e - s, lo, hi, ld, own(p)]; // b packed: columns [s, e) start at float sK
      };
      const posted = workers.filter((t, i) => {
        const [s, e] = range(i + 1);
        if (e > s) pool.post(t, 'gemm_bias_act', args(i + 1));
        return e > s;
      });
      const mine = args(0);
      gemm(mine[0], mine[1], mine[2], mine[3], mine[4], mine[5], mine[6], mine[7], mine[8], mine[9], mine[10]);
      for (const t of posted) pool.join(t);
    },
    dw3x3: byOutputRows(pool, 'dw3x3', k.dw3x3.bind(k), 9),
    conv3x3c3: byOutputRows(pool, 'conv3x3c3', k.conv3x3c3.bind(k), 27),
  };
}

type RowKernel = SimdKernels['dw3x3'];

/**
 * A kernel with dw3x3's arguments (output rows [oh0, oh1) of every image, C output channels) split by
 * output rows over the pool's threads; `macs` multiply-adds per output value.
 */
function byOutputRows(pool: ConvPool, name: 'dw3x3' | 'conv3x3c3', f: RowKernel, macs: number): RowKernel {
  return (x, w, bias, o, N, H, W, C, oH, oW, sh, sw, top, left, lo, hi, oh0, oh1) => {
    const workers = N * (oh1 - oh0) * oW * C * macs >= MIN_PARALLEL_MACS ? pool.ready() : [];
    if (workers.length === 0) return f(x, w, bias, o, N, H, W, C, oH, oW, sh, sw, top, left, lo, hi, oh0, oh1);
    const parts = workers.length + 1;
    const rows = (p: number) => part(oh1 - oh0, parts, p, 1).map((r) => oh0 + r);
    const posted = workers.filter((t, i) => {
      const [s, e] = rows(i + 1);
      if (e > s) pool.post(t, name, [x, w, bias, o, N, H, W, C, oH, oW, sh, sw, top, left, lo, hi, s, e]);
      return e > s;
    });
    const [s, e] = rows(0);
    f(x, w, bias, o, N, H, W, C, oH, oW, sh, sw, top, left, lo, hi, s, e);
    for (const t of posted) pool.join(t);
  };
}
