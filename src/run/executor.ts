import { Worker } from 'node:worker_threads';
import type { ResolvedStage } from '../recipe/load.js';
import type { WorkerJob, WorkerMessage } from './worker.js';
import type { Splits } from '../data/dataset.js';
import { datasetIdentity } from '../data/load.js';
import { setOwn } from '../util/own.js';

/** A stage went over its `timeout` or `memoryMb` budget and was stopped. */
export class BudgetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BudgetError';
  }
}

/**
 * Runs one stage's job to its metrics, reporting progress and log messages on the way. The runner
 * gives every stage that must be computed to one; `abort` stops whatever is running (SIGINT).
 * The default runs each job in a worker thread of this process; a queue executor sends it elsewhere.
 */
export interface StageExecutor {
  execute(job: WorkerJob, stage: ResolvedStage, onMessage: (m: WorkerMessage) => void): Promise<Record<string, unknown>>;
  abort(): void;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

/**
 * Each stage in its own worker thread, with its time and memory budgets enforced. A dataset is read
 * and split once per process: the first worker that loads it hands it back in shared memory, and the
 * stages after it get that copy (by dataset identity: spec, seed, files' size and mtime).
 */
export class WorkerThreadExecutor implements StageExecutor {
  private readonly active = new Set<Worker>();
  private readonly data = new Map<string, Splits>();

  execute(job: WorkerJob, stage: ResolvedStage, onMessage: (m: WorkerMessage) => void): Promise<Record<string, unknown>> {
    const ids = new Map(Object.entries(job.data).map(([name, spec]) => [name, datasetIdentity(spec, job.workspace, job.seed)]));
    const sharedData: Record<string, Splits> = {};
    for (const [name, id] of ids) {
      const splits = id !== undefined ? this.data.get(id) : undefined;
      if (splits) setOwn(sharedData, name, splits);
    }
    const keep = (name: string, splits: Splits) => {
      const id = ids.get(name);
      if (id !== undefined && !this.data.has(id)) this.data.set(id, splits);
    };
    return runInWorker({ ...job, sharedData }, stage, onMessage, this.active, keep);
  }

  /** Asks every running worker to stop, and terminates those still running 200 ms later. */
  abort(): void {
    for (const w of this.active) w.postMessage({ type: 'abort' });
    setTimeout(() => {
      for (const w of this.active) void w.terminate();
    }, 200).unref();
  }
}

function runInWorker(
  job: WorkerJob,
  stage: ResolvedStage,
  onMessage: (m: WorkerMessage) => void,
  active: Set<Worker>,
  keepData: (name: string, splits: Splits) => void,
): Promise<Record<string, unknown>> {
  return new Promise((resolvePromise, reject) => {
    const worker = new Worker(WORKER_URL, {
      workerData: job,
      resourceLimits: stage.memoryMb ? { maxOldGenerationSizeMb: stage.memoryMb } : undefined,
      stdout: true,
      stderr: true,
    });
    active.add(worker);
    // tfjs and LiteRT print banners and INFO lines; the progress display is the stage's voice.
    const chatter: string[] = [];
    worker.stdout.on('data', (d: Buffer) => chatter.push(d.toString()));
    worker.stderr.on('data', (d: Buffer) => chatter.push(d.toString()));
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      active.delete(worker);
      f();
      void worker.terminate();
    };
    const timer = stage.timeout
      ? setTimeout(() => finish(() => reject(new BudgetError(`stage '${stage.id}' exceeded its time budget of ${stage.timeout} s (timeout) and was stopped`))), stage.timeout * 1000)
      : undefined;
    // resourceLimits bound only V8's JS heap; tensors live in array buffers and the wasm heap, outside
    // it. The worker reports its whole footprint (JS heap + external memory, which counts the wasm
    // memory) and is stopped once that exceeds the budget.
    const budgetBytes = stage.memoryMb ? stage.memoryMb * 1024 * 1024 : Infinity;
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'memory') {
        onMessage(m); // the runner reports the stage's peak
        if (m.bytes > budgetBytes) {
          finish(() => reject(new BudgetError(`stage '${stage.id}' exceeded its memory budget of ${stage.memoryMb} MB (memoryMb; it used ${Math.round(m.bytes / 1048576)} MB of JS heap, array buffers and wasm memory) and was stopped`)));
        }
      } else if (m.type === 'data') keepData(m.name, m.splits);
      else if (m.type === 'done') finish(() => resolvePromise(m.metrics));
      else if (m.type === 'error') {
        const err: NodeJS.ErrnoException = new Error(m.message);
        err.name = m.name;
        err.code = m.code;
        err.path = m.path;
        (err as { workerStack?: string }).workerStack = m.stack;
        if (m.metrics) (err as { metrics?: Record<string, unknown> }).metrics = m.metrics;
        finish(() => reject(err));
      } else onMessage(m);
    });
    worker.on('error', (e: Error & { code?: string }) => {
      const msg = e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `stage '${stage.id}' exceeded its memory budget of ${stage.memoryMb} MB (memoryMb; its JS heap ran out) and was stopped` : e.message;
      const err = new Error(msg);
      err.name = e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'BudgetError' : e.name;
      (err as { workerStack?: string }).workerStack = e.stack;
      finish(() => reject(err));
    });
    worker.on('exit', (code) => finish(() => reject(new Error(`stage '${stage.id}' stopped (worker exit code ${code})${chatter.length ? `: ${chatter.join('').trim().split('\n').slice(-3).join(' | ')}` : ''}`))));
  });
}
