import { randomBytes } from 'node:crypto';
import { explainEngineFailure } from '../errors/engine-errors.js';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { readdir, rm } from 'node:fs/promises';
import { CacheCorruptError, CacheStore, CacheWriteError, sweepOutDir, type RunRecord } from '../cache/store.js';
import { checkpoint, describeFsError, sweepAtomicTemps } from '../cache/fsutil.js';
import { FileDigests } from '../cache/file-digests.js';
import { acquireLock, clearStaleLock, describeHolder } from '../cache/proc-lock.js';
import { engineIdentity, resolveBackend, type BackendChoice } from '../engine/backend.js';
import { ancestorsOf, selectStages, topoOrder } from '../stage-graph/dag.js';
import type { LoadedRecipe, ResolvedStage } from '../recipe/load.js';
import { selectIds } from '../recipe/matrix.js';
import { UsageError } from '../recipe/errors.js';
import { evaluateGates, type GateResult } from './gates.js';
import { explainChange, keyContext, keyOf, stageKey, type KeyContext, type KeyInputs, type StageKey } from './keys.js';
import { LockWriteError, lockMetrics, lockPathFor, readLock, sharedLockProblem, unreadableLock, updateLock, type LockFile, type LockStage } from './lockfile.js';
import { WorkerThreadExecutor, type StageExecutor } from './executor.js';
import { LocalStageCache, type CacheLookup, type StageCache } from './stage-cache.js';
import type { RemoteStageCache, RemoteSummary } from './remote-stage-cache.js';
import { resolveRemote, type RemoteFlags } from '../cache/remote-config.js';
import type { WorkerJob, WorkerMessage } from './worker.js';
import { setOwn } from '../util/own.js';
import { mark, timed } from '../util/timings.js';
import { SIGNAL_EXIT, stopSignalOf } from '../exit-codes.js';

export { BudgetError, type StageExecutor } from './executor.js';
import { cacheDirFor, outDirFor } from './dirs.js';
export { cacheDirFor, outDirFor };
import { FrozenLockError } from './errors.js';
export { FrozenLockError };
export type { StageCache } from './stage-cache.js';
export type { RemoteSummary } from './remote-stage-cache.js';

export type StageStatus = 'ran' | 'cached' | 'failed' | 'skipped' | 'interrupted';

export interface StageOutcome {
  id: string;
  uses: string;
  status: StageStatus;
  /** Why it ran, or why it was skipped / what failed. */
  reason: string;
  key?: string;
  seconds: number;
  /**
   * Peak memory of the stage's worker in MB (its JS heap plus external memory: array buffers and the
   * wasm heap where tensors live), sampled every 50 ms; for stages that ran or failed in a worker.
   */
  peakMemoryMb?: number;
  /** CPU seconds (user + system) of the stage's worker thread, where the platform reports it (Linux). */
  cpuSeconds?: number;
  metrics: Record<string, unknown>;
  outputs?: Record<string, string>;
  outDir?: string;
  error?: { name: string; message: string; stack?: string };
}

export type RunEvent =
  | { type: 'run-start'; runId: string; recipe: string; engine: string; stages: string[] }
  | { type: 'stage-start'; id: string; reason: string }
  | { type: 'stage-progress'; id: string; message: string; fraction?: number }
  | { type: 'stage-log'; id: string; message: string }
  | { type: 'stage-end'; outcome: StageOutcome }
  | { type: 'gate'; result: GateResult }
  /** Something the user should know that is not a stage's failure (a stale lock of a killed run taken over). */
  | { type: 'warning'; message: string }
  | { type: 'run-end'; summary: RunSummary };

export interface RunOptions {
  cacheDir?: string;
  concurrency?: number;
  only?: string[];
  from?: string;
  until?: string;
  /** true: every selected stage; a list: those stages. */
  force?: boolean | string[];
  /** CI mode: fail (exit 2) when the run would change the lock file. */
  frozen?: boolean;
  backend?: BackendChoice;
  /** Where stage outputs are placed instead of the recipe's out dir (`verify` keeps the real one untouched). */
  outDir?: string;
  /** false: leave the lock file as it is (`verify` compares against it, so must not rewrite it). */
  writeLock?: boolean;
  onEvent?: (e: RunEvent) => void;
  signal?: AbortSignal;
  /** Where stage results are looked up and stored (default: the local content-addressed store). */
  cache?: (local: CacheStore) => StageCache;
  /** What computes a stage (default: a worker thread of this process per stage). */
  executor?: StageExecutor;
  /**
   * The shared remote cache behind the local one (when `cache` is not given): `--remote`/`--no-remote`,
   * `--push`/`--no-push`, else env COMPRESS_REMOTE and the recipe's `cache:` section.
   */
  remote?: RemoteFlags;
}

