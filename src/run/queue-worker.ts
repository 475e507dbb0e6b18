/**
 * The worker's side of the job queue: a stage job is computed from this machine's checkout, its
 * inputs fetched (verified) from the remote cache by their keys, its outputs pushed back under its key.
 */
import { resolve } from 'node:path';
import { rm } from 'node:fs/promises';
import { Worker, type Job } from 'bullmq';
import { CacheStore, type RunRecord } from '../cache/store.js';
import { checkpoint } from '../cache/fsutil.js';
import { FileDigests } from '../cache/file-digests.js';
import { RemoteCache } from '../cache/remote.js';
import { resolveRemote } from '../cache/remote-config.js';
import { engineIdentity } from '../engine/backend.js';
import { loadRecipe, type LoadedRecipe, type ResolvedStage } from '../recipe/load.js';
import { keyContext, stageKey } from './keys.js';
import { WorkerThreadExecutor } from './executor.js';
import { LocalStageCache } from './stage-cache.js';
import { cacheDirFor } from './execute.js';
import { QUEUE_NAME, redisConnection, workerHost, type StageJobData, type StageJobProgress, type StageJobResult } from './queue.js';
import type { WorkerJob } from './worker.js';

export interface QueueWorkerOptions {
  url: string;
  concurrency: number;
  /** Where the checkout is (recipe paths in jobs are relative to it). */
  root: string;
  cacheDir?: string;
  remote?: string;
  /** How long a job's lock lasts without renewal before another worker takes it over (a killed worker). */
  lockMs: number;
  log: (line: string) => void;
}

/** Starts processing stage jobs; `close` finishes running stages and disconnects. */
export function startQueueWorker(o: QueueWorkerOptions): { worker: Worker; close(): Promise<void> } {
  const connection = redisConnection(o.url);
  const worker = new Worker<StageJobData, StageJobResult>(QUEUE_NAME, (job) => processStageJob(job, o), {
    connection,
    concurrency: o.concurrency,
    lockDuration: o.lockMs,
    stalledInterval: o.lockMs,
    maxStalledCount: 3,
  });
  worker.on('active', (job) => o.log(`${job.data.stageId}: started`));
  worker.on('completed', (job) => o.log(`${job.data.stageId}: done`));
  worker.on('failed', (job, e) => o.log(`${job?.data.stageId ?? '?'}: failed: ${e.message}`));
  return {
    worker,
    async close() {
      await worker.close();
      connection.disconnect();
    },
  };
}

async function processStageJob(job: Job<StageJobData, StageJobResult>, o: QueueWorkerOptions): Promise<StageJobResult> {
  const host = workerHost();
  try {
    return { host, metrics: await computeJob(job, o, host) };
  } catch (e) {
    const err = e as Error;
    err.message = `${err.message} (on worker ${host})`;
    throw err;
  }
}

async function computeJob(job: Job<StageJobData, StageJobResult>, o: QueueWorkerOptions, host: string): Promise<Record<string, unknown>> {
  const d = job.data;
  const recipe = loadRecipe(resolve(o.root, d.recipe), { sets: d.sets });
  const stage = recipe.stageById.get(d.stageId);
  if (!stage) throw new Error(`stage '${d.stageId}' is not in ${d.recipe} on this worker (a different checkout?)`);
  const settings = resolveRemote(recipe.cache, { remote: o.remote, push: true });
  if (!settings) throw new Error('the worker has no remote cache (--remote, COMPRESS_REMOTE or the recipe\'s cache.remote)');
  const store = new CacheStore(cacheDirFor(recipe, o.cacheDir));
  const remote = new RemoteCache(settings, { onWarning: (m) => o.log(`warning: ${m}`) });
  const cleanup: string[] = [];
  try {
    const ups = await fetchInputs(d, stage, store, remote, cleanup);
    await checkKey(d, recipe, stage, store, ups);
    const work = await store.makeWorkDir(stage.id);
    cleanup.push(work);
    const wjob: WorkerJob = {
      stageId: stage.id, uses: stage.uses, with: stage.with, seed: recipe.seed, backend: d.backend, outDir: work, workspace: recipe.dir,
      inputs: ups.map((u) => ({ id: u.record.stageId, kind: u.record.stageKind, dir: u.dir, metrics: u.record.metrics })), data: recipe.data, memoryMb: stage.memoryMb,
    };
    const t0 = Date.now();
    checkpoint(`queue:stage-start:${stage.id}`);
    const metrics = await new WorkerThreadExecutor().execute(wjob, stage, (m) => {
      if (m.type === 'progress') void job.updateProgress({ message: m.message, fraction: m.fraction, host } satisfies StageJobProgress).catch(() => undefined);
    });
    const keyInputs = (await stageKey(await keyContext(recipe, engineIdentity(d.backend), new FileDigests(store.root), stage.datasets), stage, ups.map((u) => u.record.outputsDigest))).inputs;
    const record = await new LocalStageCache(store).store({ key: d.key, keyInputs, stageKind: stage.uses, stageId: stage.id, metrics, durationMs: Date.now() - t0 }, work);
    if (!(await remote.push(record, store))) throw new Error(`could not push the outputs of '${stage.id}' to ${settings.url}${remote.unavailable ? ` (${remote.unavailable})` : ' (read-only remote)'}`);
    return metrics;
  } finally {
    remote.close();
    await Promise.all(cleanup.map((p) => rm(p, { recursive: true, force: true })));
  }
}

interface Input {
  record: RunRecord;
  dir: string;
}

/** Each upstream's entry, from the local store or pulled (verified) from the remote, materialized for this job. */
async function fetchInputs(d: StageJobData, stage: ResolvedStage, store: CacheStore, remote: RemoteCache, cleanup: string[]): Promise<Input[]> {
  const out: Input[] = [];
  for (const need of stage.needs) {
    const key = d.upstreamKeys[need];
    if (!key) throw new Error(`the job for '${stage.id}' names no key for its input '${need}'`);
    let record = (await new LocalStageCache(store).lookup(key)).record;
    if (!record) {
      const pulled = await remote.pull(key, store, need);
      record = pulled.record;
      if (!record) throw new Error(`input '${need}' of '${stage.id}' is not in the remote cache${pulled.refused ? ` (${pulled.refused})` : remote.unavailable ? ` (${remote.unavailable})` : ''}`);
    }
    const dir = await store.makeWorkDir(`in-${need}`);
    cleanup.push(dir);
    await store.materialize(record, dir);
    out.push({ record, dir });
  }
  return out;
}

/** The worker's checkout must give the stage the key the coordinator computed (same recipe, data, engine). */
async function checkKey(d: StageJobData, recipe: LoadedRecipe, stage: ResolvedStage, store: CacheStore, ups: Input[]): Promise<void> {
  const ctx = await keyContext(recipe, engineIdentity(d.backend), new FileDigests(store.root), stage.datasets);
  const key = await stageKey(ctx, stage, ups.map((u) => u.record.outputsDigest));
  if (key.key !== d.key) throw new Error(`stage '${stage.id}' has key ${key.key.slice(0, 12)} on this worker but ${d.key.slice(0, 12)} on the coordinator: its checkout, data or engine differs`);
}
