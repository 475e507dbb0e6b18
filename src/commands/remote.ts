import { relative } from 'node:path';
import { CacheCorruptError, CacheStore, type RunRecord } from '../cache/store.js';
import { RemoteCache } from '../cache/remote.js';
import { resolveRemote, type RemoteFlags } from '../cache/remote-config.js';
import { UsageError } from '../recipe/errors.js';
import { cacheDirFor } from '../run/execute.js';
import { lockPathFor, readLock, type LockFile } from '../run/lockfile.js';
import { EXIT } from '../exit-codes.js';
import { openRecipe, type RecipeFlags } from './common.js';

export interface CacheRemoteFlags extends RecipeFlags {
  cacheDir?: string;
  remote?: string;
  push?: boolean;
  quiet?: boolean;
}

const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);

/** The recipe, its lock, the local store and the remote a `cache push|pull` works with. */
function open(file: string | undefined, flags: CacheRemoteFlags, remoteFlags: RemoteFlags, command: 'push' | 'pull') {
  const recipe = openRecipe(file, flags);
  const lockPath = lockPathFor(recipe.file);
  const lock = readLock(lockPath);
  if (!lock) throw new UsageError(`no lock file ${relative('.', lockPath) || lockPath}: \`cache push|pull\` move the entries a lock names; run \`compress run\` first`);
  const settings = resolveRemote(recipe.cache, remoteFlags);
  if (!settings) throw new UsageError('no remote cache: pass --remote s3://bucket/prefix, set COMPRESS_REMOTE, or set cache.remote in the recipe');
  const local = new CacheStore(cacheDirFor(recipe, flags.cacheDir));
  return { recipe, lock, local, remote: new RemoteCache(settings, { onWarning: warn, whenDown: `cache ${command} stopped (exit 1)` }) };
}

function lockedKeys(lock: LockFile): Array<{ id: string; key: string }> {
  return Object.entries(lock.stages).map(([id, e]) => ({ id, key: e.key }));
}

/** `compress cache push`: uploads the local entries the lock names (objects first, record last). */
export async function cachePush(file: string | undefined, flags: CacheRemoteFlags): Promise<number> {
  const { lock, local, remote } = open(file, flags, { remote: flags.remote, push: flags.push }, 'push');
  try {
    if (!remote.settings.push) throw new UsageError(`remote ${remote.settings.url} is read-only here: ${remote.settings.readOnlyReason}`);
    let pushed = 0;
    const absent: string[] = [];
    for (const { id, key } of lockedKeys(lock)) {
      let rec: RunRecord | undefined;
      try {
        rec = await local.getRecord(key);
      } catch (e) {
        if (!(e instanceof CacheCorruptError)) throw e;
      }
      if (!rec || !(await local.hasObjects(rec))) {
        absent.push(id);
        continue;
      }
      if (!(await remote.push(rec, local))) break;
      pushed++;
    }
    if (remote.unavailable) return EXIT.stageFailed;
    if (absent.length) warn(`not in the local cache (not pushed): ${absent.join(', ')}`);
    if (!flags.quiet) process.stdout.write(`pushed ${pushed} entr${pushed === 1 ? 'y' : 'ies'} to ${remote.settings.url}\n`);
    return EXIT.ok;
  } finally {
    remote.close();
  }
}

/** `compress cache pull`: fetches the entries the lock names into the local cache, verifying every digest. */
export async function cachePull(file: string | undefined, flags: CacheRemoteFlags): Promise<number> {
  const { lock, local, remote } = open(file, flags, { remote: flags.remote, push: false }, 'pull');
  try {
    let pulled = 0;
    let present = 0;
    const missing: string[] = [];
    const refused: string[] = [];
    for (const { id, key } of lockedKeys(lock)) {
      const have = await local.getRecord(key).catch(() => undefined);
      if (have && (await local.hasObjects(have))) {
        present++;
        continue;
      }
      const r = await remote.pull(key, local, id);
      if (remote.unavailable) return EXIT.stageFailed;
      if (r.record) pulled++;
      else if (r.refused) refused.push(id);
      else missing.push(id);
    }
    if (missing.length) warn(`not in ${remote.settings.url}: ${missing.join(', ')}`);
    if (!flags.quiet) process.stdout.write(`pulled ${pulled} entr${pulled === 1 ? 'y' : 'ies'} from ${remote.settings.url} (${present} already local${refused.length ? `, ${refused.length} refused: ${refused.join(', ')}` : ''})\n`);
    return refused.length ? EXIT.stageFailed : EXIT.ok;
  } finally {
    remote.close();
  }
}