export interface RunSummary {
  runId: string;
  recipe: string;
  engine: string;
  startedAt: string;
  seconds: number;
  stages: StageOutcome[];
  gates: GateResult[];
  exitCode: 0 | 1 | 2 | 3 | (typeof SIGNAL_EXIT)[keyof typeof SIGNAL_EXIT];
  lockPath: string;
  /** Where the stages' output folders are (`<outDir>/<stage>/`). */
  outDir: string;
  /** Why the lock file could not be written (full disk, read-only): the run then exits 1. */
  lockError?: string;
  /** The shared remote cache, when the run used one: hits, pushes, read-only or unavailable and why. */
  remote?: RemoteSummary;
}


/** A stage's outcome while the run goes on: the record is what downstream stages and the lock read. */
type Settled = StageOutcome & { record?: RunRecord };

/** Which stages this run goes through, in dependency order. */
interface RunPlan {
  order: string[];
  /** Selected by --only/--from/--until (the others in `order` are their ancestors). */
  selected: Set<string>;
  forced(id: string): boolean;
}

/** Everything the phases of one run share. */
interface Run {
  recipe: LoadedRecipe;
  opts: RunOptions;
  runId: string;
  started: number;
  emit: (e: RunEvent) => void;
  backend: BackendChoice;
  engine: string;
  store: CacheStore;
  cache: StageCache;
  /** The remote layer of `cache`, when the run has one (for the summary). */
  remote?: RemoteStageCache;
  executor: StageExecutor;
  files: FileDigests;
  outRoot: string;
  lockPath: string;
  lock: LockFile | undefined;
  onStaleLock: (path: string, holder: string) => void;
}

/** Per-stage phases read this: the run, its plan and keys, the outcomes so far, the gates, the worker slots. */
interface StagePhase {
  run: Run;
  plan: RunPlan;
  keys: KeyContext;
  outcomes: Map<string, Promise<Settled>>;
  gates: GateResult[];
  slots: Slots;
}

/** One stage being settled: its key, where its outputs go, its upstream outcomes. */
interface StageJob {
  stage: ResolvedStage;
  key: StageKey;
  outDir: string;
  ups: Settled[];
  /** When the stage started: settling began, or (computed stages) its worker slot was taken. */
  t0: number;
  /** What its worker reported of its peak memory and CPU, also for a stage that failed. */
  usage?: { peakBytes: number; cpuSeconds?: number };
}

/**
 * Runs a recipe's stages in dependency order: plan → resolve keys → per stage (lookup / run / store /
 * gate) → lock → report. Independent stages run in parallel, each in its own worker.
 */
export async function runRecipe(recipe: LoadedRecipe, opts: RunOptions = {}): Promise<RunSummary> {
  const run = await openRun(recipe, opts);
  // A cache that cannot be written is not registered in: its stages fail, each saying why.
  const unregister = await run.store.registerRun().catch(() => async () => undefined);
  try {
    const plan = planRun(recipe, opts);
    run.emit({ type: 'run-start', runId: run.runId, recipe: recipe.file, engine: run.engine, stages: plan.order });
    // A fresh clone's committed lock names the keys this run will most likely look up: their remote
    // entries are fetched all at once (while the data is digested), not one stage after another.
    run.remote?.prefetch(plan.order.filter((id) => !plan.forced(id) && run.lock?.stages[id]).map((id) => run.lock!.stages[id].key));
    mark('cache opened');
    const keys = await keyContext(recipe, run.engine, run.files, plan.order.flatMap((id) => recipe.stageById.get(id)!.datasets));
    await run.files.save().catch(() => undefined);
    if (opts.frozen) await checkFrozen(recipe, plan.order, run.lock, keys, run.store);
    mark('data digested');
    const { settled, gates } = await settleStages(run, plan, keys);
    mark('stages settled');
    const lockError = await recordLock(run, settled);
    mark('lock written');
    return reportRun(run, settled, gates, lockError);
  } finally {
    await run.remote?.close();
    await unregister();
  }
}

