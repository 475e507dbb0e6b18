import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { readdir, rm } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { CacheCorruptError, CacheStore, CacheWriteError, manifestDigest, sweepOutDir, type RunRecord } from '../cache/store.js';
import { checkpoint, describeFsError, sweepAtomicTemps } from '../cache/fsutil.js';
import { FileDigests } from '../cache/file-digests.js';
import { acquireLock, clearStaleLock, describeHolder } from '../cache/proc-lock.js';
import { engineIdentity, resolveBackend } from '../engine/backend.js';
import { ancestorsOf, selectStages, topoOrder } from '../graph/dag.js';
import type { LoadedRecipe, ResolvedStage } from '../recipe/load.js';
import { selectIds } from '../recipe/matrix.js';
import { RecipeError, UsageError } from '../recipe/errors.js';
import { confinedWriteDir, PathEscapeError } from '../util/paths.js';
import type { StageInput } from '../stages/types.js';
import { evaluateGates, type GateResult } from './gates.js';
import { dataDigest, explainChange, keyInputsFor, keyOf, stageFileDigests, type KeyInputs } from './keys.js';
import { LockWriteError, lockMetrics, lockPathFor, readLock, updateLock, type LockStage } from './lockfile.js';
import type { WorkerJob, WorkerMessage } from './worker.js';

export type StageStatus = 'ran' | 'cached' | 'failed' | 'skipped' | 'interrupted';

export interface StageOutcome {
  id: string;
  uses: string;
  status: StageStatus;
  /** Why it ran, or why it was skipped / what failed. */
  reason: string;
  key?: string;
  seconds: number;
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
  backend?: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  /** Where stage outputs are placed instead of the recipe's out dir (`verify` keeps the real one untouched). */
  outDir?: string;
  /** false: leave the lock file as it is (`verify` compares against it, so must not rewrite it). */
  writeLock?: boolean;
  onEvent?: (e: RunEvent) => void;
  signal?: AbortSignal;
}

export interface RunSummary {
  runId: string;
  recipe: string;
  engine: string;
  startedAt: string;
  seconds: number;
  stages: StageOutcome[];
  gates: GateResult[];
  exitCode: 0 | 1 | 2 | 3 | 130;
  lockPath: string;
  /** Why the lock file could not be written (full disk, read-only): the run then exits 1. */
  lockError?: string;
}

/** A stage went over its `timeout` or `memoryMb` budget and was stopped. */
export class BudgetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BudgetError';
  }
}

export class FrozenLockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrozenLockError';
  }
}

export function cacheDirFor(recipe: LoadedRecipe, flag?: string): string {
  if (flag) return resolve(flag);
  if (process.env.COMPRESS_CACHE_DIR) return resolve(process.env.COMPRESS_CACHE_DIR);
  if (recipe.cacheDir) return recipeWriteDir(recipe, recipe.cacheDir, 'cache.dir');
  return join(recipe.dir, '.compress', 'cache');
}

export function outDirFor(recipe: LoadedRecipe): string {
  return recipe.outDir ? recipeWriteDir(recipe, recipe.outDir, 'outDir') : join(recipe.dir, '.compress', 'out');
}

