import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { checkpoint, pidAlive } from './fsutil.js';

/** An empty lock file (its creator died between creating and writing it) is stale after this long. */
const EMPTY_LOCK_STALE_MS = 5000;

export interface LockOptions {
  pollMs?: number;
  /** Called once when the lock is held by another live process and we start waiting. */
  onWait?: (holder: string) => void;
  /** Called when a lock left by a process that no longer runs is taken over. */
  onStale?: (holder: string) => void;
}

/**
 * An exclusive lock between processes: a file created with O_EXCL holding `pid@host`. A lock whose
 * process on this host is gone (killed run) is stale and taken over.
 */
export async function acquireLock(path: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  await mkdir(dirname(path), { recursive: true });
  const me = `${process.pid}@${hostname()}`;
  let warned = false;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(me);
      } finally {
        await fh.close();
      }
      checkpoint('lock:acquired');
      return async () => {
        try {
          if ((await readFile(path, 'utf8')) === me) await rm(path, { force: true });
        } catch {
          // Already gone.
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder = '';
    let age = 0;
    try {
      holder = await readFile(path, 'utf8');
      age = Date.now() - (await stat(path)).mtimeMs;
    } catch {
      continue; // released between our attempts
    }
    if (isStale(holder, age)) {
      await takeOver(path, holder, opts);
      continue;
    }
    if (!warned) {
      opts.onWait?.(holder);
      warned = true;
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
  }
}

function isStale(holder: string, age: number): boolean {
  const [pid, host] = holder.split('@');
  return holder === '' ? age > EMPTY_LOCK_STALE_MS : host === hostname() && !pidAlive(Number(pid));
}

/**
 * Removes a stale lock by renaming it away (only one of several processes doing this wins), then
 * makes sure what was moved is still the stale lock and not a live one created in between.
 */
async function takeOver(path: string, holder: string, opts: Pick<LockOptions, 'onStale'>): Promise<void> {
  const grave = `${path}.${process.pid}-${randomBytes(4).toString('hex')}.stale`;
  try {
    await rename(path, grave);
  } catch {
    return; // someone else removed it
  }
  const moved = await readFile(grave, 'utf8').catch(() => undefined);
  if (moved === holder) opts.onStale?.(holder || '(unknown process)');
  else await link(grave, path).catch(() => undefined); // a live lock: put it back
  await rm(grave, { force: true }).catch(() => undefined);
}

/**
 * Removes the lock at `path` if the process that holds it no longer runs (a killed run left it);
 * a live lock is left alone. Returns whether a stale lock was removed.
 */
export async function clearStaleLock(path: string, opts: Pick<LockOptions, 'onStale'> = {}): Promise<boolean> {
  let holder: string;
  let age: number;
  try {
    holder = await readFile(path, 'utf8');
    age = Date.now() - (await stat(path)).mtimeMs;
  } catch {
    return false;
  }
  if (!isStale(holder, age)) return false;
  let cleared = false;
  await takeOver(path, holder, { onStale: (h) => ((cleared = true), opts.onStale?.(h)) });
  return cleared;
}

/** `pid@host` of a lock's holder, in words. */
export function describeHolder(holder: string): string {
  const [pid, host] = holder.split('@');
  return host ? `process ${pid} on ${host}` : holder;
}