/** Opens the cache and clears what killed runs left behind (work dirs, temp files, stale locks). */
async function openRun(recipe: LoadedRecipe, opts: RunOptions): Promise<Run> {
  const started = Date.now();
  const runId = `${new Date(started).toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${randomBytes(3).toString('hex')}`;
  const emit = opts.onEvent ?? (() => undefined);
  const backend = opts.backend ?? recipe.backend;
  // A lock naming a process that no longer runs was left by a killed run: it is taken over, and said so.
  const onStaleLock = (path: string, holder: string) =>
    emit({ type: 'warning', message: `recovered the stale lock ${path} left by ${describeHolder(holder)}, which no longer runs (killed or crashed run)` });
  const store = new CacheStore(cacheDirFor(recipe, opts.cacheDir), { onStaleLock });
  const lockPath = lockPathFor(recipe.file);
  const shared = sharedLockProblem(lockPath, recipe.file);
  if (shared) throw new UsageError(shared);
  const remoteSettings = opts.cache ? undefined : resolveRemote(recipe.cache, opts.remote);
  // The S3 client is loaded only when a remote is configured, and the local store lacks a stage.
  const remote = remoteSettings && new (await import('./remote-stage-cache.js')).RemoteStageCache(store, remoteSettings, (message) => emit({ type: 'warning', message }));
  const run: Run = {
    recipe,
    opts,
    runId,
    started,
    emit,
    backend,
    engine: engineIdentity(backend),
    store,
    cache: opts.cache ? opts.cache(store) : remote ?? new LocalStageCache(store),
    remote,
    executor: opts.executor ?? new WorkerThreadExecutor(),
    files: new FileDigests(store.root),
    outRoot: opts.outDir ? resolve(opts.outDir) : outDirFor(recipe),
    lockPath,
    lock: readLock(lockPath),
    onStaleLock,
  };
  await sweepLeftovers(run);
  // For `cache gc` of another recipe on this cache; a cache that cannot take it fails the run's own writes, said there.
  await store.noteLockUser(resolve(lockPath)).catch(() => undefined);
  return run;
}

/** What killed runs left behind: their work directories and temp files in the cache, half-swapped
 *  output copies, the lock file's temp files, and the locks they held (taken over, and said so). */
async function sweepLeftovers(run: Run): Promise<void> {
  const { store, outRoot, lockPath } = run;
  await store.sweepTmp();
  await sweepOutDir(outRoot);
  await sweepAtomicTemps(dirname(lockPath), basename(lockPath));
  const heldLocks = [
    ...(await readdir(join(store.root, 'locks')).catch(() => [] as string[])).filter((n) => n.endsWith('.lock')).map((n) => join(store.root, 'locks', n)),
    ...(await readdir(outRoot).catch(() => [] as string[])).filter((n) => n.startsWith('.') && n.endsWith('.lock')).map((n) => join(outRoot, n)),
    `${lockPath}.writing`,
  ];
  for (const p of heldLocks) await clearStaleLock(p, { onStale: (holder) => run.onStaleLock(p, holder) });
}

/** The ids of the stages a run with these --only/--from/--until options takes part in, in dependency order. */
export function plannedStages(recipe: LoadedRecipe, opts: RunOptions): string[] {
  return planRun(recipe, opts).order;
}

/** The stages selected by --only/--from/--until, their ancestors, in dependency order; which are forced. */
function planRun(recipe: LoadedRecipe, opts: RunOptions): RunPlan {
  const nodes = recipe.stages.map((s) => ({ id: s.id, needs: s.needs }));
  // A selector names a stage, or every branch of a swept one (`--only prune` = all `prune[...]`).
  const ids = (sel: string | undefined): string[] => {
    if (sel === undefined) return [];
    const found = selectIds(sel, recipe.stageById.keys());
    if (!found.length) throw new UsageError(`unknown stage '${sel}' (stages: ${recipe.stages.map((s) => s.id).join(', ')})`);
    return found;
  };
  const only = (opts.only ?? []).flatMap(ids);
  const forcedIds = Array.isArray(opts.force) ? opts.force.flatMap(ids) : [];
  const selected = selectStages(nodes, { only, from: ids(opts.from), until: ids(opts.until) });
  const needed = new Set(selected);
  for (const id of selected) for (const a of ancestorsOf(nodes, id)) needed.add(a);
  return {
    order: topoOrder(nodes).filter((id) => needed.has(id)),
    selected,
    forced: (id) => (opts.force === true ? selected.has(id) : forcedIds.includes(id)),
  };
}

