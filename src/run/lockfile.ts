import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { checkpoint, describeFsError, writeFileAtomic } from '../cache/fsutil.js';
import { acquireLock } from '../cache/proc-lock.js';
import { setOwn } from '../util/own.js';

export interface LockStage {
  uses: string;
  key: string;
  outputsDigest: string;
  outputs: Record<string, string>;
  metrics: Record<string, number>;
}

export interface LockFile {
  lockfileVersion: 1;
  recipe: string;
  engine: string;
  stages: Record<string, LockStage>;
}

/** The first line of every lock compress writes (how `cache gc` tells a recipe's lock from yarn.lock). */
export const LOCK_HEADER = "# Written by compress: every stage's cache key, output digests and metrics. Commit it.";

/** `compress.config.yaml` locks to `compress.lock`; `pipelines/x.yaml` to `pipelines/x.lock` (as dvc.yaml/dvc.lock). */
export function lockPathFor(recipeFile: string): string {
  const name = basename(recipeFile).replace(/\.ya?ml$/, '');
  return join(dirname(recipeFile), `${name === 'compress.config' ? 'compress' : name}.lock`);
}

/**
 * Why a lock file that exists cannot be read (undefined when it is missing or reads): git's conflict markers
 * (two branches each updated the lock) named at their line, else the YAML error.
 */
export function unreadableLock(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : (e as Error).message;
  }
  if (readLock(path)) return undefined;
  const conflict = text.split('\n').findIndex((l) => /^(<{7}|={7}|>{7})( |$)/.test(l));
  if (conflict >= 0) return `it has git merge conflict markers (line ${conflict + 1}): run \`compress run\` to rewrite it from the merged recipe, then commit it`;
  try {
    parse(text);
  } catch (e) {
    return `${(e as Error).message.split('\n')[0].replace(/:$/, '')}: run \`compress run\` to rewrite it`;
  }
  return 'it has no stages: run `compress run` to rewrite it';
}

/**
 * Why `recipeFile` may not use the lock at `lockPath`: it is another recipe's (compress.yaml and
 * compress.config.yaml both lock to compress.lock; x.yaml and x.yml to x.lock) and that recipe is still
 * there. A lock whose recipe was renamed away is taken over.
 */
export function sharedLockProblem(lockPath: string, recipeFile: string): string | undefined {
  const owner = readLock(lockPath)?.recipe;
  const mine = basename(recipeFile);
  if (typeof owner !== 'string' || owner === mine || !existsSync(join(dirname(lockPath), owner))) return undefined;
  return `${lockPath} is the lock of ${owner}, which is next to ${mine}: two recipes cannot share one lock; rename one of them (x.yaml locks to x.lock)`;
}

export function readLock(path: string): LockFile | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const v = parse(text) as LockFile;
    return v && typeof v === 'object' && v.stages ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Numbers only, and no timings: the lock is for reviewing diffs, and wall-clock numbers would make
 * every re-run look like a change.
 */
export function lockMetrics(m: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(m).sort()) {
    const v = m[k];
    if (/(Seconds|Ms)$/.test(k)) continue;
    if (typeof v === 'number' && Number.isFinite(v)) setOwn(out, k, Number(v.toPrecision(6)));
  }
  return out;
}

/**
 * Merges this run's stages into the lock under an inter-process lock (two runs of one recipe must not
 * lose each other's entries), dropping stages the recipe no longer has. The file is replaced
 * atomically: a crash leaves the previous lock or the new one.
 */
export async function updateLock(
  path: string,
  recipe: string,
  engine: string,
  stageIds: string[],
  entries: Record<string, LockStage>,
  opts: { onStale?: (holder: string) => void; onWait?: (holder: string) => void } = {},
): Promise<LockFile> {
  let release: () => Promise<void>;
  try {
    release = await acquireLock(`${path}.writing`, opts);
  } catch (e) {
    throw new LockWriteError(describeFsError(e, `cannot write the lock file ${path}`));
  }
  try {
    checkpoint('lockfile:locked');
    const prev = readLock(path);
    checkpoint('lockfile:read');
    const stages: Record<string, LockStage> = {};
    for (const id of stageIds) {
      const e = entries[id] ?? prev?.stages[id];
      if (e) setOwn(stages, id, e);
    }
    const lock: LockFile = { lockfileVersion: 1, recipe, engine, stages };
    try {
      await writeFileAtomic(path, `${LOCK_HEADER}\n${stringify(lock, { lineWidth: 0 })}`, 'lockfile');
    } catch (e) {
      throw new LockWriteError(describeFsError(e, `cannot write the lock file ${path}`));
    }
    checkpoint('lockfile:written');
    return lock;
  } finally {
    await release();
  }
}

export class LockWriteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LockWriteError';
  }
}
