import { hostname } from 'node:os';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pidAlive } from './store.js';

/**
 * An exclusive lock between processes: a file created with O_EXCL holding `pid@host`. A lock whose
 * process on this host is gone (killed run) is stale and taken over.
 */
export async function acquireLock(path: string, opts: { pollMs?: number; onWait?: (holder: string) => void } = {}): Promise<() => Promise<void>> {
  await mkdir(dirname(path), { recursive: true });
  const me = `${process.pid}@${hostname()}`;
  let warned = false;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(me);
      await fh.close();
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
    try {
      holder = await readFile(path, 'utf8');
    } catch {
      continue; // released between our attempts
    }
    const [pid, host] = holder.split('@');
    if (holder === '' || (host === hostname() && !pidAlive(Number(pid)))) {
      // Stale: the process that held it is gone. Remove only if unchanged since we read it.
      try {
        if ((await readFile(path, 'utf8')) === holder) await rm(path, { force: true });
      } catch {
        // Someone else removed it.
      }
      continue;
    }
    if (!warned) {
      opts.onWait?.(holder);
      warned = true;
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
  }
}