/** Starts every stage of the plan (each waits for its upstream) and waits for all of them. */
async function settleStages(run: Run, plan: RunPlan, keys: KeyContext): Promise<{ settled: Settled[]; gates: GateResult[] }> {
  const concurrency = Math.max(1, run.opts.concurrency ?? Math.max(1, availableParallelism()));
  const phase: StagePhase = { run, plan, keys, outcomes: new Map(), gates: [], slots: new Slots(concurrency) };
  const onAbort = () => run.executor.abort();
  run.opts.signal?.addEventListener('abort', onAbort);
  for (const id of plan.order) phase.outcomes.set(id, settleStage(phase, run.recipe.stageById.get(id)!));
  const settled = await Promise.all(plan.order.map((id) => phase.outcomes.get(id)!));
  run.opts.signal?.removeEventListener('abort', onAbort);
  return { settled, gates: phase.gates };
}

/** One stage: skipped after a failed upstream, else keyed, then taken from the cache or computed. */
async function settleStage(p: StagePhase, stage: ResolvedStage): Promise<Settled> {
  const ups = await Promise.all(stage.needs.map((n) => p.outcomes.get(n)!));
  const t0 = Date.now();
  const blocked = ups.find((u) => u.status === 'failed' || u.status === 'skipped' || u.status === 'interrupted');
  if (blocked) return ended(p, outcomeOf(stage, 'skipped', `upstream '${blocked.id}' ${blocked.status === 'failed' ? 'failed' : 'did not run'}`));
  let key: StageKey;
  try {
    key = await stageKey(p.keys, stage, ups.map((u) => u.record!.outputsDigest));
  } catch (e) {
    return ended(p, outcomeOf(stage, 'failed', (e as Error).message));
  }
  const job: StageJob = { stage, key, outDir: join(p.run.outRoot, stage.id), ups, t0 };
  let reason = 'forced';
  if (!p.plan.forced(stage.id)) {
    let found: CacheLookup;
    try {
      found = await lookupStage(p.run, job);
    } catch (e) {
      // A cache that cannot be read or an output directory that cannot be written: this stage fails
      // with the path in words; independent stages still run and the lock keeps what succeeded.
      return failedStage(p, job, e);
    }
    if (found.record) return completedStage(p, job, 'cached', found.source ? `cached (${found.source})` : 'cached', found.record);
    reason = found.damaged ? `${found.damaged}: recomputed` : await previousReason(p.run, job);
  }
  if (!p.plan.selected.has(stage.id) && p.run.opts.only?.length) {
    return ended(p, { ...outcomeOf(stage, 'failed', `upstream of --only stage is not in the cache (${reason}); run without --only first`), key: key.key });
  }
  if (p.run.opts.signal?.aborted) {
    const sig = stopSignalOf(p.run.opts.signal);
    return { ...outcomeOf(stage, 'interrupted', `not started: the run was stopped by ${sig}`), key: key.key, error: { name: 'Interrupted', message: `stage '${stage.id}' did not start: the run was stopped by ${sig}` } };
  }
  return computeStage(p, job, reason);
}

/** Lookup phase: the record for the stage's key, its outputs restored to the stage's out dir. */
async function lookupStage(run: Run, job: StageJob): Promise<CacheLookup> {
  const found = await timed('lookup (local, then remote)', () => run.cache.lookup(job.key.key));
  if (!found.record) return found;
  try {
    await timed('restore outputs to the out dir', () => run.cache.restore(found.record!, job.outDir));
    return found;
  } catch (e) {
    if (e instanceof CacheCorruptError) return { damaged: e.message };
    throw e;
  }
}

