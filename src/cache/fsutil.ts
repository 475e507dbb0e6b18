import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { open, rename, mkdir, readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Crash-safety test hooks. Inert unless one of these environment variables is set (they are read once,
 * when this module loads; unset, `checkpoint` is an empty function):
 *
 * - `COMPRESS_TEST_KILL_AT=<event>:<n>`: the process SIGKILLs itself the n-th time it reaches the
 *   checkpoint named `<event>` (as a power cut or the OOM killer would stop it there).
 * - `COMPRESS_TEST_FAIL_AT=<event>:<n>[:<CODE>]`: from the n-th time on, the write at checkpoint
 *   `<event>` fails with errno CODE (default ENOSPC), as on a full disk. Only write checkpoints
 *   (`writeCheckpoint`) fail; `<event>` may be `write`, which every write checkpoint also counts as.
 * - `COMPRESS_TEST_WAIT_AT=<event>:<n>:<file>`: at the n-th `<event>` creates `<file>.reached` and blocks
 *   until `<file>` exists (a test does something to the world, e.g. stops a server, or makes a race
 *   between two processes happen on purpose, then lets it go on: explicit synchronisation, no time window).
 * - `COMPRESS_TEST_TRACE=<file>`: appends the name of every checkpoint reached to <file>, one a line
 *   (tests pick kill points from the trace of an uninterrupted run).
 *
 * Checkpoint names are `<area>:<step>` (store:object-synced, lockfile:written, run:progress:<stage>, ...).
 */
interface Hook {
  event: string;
  n: number;
  arg?: string;
}

function parseHook(v: string | undefined): Hook | undefined {
  if (!v) return undefined;
  const m = /^(.+?):(\d+)(?::([^:]+))?$/.exec(v);
  if (!m) throw new Error(`invalid test hook '${v}' (expected <event>:<n>[:<arg>])`);
  return { event: m[1], n: Number(m[2]), arg: m[3] };
}

const KILL = parseHook(process.env.COMPRESS_TEST_KILL_AT);
const FAIL = parseHook(process.env.COMPRESS_TEST_FAIL_AT);
const WAIT = parseWait(process.env.COMPRESS_TEST_WAIT_AT);
const TRACE = process.env.COMPRESS_TEST_TRACE;
const counts = new Map<string, number>();

/** `<event>:<n>:<file>`; the file is a path, so split at the first two ':' after the event name. */
function parseWait(v: string | undefined): Hook | undefined {
  if (!v) return undefined;
  const m = /^(.+?):(\d+):(.+)$/.exec(v);
  if (!m) throw new Error(`invalid test hook '${v}' (expected <event>:<n>:<file>)`);
  return { event: m[1], n: Number(m[2]), arg: m[3] };
}

function waitForFile(file: string): void {
  writeFileSync(`${file}.reached`, String(process.pid));
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (!existsSync(file)) Atomics.wait(cell, 0, 0, 20);
}

function count(event: string): number {
  const n = (counts.get(event) ?? 0) + 1;
  counts.set(event, n);
  return n;
}

function reach(event: string): void {
  if (TRACE) appendFileSync(TRACE, event + '\n');
  const n = count(event);
  if (WAIT && WAIT.event === event && WAIT.n === n) waitForFile(WAIT.arg!);
  if (KILL && KILL.event === event && KILL.n === n) process.kill(process.pid, 'SIGKILL');
}

/** A named point of the run where a crash test may kill the process. Free when no hook is set. */
export const checkpoint: (event: string) => void = KILL || WAIT || TRACE ? reach : () => undefined;

/** A checkpoint just before bytes are written to disk: the full-disk hook can make the write fail here. */
export const writeCheckpoint: (event: string) => void =
  KILL || WAIT || TRACE || FAIL
    ? (event) => {
        reach(event);
        if (!FAIL) return;
        const n = FAIL.event === 'write' ? count('write') : FAIL.event === event ? counts.get(event)! : 0;
        if (n > 0 && n >= FAIL.n) {
          const code = FAIL.arg ?? 'ENOSPC';
          const err = new Error(`${code}: ${code === 'ENOSPC' ? 'no space left on device' : 'injected failure'}, write (test hook at ${event})`) as NodeJS.ErrnoException;
          err.code = code;
          throw err;
        }
      }
    : () => undefined;

/**
 * Writes a file so readers see the old content or the new, never a part: temp file, fsync, rename.
 * The temp file is `<tmpDir>/atomic-<pid>-<hex>` when `tmpDir` is given (the cache's tmp dir, swept of
 * dead processes' files), else `.<name>.<pid>-<hex>.tmp` beside the file (see `sweepAtomicTemps`):
 * either way what a killed writer leaves is found and removed, never mistaken for content.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, event = 'atomic', opts: { tmpDir?: string } = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  if (opts.tmpDir) await mkdir(opts.tmpDir, { recursive: true });
  const tmp = opts.tmpDir ? join(opts.tmpDir, `atomic-${tag}`) : join(dirname(path), `.${basename(path)}.${tag}.tmp`);
  try {
    const fh = await open(tmp, 'w');
    try {
      checkpoint(`${event}:tmp-open`);
      writeCheckpoint(`${event}:write`);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    checkpoint(`${event}:tmp-synced`);
    await rename(tmp, path);
  } catch (e) {
    // A failed write (full disk) must not leave its partial temp file behind.
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  checkpoint(`${event}:renamed`);
}

/** Removes the temp files of `writeFileAtomic(join(dir, name))` calls whose process no longer runs. */
export async function sweepAtomicTemps(dir: string, name: string): Promise<number> {
  let n = 0;
  const prefix = `.${name}.`;
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    const m = /^(\d+)-[0-9a-f]{8}\.tmp$/.exec(f.startsWith(prefix) ? f.slice(prefix.length) : '');
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) {
      await rm(join(dir, f), { force: true }).catch(() => undefined);
      n++;
    }
  }
  return n;
}

