import { CacheStore } from '../cache/store.js';
import { cacheDirFor, stageStates } from '../run/execute.js';
import { readLock, lockPathFor, LOCK_HEADER } from '../run/lockfile.js';
import { openRecipe } from './common.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { resolve, join, basename, dirname, relative } from 'node:path';

function storeFor(file: string | undefined, flags: { cacheDir?: string }): CacheStore {
  if (flags.cacheDir) return new CacheStore(resolve(flags.cacheDir));
  if (file || existsSync('compress.config.yaml')) return new CacheStore(cacheDirFor(openRecipe(file, {}), undefined));
  return new CacheStore(process.env.COMPRESS_CACHE_DIR ? resolve(process.env.COMPRESS_CACHE_DIR) : join(resolve('.'), '.compress', 'cache'));
}

export async function cacheLs(file: string | undefined, flags: { cacheDir?: string; json?: boolean }): Promise<number> {
  const store = storeFor(file, flags);
  const recs = await store.listRecords();
  if (flags.json) {
    process.stdout.write(JSON.stringify(recs.map((r) => ({ key: r.key, stage: r.stageId, uses: r.stageKind, createdAt: r.createdAt, bytes: Object.values(r.outputs).reduce((a, e) => a + e.size, 0) })), null, 2) + '\n');
    return 0;
  }
  for (const r of recs) {
    const bytes = Object.values(r.outputs).reduce((a, e) => a + e.size, 0);
    process.stdout.write(`${r.key.slice(0, 12)}  ${r.stageId.padEnd(16)} ${r.stageKind.padEnd(10)} ${(bytes / 1024).toFixed(1).padStart(9)} KiB  ${r.createdAt}\n`);
  }
  process.stdout.write(`${recs.length} entries in ${store.root}\n`);
  return 0;
}

/**
 * Keeps what the recipe's lock and current keys reference, and what the locks of the other recipes in its
 * directory reference (pipelines/a.yaml and pipelines/b.yaml share pipelines/.compress/cache); removes the rest.
 */
export async function cacheGc(file: string | undefined, flags: { cacheDir?: string }): Promise<number> {
  const recipe = openRecipe(file, {});
  const store = flags.cacheDir ? new CacheStore(resolve(flags.cacheDir)) : new CacheStore(cacheDirFor(recipe));
  const keep = new Set<string>();
  for (const s of await stageStates(recipe, flags)) if (s.key && s.state === 'cached') keep.add(s.key);
  const ownLock = lockPathFor(recipe.file);
  for (const e of Object.values(readLock(ownLock)?.stages ?? {})) keep.add(e.key);
  const others = otherLocks(ownLock);
  for (const lock of others) for (const e of Object.values(lock.stages)) if (typeof e?.key === 'string') keep.add(e.key);
  // Locks elsewhere written from runs on this cache (recipes in other directories sharing it).
  const sameDir = new Set([ownLock, ...others.map((l) => join(dirname(ownLock), l.name))].map((p) => resolve(p)));
  const users = (await store.lockUsers()).filter((p) => !sameDir.has(p));
  for (const p of users) for (const e of Object.values(readLock(p)?.stages ?? {})) if (typeof e?.key === 'string') keep.add(e.key);
  const r = await store.exclusive('garbage-collect', () => store.gc(keep));
  const named = [...others.map((l) => l.name), ...users.map((p) => relative(resolve('.'), p) || p)];
  const also = named.length ? ` (with those the other locks using this cache name: ${named.join(', ')})` : '';
  process.stdout.write(`removed ${r.records} entries and ${r.objects} objects (${(r.bytes / 1024).toFixed(1)} KiB); kept ${keep.size} entries${also}${r.damaged ? `; removed ${r.damaged} damaged (not a file, or missing objects: recomputed by the next run)` : ''}\n`);
  return 0;
}

/** The compress locks next to `ownLock` (other recipes of the same directory, which share its cache), parsed. */
function otherLocks(ownLock: string): Array<{ name: string; stages: Record<string, { key: string }> }> {
  const dir = resolve(ownLock, '..');
  const out: Array<{ name: string; stages: Record<string, { key: string }> }> = [];
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.lock') || name === basename(ownLock)) continue;
    let text = '';
    try {
      text = readFileSync(join(dir, name), 'utf8');
    } catch {
      continue;
    }
    const lock = text.startsWith(LOCK_HEADER) ? readLock(join(dir, name)) : undefined;
    if (lock) out.push({ name, stages: lock.stages });
  }
  return out;
}

export async function cacheClean(file: string | undefined, flags: { cacheDir?: string }): Promise<number> {
  const store = storeFor(file, flags);
  await store.exclusive('clean', () => store.clean());
  process.stdout.write(`removed ${store.root}\n`);
  return 0;
}