/** Run phase, holding a worker slot and the key's lock (another process may be computing the same key). */
async function computeStage(p: StagePhase, job: StageJob, reason: string): Promise<Settled> {
  const release = await p.slots.take();
  // Its time counts from here: waiting for a free slot is not the stage's.
  job.t0 = Date.now();
  let releaseKey: () => Promise<void>;
  try {
    releaseKey = await lockKey(p, job);
  } catch (e) {
    release();
    return failedStage(p, job, new CacheWriteError(describeFsError(e, `cannot write to the cache ${p.run.cache.root}`)));
  }
  try {
    if (reason !== 'forced') {
      // The other process may have stored it while this one waited for the key's lock.
      const again = await lookupStage(p.run, job);
      if (again.record) return await completedStage(p, job, 'cached', 'cached (computed by another run)', again.record);
    }
    return await executeStage(p, job, reason);
  } catch (e) {
    return failedStage(p, job, e);
  } finally {
    await releaseKey();
    release();
  }
}

function lockKey(p: StagePhase, job: StageJob): Promise<() => Promise<void>> {
  const keyLock = join(p.run.cache.root, 'locks', `${job.key.key}.lock`);
  return acquireLock(keyLock, {
    onWait: (holder) => p.run.emit({ type: 'stage-log', id: job.stage.id, message: `waiting for ${describeHolder(holder)} computing the same stage` }),
    onStale: (holder) => p.run.onStaleLock(keyLock, holder),
  });
}