/** A directory the recipe names for compress to write (and `cache clean` to delete): kept inside the workspace. */
function recipeWriteDir(recipe: LoadedRecipe, p: string, what: string): string {
  try {
    return confinedWriteDir(recipe.dir, p, what);
  } catch (e) {
    if (e instanceof PathEscapeError) throw new RecipeError([{ file: recipe.file, path: what, message: what === 'cache.dir' ? `${e.message} (a cache outside the workspace is chosen with --cache-dir or COMPRESS_CACHE_DIR)` : e.message }]);
    throw e;
  }
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

/** Runs (or, with `dryRun`, only plans) a recipe's stages in dependency order. */
export async function runRecipe(recipe: LoadedRecipe, opts: RunOptions = {}): Promise<RunSummary> {
  const started = Date.now();
  const runId = `${new Date(started).toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${randomBytes(3).toString('hex')}`;
  const emit = opts.onEvent ?? (() => undefined);
  const backend = opts.backend ?? recipe.backend;
  const engine = engineIdentity(backend);
  // A lock naming a process that no longer runs was left by a killed run: it is taken over, and said so.
  const onStaleLock = (path: string, holder: string) =>
    emit({ type: 'warning', message: `recovered the stale lock ${path} left by ${describeHolder(holder)}, which no longer runs (killed or crashed run)` });
  const store = new CacheStore(cacheDirFor(recipe, opts.cacheDir), { onStaleLock });
  const files = new FileDigests(store.root);
  const outRoot = opts.outDir ? resolve(opts.outDir) : outDirFor(recipe);
  const lockPath = lockPathFor(recipe.file);
  const lock = readLock(lockPath);
  // What killed runs left behind: their work directories and temp files in the cache, half-swapped
  // output copies, the lock file's temp files, and the locks they held (taken over, and said so).
  await store.sweepTmp();
  await sweepOutDir(outRoot);
  await sweepAtomicTemps(dirname(lockPath), basename(lockPath));
  const heldLocks = [
    ...(await readdir(join(store.root, 'locks')).catch(() => [] as string[])).filter((n) => n.endsWith('.lock')).map((n) => join(store.root, 'locks', n)),
    ...(await readdir(outRoot).catch(() => [] as string[])).filter((n) => n.startsWith('.') && n.endsWith('.lock')).map((n) => join(outRoot, n)),
    `${lockPath}.writing`,
  ];
  for (const p of heldLocks) await clearStaleLock(p, { onStale: (holder) => onStaleLock(p, holder) });

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
  const order = topoOrder(nodes).filter((id) => needed.has(id));
  const forced = (id: string) => opts.force === true ? selected.has(id) : forcedIds.includes(id);

  emit({ type: 'run-start', runId, recipe: recipe.file, engine, stages: order });

  // Keys of every stage, computed in order: each needs its upstream outputs digest.
  const dataDigests: Record<string, string> = {};
  for (const name of new Set(order.flatMap((id) => recipe.stageById.get(id)!.datasets))) dataDigests[name] = await dataDigest(recipe, name, files);
  await files.save().catch(() => undefined);

  if (opts.frozen) await checkFrozen(recipe, order, lock, dataDigests, engine, files);

  const concurrency = Math.max(1, opts.concurrency ?? Math.max(1, availableParallelism()));
  let running = 0;
  const waiters: Array<() => void> = [];
  const slot = async () => {
    while (running >= concurrency) await new Promise<void>((r) => waiters.push(r));
    running++;
    return () => {
      running--;
      waiters.shift()?.();
    };
  };

  const outcomes = new Map<string, Promise<StageOutcome & { record?: RunRecord }>>();
  const gateResults: GateResult[] = [];
  const activeWorkers = new Set<Worker>();
  const onAbort = () => {
    for (const w of activeWorkers) w.postMessage({ type: 'abort' });
    setTimeout(() => {
      for (const w of activeWorkers) void w.terminate();
    }, 200).unref();
  };
  opts.signal?.addEventListener('abort', onAbort);

  const runStage = async (stage: ResolvedStage): Promise<StageOutcome & { record?: RunRecord }> => {
    const base = { id: stage.id, uses: stage.uses, metrics: {} as Record<string, unknown> };
    const ups = await Promise.all(stage.needs.map((n) => outcomes.get(n)!));
    const t0 = Date.now();
    const bad = ups.find((u) => u.status === 'failed' || u.status === 'skipped' || u.status === 'interrupted');
    if (bad) {
      const o: StageOutcome = { ...base, status: 'skipped', reason: `upstream '${bad.id}' ${bad.status === 'failed' ? 'failed' : 'did not run'}`, seconds: 0 };
      emit({ type: 'stage-end', outcome: o });
      return o;
    }
    let keyInputs: KeyInputs;
    try {
      keyInputs = keyInputsFor(stage, ups.map((u) => u.record!.outputsDigest), pick(dataDigests, stage.datasets), engine, recipe.seed, await stageFileDigests(stage, recipe, files));
    } catch (e) {
      const o: StageOutcome = { ...base, status: 'failed', reason: (e as Error).message, seconds: 0 };
      emit({ type: 'stage-end', outcome: o });
      return o;
    }
    const key = keyOf(keyInputs);
    const outDir = join(outRoot, stage.id);
    const failedOutcome = (e: unknown): StageOutcome => {
      const err = e as Error;
      const interrupted = opts.signal?.aborted;
      const seconds = (Date.now() - t0) / 1000;
      const o: StageOutcome = {
        ...base,
        status: interrupted ? 'interrupted' : 'failed',
        reason: interrupted ? 'interrupted' : err.message,
        key,
        seconds,
        // An interrupted stage's worker is terminated: its exit code says nothing the user needs.
        error: interrupted
          ? { name: 'Interrupted', message: `stage '${stage.id}' was stopped by an interrupt (SIGINT) after ${seconds.toFixed(1)} s; completed stages stay cached` }
          : { name: err.name, message: err.message, stack: (err as { workerStack?: string }).workerStack ?? err.stack },
      };
      emit({ type: 'stage-end', outcome: o });
      return o;
    };
    let reason = '';
    if (forced(stage.id)) reason = 'forced';
    else {
      let cached: Awaited<ReturnType<typeof tryCached>>;
      try {
        cached = await tryCached(store, key, outDir);
      } catch (e) {
        // A cache that cannot be read or an output directory that cannot be written: this stage fails
        // with the path in words; independent stages still run and the lock keeps what succeeded.
        return failedOutcome(e);
      }
      if (cached.record) {
        const o = { ...base, status: 'cached' as const, reason: 'cached', key, seconds: (Date.now() - t0) / 1000, metrics: cached.record.metrics, outputs: digestsOf(cached.record), outDir, record: cached.record };
        await applyGates(stage, o);
        emit({ type: 'stage-end', outcome: o });
        return o;
      }
      reason = cached.corrupt ?? (await previousReason(store, lock?.stages[stage.id], keyInputs, stage.needs));
    }
    if (!selected.has(stage.id) && opts.only?.length) {
      const o: StageOutcome = { ...base, status: 'failed', reason: `upstream of --only stage is not in the cache (${reason}); run without --only first`, key, seconds: 0 };
      emit({ type: 'stage-end', outcome: o });
      return o;
    }
    if (opts.signal?.aborted) return { ...base, status: 'interrupted', reason: 'interrupted', key, seconds: 0 };

    const release = await slot();
    // Another process may be computing the same key: wait for it, then take its result.
    const keyLock = join(store.root, 'locks', `${key}.lock`);
    let releaseKey: () => Promise<void>;
    try {
      releaseKey = await acquireLock(keyLock, {
        onWait: (holder) => emit({ type: 'stage-log', id: stage.id, message: `waiting for ${describeHolder(holder)} computing the same stage` }),
        onStale: (holder) => onStaleLock(keyLock, holder),
      });
    } catch (e) {
      release();
      return failedOutcome(new CacheWriteError(describeFsError(e, `cannot write to the cache ${store.root}`)));
    }
    try {
      if (reason !== 'forced') {
        const cached = await tryCached(store, key, outDir);
        if (cached.record) {
          const o = { ...base, status: 'cached' as const, reason: 'cached (computed by another run)', key, seconds: (Date.now() - t0) / 1000, metrics: cached.record.metrics, outputs: digestsOf(cached.record), outDir, record: cached.record };
          await applyGates(stage, o);
          emit({ type: 'stage-end', outcome: o });
          return o;
        }
      }
      emit({ type: 'stage-start', id: stage.id, reason });
      checkpoint(`run:stage-start:${stage.id}`);
      const work = await store.makeWorkDir(stage.id);
      try {
        const inputs: StageInput[] = ups.map((u) => ({ id: u.id, kind: u.uses, dir: u.outDir!, metrics: u.metrics }));
        const job: WorkerJob = { stageId: stage.id, uses: stage.uses, with: stage.with, seed: recipe.seed, backend, outDir: work, workspace: recipe.dir, inputs, data: recipe.data, memoryMb: stage.memoryMb };
        const metrics = await runInWorker(job, stage, (m) => {
          if (m.type === 'progress') {
            emit({ type: 'stage-progress', id: stage.id, message: m.message, fraction: m.fraction });
            checkpoint(`run:progress:${stage.id}`);
          }
          if (m.type === 'log') emit({ type: 'stage-log', id: stage.id, message: m.message });
        }, activeWorkers);
        checkpoint(`run:stage-done:${stage.id}`);
        const outputs = await store.putDir(work);
        const record = await store.putRecord({
          key,
          keyInputs,
          stageKind: stage.uses,
          stageId: stage.id,
          outputs,
          outputsDigest: manifestDigest(outputs),
          metrics,
          createdAt: new Date().toISOString(),
          durationMs: Date.now() - t0,
        });
        await store.materialize(record, outDir);
        const o = { ...base, status: 'ran' as const, reason, key, seconds: (Date.now() - t0) / 1000, metrics, outputs: digestsOf(record), outDir, record };
        await applyGates(stage, o);
        emit({ type: 'stage-end', outcome: o });
        return o;
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    } catch (e) {
      return failedOutcome(e);
    } finally {
      await releaseKey();
      release();
    }
  };

  const applyGates = async (stage: ResolvedStage, o: StageOutcome) => {
    const gates = stage.with.gates as string[] | undefined;
    if (!gates?.length) return;
    const metricsOf = async (id: string) => (id === stage.id ? o.metrics : (await outcomes.get(id))?.metrics);
    for (const r of await evaluateGates(stage.id, gates, metricsOf)) {
      gateResults.push(r);
      emit({ type: 'gate', result: r });
    }
  };

  for (const id of order) outcomes.set(id, runStage(recipe.stageById.get(id)!));
  const results = await Promise.all(order.map((id) => outcomes.get(id)!));
  opts.signal?.removeEventListener('abort', onAbort);

  // The lock records what this run established; stages that failed keep their previous entry.
  const entries: Record<string, LockStage> = {};
  for (const r of results) {
    if (r.record && (r.status === 'ran' || r.status === 'cached')) {
      entries[r.id] = { uses: r.uses, key: r.record.key, outputsDigest: r.record.outputsDigest, outputs: digestsOf(r.record), metrics: lockMetrics(r.record.metrics) };
    }
  }
  if (opts.frozen) {
    const drift = results.filter((r) => r.record && lock?.stages[r.id] && lock.stages[r.id].outputsDigest !== r.record.outputsDigest);
    if (drift.length) throw new FrozenLockError(`--frozen: outputs differ from ${lockPathFor(recipe.file)} for ${drift.map((d) => `'${d.id}'`).join(', ')} (non-deterministic stage or changed environment)`);
  }
  let lockError: string | undefined;
  if (!opts.frozen && Object.keys(entries).length && opts.writeLock !== false) {
    try {
      await updateLock(resolve(lockPath), relativeName(recipe), engine, recipe.stages.map((s) => s.id), entries, {
        onStale: (holder) => onStaleLock(`${resolve(lockPath)}.writing`, holder),
        // Another run is writing the lock: this one waits and merges into what it wrote.
        onWait: () => checkpoint('lockfile:wait'),
      });
    } catch (e) {
      // The previous lock is intact (atomic replace); what this run computed is in the cache. The
      // failure is reported with the stages' own, not instead of them.
      if (!(e instanceof LockWriteError)) throw e;
      lockError = e.message;
    }
  }

  const stages: StageOutcome[] = results.map(({ record: _r, ...o }) => o);
  const failed = stages.some((s) => s.status === 'failed');
  const interrupted = opts.signal?.aborted || stages.some((s) => s.status === 'interrupted');
  const gateFailed = gateResults.some((g) => !g.passed);
  const summary: RunSummary = {
    runId,
    recipe: recipe.file,
    engine,
    startedAt: new Date(started).toISOString(),
    seconds: (Date.now() - started) / 1000,
    stages,
    gates: gateResults,
    exitCode: interrupted ? 130 : failed || lockError ? 1 : gateFailed ? 3 : 0,
    lockPath,
    lockError,
  };
  emit({ type: 'run-end', summary });
  return summary;
}

function relativeName(recipe: LoadedRecipe): string {
  return recipe.file.replace(/^.*[\\/]/, '');
}

function pick(all: Record<string, string>, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) out[n] = all[n];
  return out;
}

function digestsOf(r: RunRecord): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.outputs)) out[k] = v.sha256;
  return out;
}

