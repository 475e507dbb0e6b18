/**
 * Runs one stage in a worker thread: each stage gets its own tfjs engine (no shared global state
 * between concurrent stages), real parallelism on several cores, and can be stopped or bounded in
 * memory without taking the runner down.
 */
import { readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { loadSplits } from '../data/load.js';
import { sharedSplits, type Splits } from '../data/dataset.js';
import type { DataSpec } from '../recipe/schema.js';
import { stageKind } from '../stages/registry.js';
import { writeCheckpoint } from '../cache/fsutil.js';
import { setLoadMemoryBudget } from '../model/load/precheck.js';
import type { StageContext, StageInput } from '../stages/types.js';
import type { BackendChoice } from '../engine/backend.js';
import { dataParallelHelperBytes } from '../engine/data-parallel.js';

export interface WorkerJob {
  stageId: string;
  uses: string;
  with: Record<string, unknown>;
  seed: number;
  backend: BackendChoice;
  outDir: string;
  workspace: string;
  inputs: StageInput[];
  data: Record<string, DataSpec>;
  /** The stage's memory budget: when set, the worker reports its footprint for the runner to enforce. */
  memoryMb?: number;
  /** The stage key and its upstreams' keys (a queue executor sends these to a worker machine). */
  key?: string;
  upstreamKeys?: Record<string, string>;
  /** Datasets another stage of this process already loaded, in shared memory (executor.ts). */
  sharedData?: Record<string, Splits>;
}

export type WorkerMessage =
  | { type: 'progress'; message: string; fraction?: number }
  | { type: 'log'; message: string }
  | { type: 'done'; metrics: Record<string, unknown> }
  /** A dataset this worker loaded, in shared memory, for the stages after it (not forwarded to the runner). */
  | { type: 'data'; name: string; splits: Splits }
  /**
   * Peak footprint so far: this isolate's JS heap plus its external memory (array buffers, wasm memory);
   * and the CPU seconds this worker thread has used (Linux; absent elsewhere).
   */
  | { type: 'memory'; bytes: number; cpuSeconds?: number }
  | { type: 'error'; name: string; message: string; stack?: string; code?: string; path?: string; metrics?: Record<string, unknown> };

/** Posts the footprint once more (also when the stage fails, so the runner sees the peak of a refused load). */
let lastSample: () => void = () => {};

/** Linux's clock ticks per second for /proc times (USER_HZ: 100 on every mainstream kernel build). */
const USER_HZ = 100;

/**
 * User + system CPU seconds of the calling thread (fields 14 and 15 of /proc/thread-self/stat): the
 * stage's own compute, unlike process.cpuUsage(), which counts every stage running at the same time.
 */
function threadCpuSeconds(): number | undefined {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'latin1');
    // The command name (field 2) is parenthesised and may hold spaces: fields count from its ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / USER_HZ;
  } catch {
    return undefined;
  }
}

async function main(job: WorkerJob): Promise<void> {
  const post = (m: WorkerMessage) => parentPort!.postMessage(m);
  const kind = stageKind(job.uses);
  if (!kind) throw new Error(`unknown stage kind '${job.uses}'`);
  const controller = new AbortController();
  parentPort!.on('message', (m: { type: string }) => {
    if (m.type === 'abort') controller.abort();
  });
  // The wasm heap only grows, so sampling often enough sees its peak; a last sample goes before 'done'.
  // Always sampled: the peak is reported with the stage (report.json peakMemoryMb) and checked
  // against `memoryMb` when the stage has one.
  let peak = 0;
  const cpu0 = threadCpuSeconds();
  const sample = () => {
    const h = getHeapStatistics();
    // Data-parallel training's helper replicas (threads of this stage, each with its own engine) count too.
    peak = Math.max(peak, h.used_heap_size + h.external_memory + dataParallelHelperBytes());
    const cpu = threadCpuSeconds();
    post({ type: 'memory', bytes: peak, ...(cpu !== undefined && cpu0 !== undefined ? { cpuSeconds: cpu - cpu0 } : {}) });
  };
  setInterval(sample, 50).unref();
  // Synchronous model builds never yield to the sampler: loaders check declared sizes against the budget first.
  setLoadMemoryBudget(job.memoryMb);
  lastSample = sample;
  const dataCache = new Map<string, Promise<Splits>>();
  const ctx: StageContext<unknown> = {
    stageId: job.stageId,
    with: job.with,
    seed: job.seed,
    backend: job.backend,
    outDir: job.outDir,
    workspace: job.workspace,
    inputs: job.inputs,
    loadData(name) {
      if (!dataCache.has(name)) {
        const spec = job.data[name];
        if (!spec) throw new Error(`unknown dataset '${name}'`);
        const shared = job.sharedData?.[name];
        dataCache.set(
          name,
          shared
            ? Promise.resolve(shared)
            : loadSplits(spec, job.workspace, job.seed).then((loaded) => {
                const splits = sharedSplits(loaded);
                post({ type: 'data', name, splits });
                return splits;
              }),
        );
      }
      return dataCache.get(name)!;
    },
    progress: (p) => {
      sample();
      post({ type: 'progress', message: p.message, fraction: p.fraction });
    },
    log: (message) => post({ type: 'log', message }),
    signal: controller.signal,
  };
  const result = await kind.run(ctx);
  writeCheckpoint('stage:outputs'); // the stage's outputs are written (a test may fail it as a full disk)
  sample();
  post({ type: 'done', metrics: result.metrics });
}

if (parentPort) {
  main(workerData as WorkerJob).catch((e: unknown) => {
    lastSample();
    const err = (e instanceof Error ? e : new Error(String(e))) as NodeJS.ErrnoException;
    // code and path let the runner word file-system failures (full disk, read-only cache) plainly.
    const code = typeof err.code === 'string' ? err.code : undefined;
    const path = typeof err.path === 'string' ? err.path : undefined;
    // What a failed stage measured before failing (StageFailure: an export's check numbers) goes into report.json.
    const metrics = (err as { metrics?: Record<string, unknown> }).metrics;
    parentPort!.postMessage({ type: 'error', name: err.name, message: err.message, stack: err.stack, code, path, ...(metrics ? { metrics } : {}) } satisfies WorkerMessage);
  });
}