/** Runs the stage's job, stores its outputs under its key and restores them to its out dir. */
async function executeStage(p: StagePhase, job: StageJob, reason: string): Promise<Settled> {
  const { run } = p;
  const { stage } = job;
  run.emit({ type: 'stage-start', id: stage.id, reason });
  checkpoint(`run:stage-start:${stage.id}`);
  const work = await run.cache.workDir(stage.id);
  try {
    const usage: NonNullable<StageJob['usage']> = (job.usage = { peakBytes: 0 });
    const metrics = await run.executor
      .execute(workerJob(run, job, work), stage, (m) => {
        if (m.type === 'memory') {
          usage.peakBytes = Math.max(usage.peakBytes, m.bytes);
          if (m.cpuSeconds !== undefined) usage.cpuSeconds = Math.max(usage.cpuSeconds ?? 0, m.cpuSeconds);
        } else relay(run, stage.id, m);
      })
      .catch((e: unknown) => {
        // A full or read-only disk under the stage's work directory (in the cache): said so, with the path.
        if (['ENOSPC', 'EROFS', 'EDQUOT'].includes((e as NodeJS.ErrnoException).code ?? '')) throw new CacheWriteError(describeFsError(e, `cannot write the outputs of '${stage.id}' in the cache work directory ${work}`));
        throw e;
      });
    checkpoint(`run:stage-done:${stage.id}`);
    const record = await run.cache.store({ key: job.key.key, keyInputs: job.key.inputs, stageKind: stage.uses, stageId: stage.id, metrics, durationMs: Date.now() - job.t0 }, work);
    await run.cache.restore(record, job.outDir);
    return await completedStage(p, job, 'ran', reason, record);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function workerJob(run: Run, job: StageJob, outDir: string): WorkerJob {
  const { stage } = job;
  const inputs = job.ups.map((u) => ({ id: u.id, kind: u.uses, dir: u.outDir!, metrics: u.metrics }));
  return { stageId: stage.id, uses: stage.uses, with: stage.with, seed: run.recipe.seed, backend: run.backend, outDir, workspace: run.recipe.dir, inputs, data: run.recipe.data, memoryMb: stage.memoryMb, key: job.key.key, upstreamKeys: Object.fromEntries(job.ups.map((u) => [u.id, u.key!])) };
}

function relay(run: Run, id: string, m: WorkerMessage): void {
  if (m.type === 'progress') {
    run.emit({ type: 'stage-progress', id, message: m.message, fraction: m.fraction });
    checkpoint(`run:progress:${id}`);
  }
  if (m.type === 'log') run.emit({ type: 'stage-log', id, message: m.message });
}

/** Gate phase, for a stage that ran or came from the cache; then its end is reported. */
async function completedStage(p: StagePhase, job: StageJob, status: 'ran' | 'cached', reason: string, record: RunRecord): Promise<Settled> {
  const o: Settled = { ...outcomeOf(job.stage, status, reason), key: job.key.key, seconds: (Date.now() - job.t0) / 1000, ...usageOf(job), metrics: record.metrics, outputs: digestsOf(record), outDir: job.outDir, record };
  await applyGates(p, job.stage, o);
  return ended(p, o);
}

function failedStage(p: StagePhase, job: StageJob, e: unknown): Settled {
  const thrown = e as Error;
  const message = explainEngineFailure(thrown.message);
  const err = message === thrown.message ? thrown : Object.assign(new Error(message), { name: thrown.name, stack: thrown.stack, workerStack: (thrown as { workerStack?: string }).workerStack });
  const interrupted = p.run.opts.signal?.aborted;
  const seconds = (Date.now() - job.t0) / 1000;
  const measured = (thrown as { metrics?: Record<string, unknown> }).metrics;
  const o: StageOutcome = {
    ...outcomeOf(job.stage, interrupted ? 'interrupted' : 'failed', interrupted ? 'interrupted' : err.message),
    ...(measured && !interrupted ? { metrics: measured } : {}),
    key: job.key.key,
    seconds,
    ...usageOf(job),
    // An interrupted stage's worker is terminated: its exit code says nothing the user needs.
    error: interrupted
      ? { name: 'Interrupted', message: `stage '${job.stage.id}' was stopped by ${stopSignalOf(p.run.opts.signal)} after ${seconds.toFixed(1)} s; completed stages stay cached` }
      : { name: err.name, message: err.message, stack: (err as { workerStack?: string }).workerStack ?? err.stack },
  };
  return ended(p, o);
}

/** The worker's peak memory (MB, one decimal) and CPU seconds, where it reported them. */
function usageOf(job: StageJob): Pick<StageOutcome, 'peakMemoryMb' | 'cpuSeconds'> {
  const u = job.usage;
  if (!u) return {};
  return {
    ...(u.peakBytes ? { peakMemoryMb: Math.round((u.peakBytes / 1048576) * 10) / 10 } : {}),
    ...(u.cpuSeconds !== undefined ? { cpuSeconds: Math.round(u.cpuSeconds * 100) / 100 } : {}),
  };
}

function outcomeOf(stage: ResolvedStage, status: StageStatus, reason: string): StageOutcome {
  return { id: stage.id, uses: stage.uses, status, reason, seconds: 0, metrics: {} };
}

function ended(p: StagePhase, o: Settled): Settled {
  p.run.emit({ type: 'stage-end', outcome: o });
  return o;
}

async function applyGates(p: StagePhase, stage: ResolvedStage, o: StageOutcome): Promise<void> {
  const gates = stage.with.gates as string[] | undefined;
  if (!gates?.length) return;
  const metricsOf = async (id: string) => (id === stage.id ? o.metrics : (await p.outcomes.get(id))?.metrics);
  for (const r of await evaluateGates(stage.id, gates, metricsOf)) {
    p.gates.push(r);
    p.run.emit({ type: 'gate', result: r });
  }
}

/** At most `n` stages compute at once. */
class Slots {
  private running = 0;
  private readonly waiters: Array<() => void> = [];
  constructor(private readonly n: number) {}

  async take(): Promise<() => void> {
    while (this.running >= this.n) await new Promise<void>((r) => this.waiters.push(r));
    this.running++;
    return () => {
      this.running--;
      this.waiters.shift()?.();
    };
  }
}

/** Lock phase: the lock records what this run established; stages that failed keep their previous entry. */
async function recordLock(run: Run, results: Settled[]): Promise<string | undefined> {
  const { recipe, opts, lock, lockPath } = run;
  const entries: Record<string, LockStage> = {};
  for (const r of results) {
    if (r.record && (r.status === 'ran' || r.status === 'cached')) {
      setOwn(entries, r.id, { uses: r.uses, key: r.record.key, outputsDigest: r.record.outputsDigest, outputs: digestsOf(r.record), metrics: lockMetrics(r.record.metrics) });
    }
  }
  if (opts.frozen) {
    const drift = results.filter((r) => r.record && lock?.stages[r.id] && lock.stages[r.id].outputsDigest !== r.record.outputsDigest);
    if (drift.length) throw new FrozenLockError(`--frozen: outputs differ from ${lockPathFor(recipe.file)} for ${drift.map((d) => `'${d.id}'`).join(', ')} (non-deterministic stage or changed environment)`);
    return undefined;
  }
  if (!Object.keys(entries).length || opts.writeLock === false) return undefined;
  try {
    await updateLock(resolve(lockPath), relativeName(recipe), run.engine, recipe.stages.map((s) => s.id), entries, {
      onStale: (holder) => run.onStaleLock(`${resolve(lockPath)}.writing`, holder),
      // Another run is writing the lock: this one waits and merges into what it wrote.
      onWait: () => checkpoint('lockfile:wait'),
    });
    return undefined;
  } catch (e) {
    // The previous lock is intact (atomic replace); what this run computed is in the cache. The
    // failure is reported with the stages' own, not instead of them.
    if (!(e instanceof LockWriteError)) throw e;
    return e.message;
  }
}

/** Report phase: the summary and its exit code. */
function reportRun(run: Run, results: Settled[], gates: GateResult[], lockError: string | undefined): RunSummary {
  const stages: StageOutcome[] = results.map(({ record: _r, ...o }) => o);
  const failed = stages.some((s) => s.status === 'failed');
  const interrupted = run.opts.signal?.aborted || stages.some((s) => s.status === 'interrupted');
  const gateFailed = gates.some((g) => !g.passed);
  const summary: RunSummary = {
    runId: run.runId,
    recipe: run.recipe.file,
    engine: run.engine,
    startedAt: new Date(run.started).toISOString(),
    seconds: (Date.now() - run.started) / 1000,
    stages,
    gates,
    exitCode: interrupted ? SIGNAL_EXIT[stopSignalOf(run.opts.signal)] : failed || lockError ? 1 : gateFailed ? 3 : 0,
    lockPath: run.lockPath,
    outDir: run.outRoot,
    lockError,
    remote: run.remote?.summary(),
  };
  run.emit({ type: 'run-end', summary });
  return summary;
}

function relativeName(recipe: LoadedRecipe): string {
  return recipe.file.replace(/^.*[\\/]/, '');
}

function digestsOf(r: RunRecord): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.outputs)) setOwn(out, k, v.sha256);
  return out;
}