async function tryCached(store: CacheStore, key: string, outDir: string): Promise<{ record?: RunRecord; corrupt?: string }> {
  try {
    const record = await store.getRecord(key);
    if (!record) return {};
    if (!(await store.hasObjects(record))) {
      await store.removeRecord(key);
      return { corrupt: 'cache entry incomplete (missing objects): recomputed' };
    }
    await store.materialize(record, outDir);
    return { record };
  } catch (e) {
    if (e instanceof CacheCorruptError) {
      await store.removeRecord(key);
      return { corrupt: `${e.message}: recomputed` };
    }
    throw e;
  }
}

async function previousReason(store: CacheStore, locked: LockStage | undefined, cur: KeyInputs, needs: string[]): Promise<string> {
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

/** In --frozen mode, every key must be derivable from the lock alone and equal to it. */
async function checkFrozen(recipe: LoadedRecipe, order: string[], lock: ReturnType<typeof readLock>, data: Record<string, string>, engine: string, files: FileDigests): Promise<void> {
  if (!lock) throw new FrozenLockError(`--frozen: no lock file ${lockPathFor(recipe.file)}; run without --frozen first and commit it`);
  const problems: string[] = [];
  for (const id of order) {
    const stage = recipe.stageById.get(id)!;
    const entry = lock.stages[id];
    if (!entry) {
      problems.push(`'${id}' is not in the lock`);
      continue;
    }
    const ups = stage.needs.map((n) => lock.stages[n]?.outputsDigest ?? 'missing');
    let key: string;
    try {
      key = keyOf(keyInputsFor(stage, ups, pick(data, stage.datasets), engine, recipe.seed, await stageFileDigests(stage, recipe, files)));
    } catch (e) {
      problems.push(`'${id}': ${(e as Error).message}`);
      continue;
    }
    if (key !== entry.key) problems.push(`'${id}' would change (its params, data, upstream or engine differ from the lock)`);
  }
  for (const id of Object.keys(lock.stages)) if (!recipe.stageById.has(id)) problems.push(`'${id}' is in the lock but not in the recipe`);
  if (problems.length) throw new FrozenLockError(`--frozen: the run would change ${lockPathFor(recipe.file)}:\n  ${problems.join('\n  ')}\nRun \`compress run\` and commit the lock.`);
}

function runInWorker(job: WorkerJob, stage: ResolvedStage, onMessage: (m: WorkerMessage) => void, active: Set<Worker>): Promise<Record<string, unknown>> {
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
        if (m.bytes > budgetBytes) {
          finish(() => reject(new BudgetError(`stage '${stage.id}' exceeded its memory budget of ${stage.memoryMb} MB (memoryMb; it used ${Math.round(m.bytes / 1048576)} MB of JS heap, array buffers and wasm memory) and was stopped`)));
        }
      } else if (m.type === 'done') finish(() => resolvePromise(m.metrics));
      else if (m.type === 'error') {
        const err = new Error(m.message);
        err.name = m.name;
        (err as { workerStack?: string }).workerStack = m.stack;
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

export { resolveBackend };

export interface StageState {
  id: string;
  uses: string;
  state: 'cached' | 'stale';
  reason: string;
  key?: string;
}

/** What `run` would do, without running: each stage cached or stale, and why. */
export async function stageStates(recipe: LoadedRecipe, opts: Pick<RunOptions, 'cacheDir' | 'backend'> = {}): Promise<StageState[]> {
  const engine = engineIdentity(opts.backend ?? recipe.backend);
  const store = new CacheStore(cacheDirFor(recipe, opts.cacheDir));
  const files = new FileDigests(store.root);
  const lock = readLock(lockPathFor(recipe.file));
  const data: Record<string, string> = {};
  for (const name of Object.keys(recipe.data)) data[name] = await dataDigest(recipe, name, files);
  const digests = new Map<string, string>();
  const out: StageState[] = [];
  for (const id of topoOrder(recipe.stages.map((s) => ({ id: s.id, needs: s.needs })))) {
    const stage = recipe.stageById.get(id)!;
    const staleUp = stage.needs.filter((n) => !digests.has(n));
    if (staleUp.length) {
      out.push({ id, uses: stage.uses, state: 'stale', reason: `upstream ${staleUp.map((n) => `'${n}'`).join(', ')} will run` });
      continue;
    }
    let ki: KeyInputs;
    try {
      ki = keyInputsFor(stage, stage.needs.map((n) => digests.get(n)!), pick(data, stage.datasets), engine, recipe.seed, await stageFileDigests(stage, recipe, files));
    } catch (e) {
      out.push({ id, uses: stage.uses, state: 'stale', reason: (e as Error).message });
      continue;
    }
    const key = keyOf(ki);
    let rec: RunRecord | undefined;
    let corrupt: string | undefined;
    try {
      rec = await store.getRecord(key);
      if (rec && !(await store.hasObjects(rec))) {
        corrupt = 'cache entry incomplete';
        rec = undefined;
      }
    } catch (e) {
      corrupt = (e as Error).message;
    }
    if (rec) {
      digests.set(id, rec.outputsDigest);
      out.push({ id, uses: stage.uses, state: 'cached', reason: 'cached', key });
    } else {
      out.push({ id, uses: stage.uses, state: 'stale', reason: corrupt ?? (await previousReason(store, lock?.stages[id], ki, stage.needs)), key });
    }
  }
  return out;
}