/**
 * Whether a process of this host runs with that pid. A zombie (exited, not yet reaped by its parent:
 * state Z in /proc/<pid>/stat on Linux) still answers kill(pid, 0) but holds nothing: it counts as dead,
 * so the locks and temp dirs of a killed run are recovered.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !isZombie(pid);
}

/** Linux: the state field of /proc/<pid>/stat (after the parenthesised command name) is Z. */
export function isZombie(pid: number, statText?: string): boolean {
  let text = statText;
  if (text === undefined) {
    try {
      text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return false; // no /proc (macOS, Windows), or the process is gone
    }
  }
  return /\)\s+Z\b/.test(text.slice(text.lastIndexOf(')')));
}

/** Describes a filesystem failure in words a user acts on (full disk, read-only, permissions), naming the path. */
export function describeFsError(e: unknown, what: string): string {
  const err = e as NodeJS.ErrnoException;
  const code = err?.code;
  const hint =
    code === 'ENOSPC'
      ? 'the disk is full'
      : code === 'EROFS'
        ? 'the file system is read-only'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code === 'EDQUOT'
            ? 'disk quota exceeded'
            : code === 'ENOTDIR'
              ? 'a parent of the path is not a directory'
              : code === 'EEXIST'
                ? 'a file is in the way'
                : err?.message ?? String(e);
  const at = err?.path && !what.includes(err.path) ? ` (${err.path})` : '';
  return `${what}: ${hint}${at}`;
}

/** Errors of the file system itself (not of a stage's logic): a disk or permission problem to report plainly. */
export function isFsError(e: unknown): boolean {
  return ['ENOSPC', 'EROFS', 'EACCES', 'EPERM', 'EDQUOT', 'ENOTDIR', 'EIO', 'EMFILE', 'ENFILE'].includes((e as NodeJS.ErrnoException)?.code ?? '');
}