/** Why a stage that is not cached must run, in words: what changed since the lock's entry. */
async function previousReason(run: Run, job: StageJob): Promise<string> {
  return explainStale(run.store, run.lock?.stages[job.stage.id], job.key.inputs, job.stage.needs);
}

async function explainStale(store: CacheStore, locked: LockStage | undefined, cur: KeyInputs, needs: string[]): Promise<string> {
  if (!locked) return 'new stage (not in the lock file)';
  let prev: RunRecord | undefined;
  try {
    prev = await store.getRecord(locked.key);
  } catch {
    prev = undefined;
  }
  if (!prev) return locked.key === keyOf(cur) ? 'not in cache' : 'changed since the lock (previous cache entry gone)';
  return explainChange(prev.keyInputs as KeyInputs, cur, needs);
}

/**
 * Why a stage's key differs from its locked one, as `status` says it (`with.sparsity: 0.6 -> 0.7`), from the
 * locked entry's key inputs where the local cache has it; else the engine when it differs from the lock's.
 */
async function frozenChange(store: CacheStore, lockedKey: string, cur: KeyInputs, needs: string[], lockEngine: string | undefined): Promise<string> {
  const prev = await store.getRecord(lockedKey).catch(() => undefined);
  if (prev) return explainChange(prev.keyInputs as KeyInputs, cur, needs);
  if (lockEngine && lockEngine !== cur.engine) return `engine ${lockEngine} -> ${cur.engine}`;
  return "its with, data, files, seed or compress version differ from the lock's (this cache lacks the locked entry to say which)";
}

