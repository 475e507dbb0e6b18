/**
 * Distributed stages on a job queue (BullMQ on Redis): the coordinator (`compress run --queue`) sends
 * each stage that must be computed as a job; workers (`compress worker --queue`) compute it from their
 * own checkout and hand its outputs over through the shared remote cache.
 */
import { hostname } from 'node:os';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import type { CacheStore } from '../cache/store.js';
import type { RemoteCache } from '../cache/remote.js';
import type { ResolvedStage } from '../recipe/load.js';
import type { BackendChoice } from '../engine/backend.js';
import type { StageExecutor } from './executor.js';
import type { WorkerJob, WorkerMessage } from './worker.js';

export const QUEUE_NAME = 'compress-stages';

/** What a worker needs to compute a stage: where the recipe is in its checkout, and the keys to check and fetch. */
export interface StageJobData {
  /** The recipe's path relative to the workspace root (the worker's working directory). */
  recipe: string;
  sets: string[];
  stageId: string;
  backend: BackendChoice;
  /** The stage key the coordinator computed: the worker recomputes it and refuses a mismatch. */
  key: string;
  /** Upstream stage id → its key: the inputs are fetched from the remote cache by these. */
  upstreamKeys: Record<string, string>;
}

export interface StageJobResult {
  host: string;
  metrics: Record<string, unknown>;
}

export type StageJobProgress = { message: string; fraction?: number; host: string };

/** A Redis connection as BullMQ wants it (commands wait for a reconnect instead of failing). */
export function redisConnection(url: string): Redis {
  if (!/^rediss?:\/\//.test(url)) throw new Error(`--queue expects redis://host:port, got '${url}'`);
  return new Redis(url, { maxRetriesPerRequest: null });
}

/**
 * A stage computed by whichever worker takes its job; its outputs come back through the remote cache
 * (the worker pushed them under the stage key) and are put in the coordinator's work dir, so the run
 * stores, gates and locks them exactly as it does a local stage's.
 */
export class QueueExecutor implements StageExecutor {
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly progress = new Map<string, (p: StageJobProgress) => void>();
  private readonly controller = new AbortController();
  /** BullMQ leaves connections it was given open: they are closed here. */
  private readonly connections: Redis[] = [];

  constructor(
    url: string,
    private readonly where: { recipe: string; sets: string[] },
    private readonly store: CacheStore,
    private readonly remote: RemoteCache,
  ) {
    this.queue = new Queue(QUEUE_NAME, { connection: this.own(redisConnection(url)) });
    this.events = new QueueEvents(QUEUE_NAME, { connection: this.own(redisConnection(url)) });
    this.events.on('progress', ({ jobId, data }) => this.progress.get(jobId)?.(data as StageJobProgress));
  }

  async execute(job: WorkerJob, stage: ResolvedStage, onMessage: (m: WorkerMessage) => void): Promise<Record<string, unknown>> {
    if (!job.key || !job.upstreamKeys) throw new Error(`stage '${stage.id}': no stage key to send to a worker`);
    await this.events.waitUntilReady();
    const data: StageJobData = { ...this.where, stageId: stage.id, backend: job.backend, key: job.key, upstreamKeys: job.upstreamKeys };
    // A stage failure is not retried (it is deterministic); a worker killed mid-stage is (stalled-job handling).
    const queued = await this.queue.add(stage.id, data, { attempts: 1, removeOnComplete: 1000, removeOnFail: 1000 });
    this.progress.set(queued.id!, (p) => onMessage({ type: 'progress', message: `${p.message} (on ${p.host})`, fraction: p.fraction }));
    let result: StageJobResult;
    try {
      result = await Promise.race([queued.waitUntilFinished(this.events) as Promise<StageJobResult>, this.aborted()]);
    } finally {
      this.progress.delete(queued.id!);
    }
    await this.fetchOutputs(job, stage);
    onMessage({ type: 'log', message: `computed on worker ${result.host}` });
    return result.metrics;
  }

  /** The worker pushed the stage's entry: pulled (verified) into the local store, put in the work dir. */
  private async fetchOutputs(job: WorkerJob, stage: ResolvedStage): Promise<void> {
    const pulled = await this.remote.pull(job.key!, this.store, stage.id);
    const record = pulled.record ?? (await this.store.getRecord(job.key!));
    if (!record) throw new Error(`stage '${stage.id}' was computed by a worker but its outputs are not in the remote cache${pulled.refused ? ` (${pulled.refused})` : this.remote.unavailable ? ` (${this.remote.unavailable})` : ''}`);
    await this.store.materialize(record, job.outDir);
  }

  private aborted(): Promise<never> {
    return new Promise((_, reject) => this.controller.signal.addEventListener('abort', () => reject(new Error('interrupted')), { once: true }));
  }

  abort(): void {
    this.controller.abort();
  }

  async close(): Promise<void> {
    await Promise.all([this.queue.close(), this.events.close()]);
    for (const c of this.connections) c.disconnect();
    this.remote.close();
  }

  private own(c: Redis): Redis {
    this.connections.push(c);
    return c;
  }
}

export function workerHost(): string {
  return `${hostname()} (pid ${process.pid})`;
}
