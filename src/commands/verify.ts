import { existsSync } from 'node:fs';
import type { BackendChoice } from '../engine/backend.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { CacheCorruptError, CacheStore, type RunRecord } from '../cache/store.js';
import { ancestorsOf, topoOrder } from '../stage-graph/dag.js';
import { UsageError } from '../recipe/errors.js';
import { selectIds } from '../recipe/matrix.js';
import type { LoadedRecipe } from '../recipe/load.js';
import { cacheDirFor, runRecipe, type RunSummary, type StageOutcome } from '../run/execute.js';
import { lockMetrics, lockPathFor, readLock, unreadableLock, type LockFile, type LockStage } from '../run/lockfile.js';
import { createProgress, progressMode } from '../run/progress.js';
import { EXIT, SIGNAL_EXIT } from '../exit-codes.js';
import { RemoteCache } from '../cache/remote.js';
import { resolveRemote } from '../cache/remote-config.js';
import { preflight } from '../run/preflight.js';
import { interruptible, openRecipe, type RecipeFlags } from './common.js';

export interface VerifyFlags extends RecipeFlags {
  /** Verify only these stages (selectors as for `run --only`); their inputs come from the cache when it holds them as locked. */
  only?: string[];
  /** The user's cache, read (never written) for the inputs of `--only` stages. */
  cacheDir?: string;
  concurrency?: number;
  backend?: BackendChoice;
  /** Remote cache the inputs of `--only` stages come from when the local cache lacks them. */
  remote?: string;
  /** Keep the temporary directory with the recomputed outputs (to diff them). */
  keep?: boolean;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

/**
 * ok: recomputed, outputs and metrics equal the lock's. differs: they do not. stale: the stage's key
 * differs from the lock's for a reason other than a differing input (recipe, data or engine changed
 * since the lock was written). unlocked: not in the lock. failed: could not be recomputed.
 * input: an input of an `--only` stage, taken from the cache as locked (not checked).
 */
export type VerifyState = 'ok' | 'differs' | 'stale' | 'unlocked' | 'failed' | 'input';

export interface StageVerdict {
  id: string;
  uses: string;
  state: VerifyState;
  /** Output files whose content differs from the lock, locked files not produced, files produced but not locked. */
  files: { changed: string[]; missing: string[]; extra: string[] };
  metrics: Array<{ name: string; locked?: number; now?: number }>;
  /** Human-readable detail (why stale, which input differs, why it failed). */
  detail?: string;
}

export interface VerifyResult {
  recipe: string;
  lock: string;
  engine: string;
  lockEngine: string;
  stages: StageVerdict[];
  exitCode: number;
  keptDir?: string;
}

const MISMATCH: VerifyState[] = ['differs', 'stale', 'unlocked'];

/**
 * `compress verify`: recomputes the recipe's stages (or `--only` ones) in a temporary cache and out dir
 * and compares every output digest and metric with the lock. The user's outputs, lock and cache are
 * left as they are. Exit 0 when all match, 2 when any differs (like a `--frozen` mismatch), 1 when a
 * stage failed, 130 when interrupted.
 */
export async function verifyCommand(file: string | undefined, flags: VerifyFlags): Promise<number> {
  const recipe = openRecipe(file, flags, true);
  await preflight(recipe);
  const lockPath = lockPathFor(recipe.file);
  if (!existsSync(lockPath)) throw new UsageError(`no lock file ${lockPath} to verify against: run \`compress run\` first (and commit the lock)`);
  const lock = readLock(lockPath);
  if (!lock) throw new UsageError(`${lockPath} is not a lock file compress can read: ${unreadableLock(lockPath) ?? 'run `compress run` to rewrite it'}`);

  const ids = recipe.stages.map((s) => s.id);
  const nodes = recipe.stages.map((s) => ({ id: s.id, needs: s.needs }));
  const targets = new Set<string>();
  for (const sel of flags.only ?? []) {
    const found = selectIds(sel, ids);
    if (!found.length) throw new UsageError(`unknown stage '${sel}' (stages: ${ids.join(', ')})`);
    for (const id of found) targets.add(id);
  }
  const onlyMode = targets.size > 0;
  if (!onlyMode) for (const id of ids) targets.add(id);
  const inputs = new Set<string>();
  for (const id of targets) for (const a of ancestorsOf(nodes, id)) if (!targets.has(a)) inputs.add(a);

  const mode = progressMode(flags);
  const say = (l: string) => {
    if (mode !== 'json' && mode !== 'quiet') process.stderr.write(l + '\n');
  };
  const tmp = await mkdtemp(join(tmpdir(), 'compress-verify-'));
  const cacheDir = join(tmp, 'cache');
  const outDir = join(tmp, 'out');
  let result: VerifyResult;
  try {
    // An `--only` stage needs its inputs: taken from the user's cache when it holds them exactly as
    // locked (cheap; the store checks every byte as it copies), else from the remote cache (digests
    // checked), else recomputed (and checked too).
    const seeded = new Set<string>();
    if (inputs.size) {
      const user = new CacheStore(cacheDirFor(recipe, flags.cacheDir));
      const temp = new CacheStore(cacheDir);
      for (const id of inputs) if (await seedFromCache(user, temp, lock.stages[id])) seeded.add(id);
      // A teammate's lock: what the local cache lacks comes from the shared remote, every digest checked.
      const settings = [...inputs].some((id) => !seeded.has(id)) ? resolveRemote(recipe.cache, { remote: flags.remote, push: false }) : undefined;
      if (settings) {
        const remote = new RemoteCache(settings, { onWarning: (m) => say(`warning: ${m}`) });
        try {
          for (const id of inputs) if (!seeded.has(id) && (await seedFromRemote(remote, temp, id, lock.stages[id]))) seeded.add(id);
        } finally {
          remote.close();
        }
      }
    }
    const recompute = [...targets, ...inputs].filter((id) => !seeded.has(id));
    say(`verify: recomputing ${recompute.length} stage${recompute.length === 1 ? '' : 's'} of ${relative('.', recipe.file) || recipe.file} in a temporary cache; comparing with ${relative('.', lockPath) || lockPath}`);

    const progress = mode === 'tty' ? createProgress('tty', recipe.stages, flags.verbose) : undefined;
    const interrupt = interruptible('stopping verify');
    let summary: RunSummary;
    try {
      summary = await runRecipe(recipe, {
        cacheDir,
        outDir,
        writeLock: false,
        // Recomputed here, never taken from (or pushed to) the shared remote.
        remote: { remote: false },
        backend: flags.backend,
        concurrency: flags.concurrency,
        // Every stage of the selection is "selected", so a missing input is recomputed, not an error.
        only: onlyMode ? [...targets, ...inputs] : undefined,
        signal: interrupt.signal,
        onEvent: (e) => {
          progress?.onEvent(e);
          if (!progress && e.type === 'stage-start') say(`  recomputing ${e.id}`);
          const w = e as { type: string; message?: string };
          if (!progress && w.type === 'warning') say(`warning: ${w.message}`);
        },
      });
    } finally {
      await progress?.done();
      interrupt.release();
    }
    result = compare(recipe, lockPath, lock, summary, seeded, onlyMode);
    if (flags.keep) result.keptDir = outDir;
  } finally {
    if (!flags.keep) await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  }

  if (mode === 'json') process.stdout.write(JSON.stringify(result) + '\n');
  else print(result, mode === 'quiet');
  return result.exitCode;
}

/** Fetches a locked stage's entry from the remote into the temporary cache (verified); false when it cannot. */
async function seedFromRemote(remote: RemoteCache, temp: CacheStore, id: string, entry: LockStage | undefined): Promise<boolean> {
  if (!entry) return false;
  const r = await remote.pull(entry.key, temp, id);
  return r.record?.outputsDigest === entry.outputsDigest;
}

/** Copies a locked stage's record and files from the user's cache into the temporary one; false when it cannot. */
async function seedFromCache(user: CacheStore, temp: CacheStore, entry: LockStage | undefined): Promise<boolean> {
  if (!entry) return false;
  let rec: RunRecord | undefined;
  try {
    rec = await user.getRecord(entry.key);
  } catch (e) {
    if (e instanceof CacheCorruptError) return false;
    throw e;
  }
  if (!rec || rec.outputsDigest !== entry.outputsDigest || !(await user.hasObjects(rec))) return false;
  const work = await temp.makeWorkDir('seed');
  try {
    const files = join(work, 'files');
    await user.materialize(rec, files);
    const { checksum: _c, ...rest } = rec;
    await temp.putRecord({ ...rest, outputs: await temp.putDir(files) });
    return true;
  } catch (e) {
    if (e instanceof CacheCorruptError) return false;
    throw e;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function compare(recipe: LoadedRecipe, lockPath: string, lock: LockFile, s: RunSummary, seeded: Set<string>, onlyMode: boolean): VerifyResult {
  const byId = new Map<string, StageOutcome>(s.stages.map((o) => [o.id, o]));
  const verdicts = new Map<string, StageVerdict>();
  const order = topoOrder(recipe.stages.map((st) => ({ id: st.id, needs: st.needs }))).filter((id) => byId.has(id));
  for (const id of order) {
    const o = byId.get(id)!;
    const stage = recipe.stageById.get(id)!;
    const v: StageVerdict = { id, uses: o.uses, state: 'ok', files: { changed: [], missing: [], extra: [] }, metrics: [] };
    verdicts.set(id, v);
    const entry = lock.stages[id];
    if (seeded.has(id) && o.status === 'cached') {
      v.state = 'input';
      v.detail = 'input, from the cache as locked';
      continue;
    }
    if (o.status !== 'ran' && o.status !== 'cached') {
      v.state = 'failed';
      v.detail = `${o.status === 'skipped' ? 'not recomputed' : o.status}: ${o.reason}`;
      continue;
    }
    if (!entry) {
      v.state = 'unlocked';
      v.detail = 'not in the lock (run `compress run` and commit the lock)';
      continue;
    }
    const now = o.outputs ?? {};
    for (const [f, d] of Object.entries(entry.outputs ?? {})) {
      if (!(f in now)) v.files.missing.push(f);
      else if (now[f] !== d) v.files.changed.push(f);
    }
    for (const f of Object.keys(now)) if (!(f in (entry.outputs ?? {}))) v.files.extra.push(f);
    const m = lockMetrics(o.metrics);
    const locked = entry.metrics ?? {};
    for (const name of [...new Set([...Object.keys(locked), ...Object.keys(m)])].sort()) {
      if (locked[name] !== m[name]) v.metrics.push({ name, locked: locked[name], now: m[name] });
    }
    const badInputs = stage.needs.filter((n) => verdicts.get(n) && verdicts.get(n)!.state !== 'ok' && verdicts.get(n)!.state !== 'input');
    const same = !v.files.changed.length && !v.files.missing.length && !v.files.extra.length && !v.metrics.length;
    if (o.key !== entry.key && !badInputs.length) {
      v.state = 'stale';
      v.detail = 'its key differs from the lock: the recipe, data, engine or code changed since the lock was written (run `compress run` and commit the lock)';
    } else if (!same) {
      v.state = 'differs';
      if (badInputs.length) v.detail = `its input ${badInputs.map((n) => `'${n}'`).join(', ')} changed`;
    }
  }
  const stages = [...verdicts.values()];
  // Without --only the lock is checked as a whole: an entry for a stage the recipe lacks is stale too.
  if (!onlyMode) {
    for (const [id, e] of Object.entries(lock.stages)) {
      if (!recipe.stageById.has(id)) stages.push({ id, uses: e.uses, state: 'stale', files: { changed: [], missing: [], extra: [] }, metrics: [], detail: 'in the lock but not in the recipe' });
    }
  }
  const interrupted = (Object.values(SIGNAL_EXIT) as number[]).includes(s.exitCode);
  const exitCode = interrupted ? s.exitCode : stages.some((v) => MISMATCH.includes(v.state)) ? EXIT.usage : stages.some((v) => v.state === 'failed') ? EXIT.stageFailed : EXIT.ok;
  return { recipe: s.recipe, lock: lockPath, engine: s.engine, lockEngine: lock.engine, stages, exitCode };
}

function fmtNum(v: number | undefined): string {
  return v === undefined ? 'none' : String(v);
}

/** One line a stage on stdout ("ok", "differs: <files>", ...); the verdict on stderr when not ok. */
function print(r: VerifyResult, quiet: boolean): void {
  const out = (l: string) => process.stdout.write(l + '\n');
  const err = (l: string) => process.stderr.write(l + '\n');
  const width = Math.max(16, ...r.stages.map((v) => v.id.length + 1));
  const bad = r.stages.filter((v) => v.state !== 'ok' && v.state !== 'input');
  if (r.engine !== r.lockEngine) err(`note: the lock was written with engine ${r.lockEngine}; this verify ran ${r.engine} (choose it with --backend)`);
  for (const v of r.stages) {
    if (quiet && (v.state === 'ok' || v.state === 'input')) continue;
    const parts: string[] = [];
    if (v.files.changed.length) parts.push(v.files.changed.join(', '));
    if (v.files.missing.length) parts.push(`not produced: ${v.files.missing.join(', ')}`);
    if (v.files.extra.length) parts.push(`not in the lock: ${v.files.extra.join(', ')}`);
    if (v.metrics.length) parts.push(`metrics ${v.metrics.map((m) => `${m.name} ${fmtNum(m.locked)} -> ${fmtNum(m.now)}`).join(', ')}`);
    let line: string;
    if (v.state === 'ok') line = 'ok';
    else if (v.state === 'input') line = `(${v.detail})`;
    else if (v.state === 'differs') line = `differs: ${parts.join('; ') || 'outputs'}${v.detail ? ` (${v.detail})` : ''}`;
    else line = `${v.state === 'unlocked' ? 'differs' : v.state}: ${v.detail}${parts.length ? `; ${parts.join('; ')}` : ''}`;
    out(`  ${v.id.padEnd(width)} ${line}`);
  }
  const checked = r.stages.filter((v) => v.state !== 'input').length;
  if (r.keptDir) err(`recomputed outputs kept in ${r.keptDir}`);
  if (r.exitCode === EXIT.ok) {
    if (!quiet) out(`verify: ${checked} stage${checked === 1 ? '' : 's'} recomputed, all match ${r.lock}`);
    return;
  }
  const differ = bad.filter((v) => MISMATCH.includes(v.state));
  if (differ.length) err(`error: verify: ${differ.length} of ${checked} stage${checked === 1 ? '' : 's'} differ${differ.length === 1 ? 's' : ''} from ${r.lock}: ${differ.map((v) => v.id).join(', ')}`);
  const failed = bad.filter((v) => v.state === 'failed');
  if (failed.length) err(`error: verify: ${failed.map((v) => `'${v.id}'`).join(', ')} could not be recomputed`);
}