/** In --frozen mode, every key must be derivable from the lock alone and equal to it. */
async function checkFrozen(recipe: LoadedRecipe, order: string[], lock: LockFile | undefined, keys: KeyContext, store: CacheStore): Promise<void> {
  if (!lock) {
    const path = lockPathFor(recipe.file);
    const why = unreadableLock(path);
    throw new FrozenLockError(why ? `--frozen: ${path} is not a lock compress can read: ${why}` : `--frozen: no lock file ${path}; run without --frozen first and commit it`);
  }
  const problems: string[] = [];
  for (const id of order) {
    const stage = recipe.stageById.get(id)!;
    const entry = lock.stages[id];
    if (!entry) {
      problems.push(`'${id}' is not in the lock`);
      continue;
    }
    let key: StageKey;
    try {
      key = await stageKey(keys, stage, stage.needs.map((n) => lock.stages[n]?.outputsDigest ?? 'missing'));
    } catch (e) {
      problems.push(`'${id}': ${(e as Error).message}`);
      continue;
    }
    if (key.key !== entry.key) problems.push(`'${id}' would change: ${await frozenChange(store, entry.key, key.inputs, stage.needs, lock.engine)}`);
  }
  for (const id of Object.keys(lock.stages)) if (!recipe.stageById.has(id)) problems.push(`'${id}' is in the lock but not in the recipe`);
  if (problems.length) throw new FrozenLockError(`--frozen: the run would change ${lockPathFor(recipe.file)}:\n  ${problems.join('\n  ')}\nRun \`compress run\` and commit the lock.`);
}

export { resolveBackend };

export interface StageState {
  id: string;
  uses: string;
  /** remote: not in the local cache, but the remote cache holds its record (run would fetch it). */
  state: 'cached' | 'remote' | 'stale';
  reason: string;
  key?: string;
}

export interface StageStatesOptions extends Pick<RunOptions, 'cacheDir' | 'backend'> {
  /**
   * Also look up, in the remote cache (`--remote`, env COMPRESS_REMOTE or the recipe's cache.remote),
   * the stages the local cache lacks: one GET of each one's small record, no objects.
   */
  remote?: RemoteFlags;
  /** Told when the remote is unreachable (the stages are then reported from the local cache alone). */
  onWarning?: (message: string) => void;
}

/** What `run` would do, without running: each stage cached, in the remote, or stale, and why (the run's own lookup, read-only). */
export async function stageStates(recipe: LoadedRecipe, opts: StageStatesOptions = {}): Promise<StageState[]> {
  const store = new CacheStore(cacheDirFor(recipe, opts.cacheDir));
  const cache = new LocalStageCache(store);
  const remote = await openRemoteForStatus(recipe, opts);
  const lock = readLock(lockPathFor(recipe.file));
  const keys = await keyContext(recipe, engineIdentity(opts.backend ?? recipe.backend), new FileDigests(store.root), Object.keys(recipe.data));
  const digests = new Map<string, string>();
  const out: StageState[] = [];
  try {
    for (const id of topoOrder(recipe.stages.map((s) => ({ id: s.id, needs: s.needs })))) {
      const stage = recipe.stageById.get(id)!;
      const staleUp = stage.needs.filter((n) => !digests.has(n));
      if (staleUp.length) {
        out.push({ id, uses: stage.uses, state: 'stale', reason: `upstream ${staleUp.map((n) => `'${n}'`).join(', ')} will run` });
        continue;
      }
      let key: StageKey;
      try {
        key = await stageKey(keys, stage, stage.needs.map((n) => digests.get(n)!));
      } catch (e) {
        out.push({ id, uses: stage.uses, state: 'stale', reason: (e as Error).message });
        continue;
      }
      const found = await cache.lookup(key.key).catch((e: Error): CacheLookup => ({ damaged: e.message }));
      const there = found.record ? undefined : await remote?.peekRecord(key.key);
      const record = found.record ?? there?.record;
      if (record) {
        digests.set(id, record.outputsDigest);
        out.push({ id, uses: stage.uses, state: found.record ? 'cached' : 'remote', reason: found.record ? 'cached' : `in the remote cache ${remote!.settings.url} (run fetches and verifies it)`, key: key.key });
      } else {
        const why = there?.refused ? `${there.refused}: would be recomputed` : found.damaged ?? (await explainStale(store, lock?.stages[id], key.inputs, stage.needs));
        out.push({ id, uses: stage.uses, state: 'stale', reason: why, key: key.key });
      }
    }
  } finally {
    remote?.close();
  }
  return out;
}

/** The remote `status` asks, when one is configured: few attempts (status answers quickly, or says the remote is down). */
async function openRemoteForStatus(recipe: LoadedRecipe, opts: StageStatesOptions) {
  const settings = opts.remote && resolveRemote(recipe.cache, opts.remote);
  if (!settings) return undefined;
  const { RemoteCache } = await import('../cache/remote.js');
  return new RemoteCache(settings, { onWarning: opts.onWarning, maxAttempts: 2 });
}
