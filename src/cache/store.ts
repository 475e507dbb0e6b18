import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, open, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, relative, sep } from 'node:path';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { canonicalJson, hashFile, hashJson, sha256 } from './hash.js';
import { checkpoint, describeFsError, pidAlive, writeCheckpoint, writeFileAtomic } from './fsutil.js';

export { pidAlive };
import { acquireLock } from './proc-lock.js';
import { setOwn } from '../util/own.js';
import { CacheBusyError } from '../run/errors.js';

export interface FileEntry {
  sha256: string;
  size: number;
}

/** Output files of a stage, by path relative to its output directory ('/'-separated). */
export type Manifest = Record<string, FileEntry>;

export interface RunRecord {
  key: string;
  /** The inputs the key was computed from, kept so `status` can say what changed. */
  keyInputs: Record<string, unknown>;
  stageKind: string;
  /** The stage id that produced it (informational: ids are not part of the key). */
  stageId: string;
  outputs: Manifest;
  /** Digest of the outputs (over the manifest): what downstream keys are computed from. */
  outputsDigest: string;
  metrics: Record<string, unknown>;
  createdAt: string;
  durationMs: number;
  /** sha256 of the record without this field: a damaged record is detected, not trusted. */
  checksum?: string;
}

export class CacheCorruptError extends Error {
  constructor(
    message: string,
    readonly key: string,
  ) {
    super(message);
    this.name = 'CacheCorruptError';
  }
}

export class CacheWriteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheWriteError';
  }
}

export class CacheReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheReadError';
  }
}

export function manifestDigest(m: Manifest): string {
  return hashJson(m);
}

/** A record's text checked against its checksum, key and manifest digest (local or remote copy alike). */
export function parseRecord(text: string, key: string): RunRecord {
  let rec: RunRecord;
  try {
    rec = JSON.parse(text);
  } catch {
    throw new CacheCorruptError(`cache record ${key.slice(0, 12)} is not valid JSON`, key);
  }
  if (!rec || typeof rec !== 'object') throw new CacheCorruptError(`cache record ${key.slice(0, 12)} is not a record`, key);
  const { checksum, ...rest } = rec;
  if (!checksum || hashJson(rest) !== checksum || rec.key !== key || !rec.outputs || manifestDigest(rec.outputs) !== rec.outputsDigest) {
    throw new CacheCorruptError(`cache record ${key.slice(0, 12)} fails its checksum`, key);
  }
  return rec;
}

/**
 * A content-addressed store: `objects/ab/<sha256>` hold file contents, `runs/ab/<key>.json` map a
 * stage key to its outputs and metrics. Everything is written to a temp name and renamed, so a
 * crash leaves either the whole entry or none; everything read is verified against its digest.
 */
/** EISDIR / ENOTDIR: a cache entry of the wrong file type, which is damage to heal, never fatal. */
function wrongType(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EISDIR' || code === 'ENOTDIR';
}

export class CacheStore {
  constructor(
    readonly root: string,
    /** Told when a lock left by a process that no longer runs (a killed run) is taken over. */
    private readonly opts: { onStaleLock?: (path: string, holder: string) => void } = {},
  ) {}

  get tmpDir(): string {
    return join(this.root, 'tmp');
  }

  /**
   * Notes that the lock file `lockPath` (absolute) is written from runs on this cache, once per lock file:
   * `cache gc` of one recipe keeps what every noted lock names, so recipes in other directories sharing the cache
   * (COMPRESS_CACHE_DIR, --cache-dir) keep their entries.
   */
  async noteLockUser(lockPath: string): Promise<void> {
    const file = join(this.root, 'users', `${createHash('sha256').update(lockPath).digest('hex').slice(0, 32)}.json`);
    if (await stat(file).then(() => true, () => false)) return;
    await writeFileAtomic(file, JSON.stringify({ lock: lockPath }), 'store:user', { tmpDir: this.tmpDir });
  }

  /** The lock files noted by noteLockUser that still exist. */
  async lockUsers(): Promise<string[]> {
    const dir = join(this.root, 'users');
    const out: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const lock = await readFile(join(dir, name), 'utf8').then((t) => (JSON.parse(t) as { lock?: unknown }).lock, () => undefined);
      if (typeof lock === 'string' && (await stat(lock).then((st) => st.isFile(), () => false))) out.push(lock);
    }
    return out.sort();
  }

  objectPath(digest: string): string {
    return join(this.root, 'objects', digest.slice(0, 2), digest);
  }

  recordPath(key: string): string {
    return join(this.root, 'runs', key.slice(0, 2), `${key}.json`);
  }

  /** A fresh private directory for a stage to write into (under the cache, so renames stay on one disk). */
  async makeWorkDir(label: string): Promise<string> {
    const dir = join(this.tmpDir, `${label.replace(/[^A-Za-z0-9_-]/g, '_')}-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await mkdir(dir, { recursive: true });
    } catch (e) {
      throw new CacheWriteError(describeFsError(e, `cannot create a work directory in the cache ${this.root}`));
    }
    return dir;
  }

  /** Moves every file of `dir` into the object store and returns the manifest. */
  async putDir(dir: string): Promise<Manifest> {
    const manifest: Manifest = {};
    for (const file of await listFiles(dir)) {
      const rel = relative(dir, file).split(sep).join('/');
      const entry = await hashFile(file);
      setOwn(manifest, rel, entry);
      await this.adoptObject(file, entry, rel);
    }
    return sortManifest(manifest);
  }

  /**
   * Moves a file whose digest the caller has just computed (from putDir's hashing, or while a verified
   * download was written) into the object store under that digest. An object already there is kept
   * only if its content is right: a damaged one is replaced. `rel` names the file in messages.
   */
  async adoptObject(file: string, entry: FileEntry, rel: string): Promise<void> {
    const dest = this.objectPath(entry.sha256);
    try {
      if ((await isValidObject(dest, entry.size)) && (await hashFile(dest)).sha256 === entry.sha256) return;
      // Something of the wrong type (a directory) where the object goes is replaced, not renamed onto.
      if ((await stat(dest).catch(() => undefined))?.isDirectory()) await rm(dest, { recursive: true, force: true });
      writeCheckpoint('store:object');
      await mkdir(dirname(dest), { recursive: true });
      // fsync the content before it gets its final name.
      const fh = await open(file, 'r+');
      await fh.sync();
      await fh.close();
      checkpoint('store:object-synced');
      await rename(file, dest);
      checkpoint('store:object-renamed');
    } catch (e) {
      throw new CacheWriteError(describeFsError(e, `cannot store '${rel}' in the cache ${this.root}`));
    }
  }

  async putRecord(rec: Omit<RunRecord, 'checksum'>): Promise<RunRecord> {
    const full: RunRecord = { ...rec, checksum: hashJson(rec) };
    const path = this.recordPath(rec.key);
    try {
      await writeFileAtomic(path, canonicalJson(full), 'store:record', { tmpDir: this.tmpDir });
    } catch (e) {
      throw new CacheWriteError(describeFsError(e, `cannot write the cache record ${path}`));
    }
    return full;
  }

  /** The record for a key: undefined when absent; CacheCorruptError when damaged. */
  async getRecord(key: string): Promise<RunRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.recordPath(key), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      // A record replaced by a directory is damaged like any other: removed, so the recomputed one can take its place.
      if (wrongType(e)) {
        await rm(this.recordPath(key), { recursive: true, force: true }).catch(() => undefined);
        throw new CacheCorruptError(`cache record ${key.slice(0, 12)} is not a file`, key);
      }
      throw new CacheReadError(describeFsError(e, `cannot read the cache ${this.root}`));
    }
    return parseRecord(text, key);
  }

  /** Checks that every object of a record exists with the right size (cheap); content is checked on copy. */
  async hasObjects(rec: RunRecord): Promise<boolean> {
    for (const e of Object.values(rec.outputs)) if (!(await isValidObject(this.objectPath(e.sha256), e.size))) return false;
    return true;
  }

  /**
   * Copies a record's files into `dest`, hashing as it copies; a file whose content does not match its
   * digest is removed from the store and reported (the stage is then recomputed). The copy is built
   * beside `dest` and swapped in by renames, under a lock (two runs may materialise the same stage):
   * `dest` is always a complete earlier or complete new copy. A `dest` that already holds exactly these
   * files is left alone, so a concurrent run's stage reading it as input is never disturbed.
   */
  async materialize(rec: RunRecord, dest: string): Promise<void> {
    const parent = dirname(dest);
    try {
      await mkdir(parent, { recursive: true });
    } catch (e) {
      throw new CacheWriteError(describeFsError(e, `cannot create the output directory ${parent}`));
    }
    let release: () => Promise<void>;
    try {
      const lockPath = join(parent, `.${basename(dest)}.lock`);
      release = await acquireLock(lockPath, { onStale: (holder) => this.opts.onStaleLock?.(lockPath, holder) });
    } catch (e) {
      throw new CacheWriteError(describeFsError(e, `cannot write to the output directory ${parent}`));
    }
    try {
      if (await dirHolds(dest, rec.outputs)) {
        // The outputs are in place, but the store must still hold them intact: a damaged object is
        // reported (and the stage recomputed) now rather than when some other run needs it.
        for (const [rel, e] of Object.entries(rec.outputs)) {
          const src = this.objectPath(e.sha256);
          const got = await hashFile(src).catch(() => undefined);
          if (got?.sha256 === e.sha256) continue;
          await rm(src, { force: true });
          throw new CacheCorruptError(`cache object for '${rel}' of ${rec.stageId} is ${got ? 'corrupt' : 'missing'}`, rec.key);
        }
        return;
      }
      const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
      const staging = `${dest}.${tag}.tmp`;
      const old = `${dest}.${tag}.old`;
      try {
        await mkdir(staging, { recursive: true });
        for (const [rel, e] of Object.entries(rec.outputs)) {
          const src = this.objectPath(e.sha256);
          const out = join(staging, ...rel.split('/'));
          await mkdir(dirname(out), { recursive: true });
          let got: string;
          try {
            writeCheckpoint('materialize:copy');
            got = await copyHashing(src, out);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (err as NodeJS.ErrnoException).path === src) throw new CacheCorruptError(`cache object for '${rel}' of ${rec.stageId} is missing`, rec.key);
            if (wrongType(err) && !(await stat(src).catch(() => undefined))?.isFile()) {
              await rm(src, { recursive: true, force: true }).catch(() => undefined);
              throw new CacheCorruptError(`cache object for '${rel}' of ${rec.stageId} is not a file`, rec.key);
            }
            throw err;
          }
          checkpoint('materialize:copied');
          if (got !== e.sha256) {
            await rm(src, { force: true });
            throw new CacheCorruptError(`cache object for '${rel}' of ${rec.stageId} is corrupt (digest ${got.slice(0, 12)}, expected ${e.sha256.slice(0, 12)})`, rec.key);
          }
        }
        await rename(dest, old).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
        checkpoint('materialize:old-moved');
        await rename(staging, dest);
        checkpoint('materialize:swapped');
      } catch (e) {
        await rm(staging, { recursive: true, force: true }).catch(() => undefined);
        if (e instanceof CacheCorruptError) throw e;
        throw new CacheWriteError(describeFsError(e, `cannot write the outputs of '${rec.stageId}' to ${dest}`));
      } finally {
        await rm(old, { recursive: true, force: true }).catch(() => undefined);
      }
    } finally {
      await release();
    }
  }

  async removeRecord(key: string): Promise<void> {
    await rm(this.recordPath(key), { recursive: true, force: true });
  }

  async listRecords(): Promise<RunRecord[]> {
    const out: RunRecord[] = [];
    const runs = join(this.root, 'runs');
    for (const f of await listFiles(runs).catch(() => [] as string[])) {
      if (!f.endsWith('.json')) continue;
      const key = f.slice(f.lastIndexOf(sep) + 1, -5);
      try {
        const r = await this.getRecord(key);
        if (r) out.push(r);
      } catch {
        // Damaged records are listed by `cache ls` as such via verify; skip here.
      }
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Removes records not in `keep` and objects no kept record references. Returns counts and bytes freed. */
  async gc(keep: Set<string>): Promise<{ records: number; objects: number; bytes: number; damaged: number }> {
    let records = 0;
    let damaged = await this.removeWrongTypes();
    const live = new Set<string>();
    for (const r of await this.listRecords()) {
      if (keep.has(r.key) && (await this.hasObjects(r))) for (const e of Object.values(r.outputs)) live.add(e.sha256);
      else if (keep.has(r.key)) {
        // Kept but incomplete (an object missing or damaged): useless, removed so the stage is recomputed.
        await this.removeRecord(r.key);
        damaged++;
      } else {
        await this.removeRecord(r.key);
        records++;
      }
    }
    let objects = 0;
    let bytes = 0;
    for (const f of await listFiles(join(this.root, 'objects')).catch(() => [] as string[])) {
      const digest = f.slice(f.lastIndexOf(sep) + 1);
      if (live.has(digest)) continue;
      bytes += (await stat(f)).size;
      await rm(f, { force: true });
      objects++;
    }
    await rm(this.tmpDir, { recursive: true, force: true });
    return { records, objects, bytes, damaged };
  }

  /** Removes what is not a file where a record or object file belongs (a directory put there): damage. */
  private async removeWrongTypes(): Promise<number> {
    let n = 0;
    for (const area of ['runs', 'objects']) {
      for (const shard of await readdir(join(this.root, area)).catch(() => [] as string[])) {
        for (const ent of await readdir(join(this.root, area, shard), { withFileTypes: true }).catch(() => [])) {
          if (ent.isFile()) continue;
          await rm(join(this.root, area, shard, ent.name), { recursive: true, force: true });
          n++;
        }
      }
    }
    return n;
  }

  async clean(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }

  private get gcLock(): string {
    return join(this.root, 'locks', 'gc.lock');
  }

  /**
   * Registers a run as using this cache (a file in `active/` naming its process, written under the
   * cache's gc lock) until the returned function is called; gc and clean refuse while one is live.
   */
  async registerRun(): Promise<() => Promise<void>> {
    const release = await acquireLock(this.gcLock, { onStale: (holder) => this.opts.onStaleLock?.(this.gcLock, holder) });
    const marker = join(this.root, 'active', `${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await mkdir(dirname(marker), { recursive: true });
      await writeFile(marker, `${process.pid}@${hostname()}`);
    } finally {
      await release();
    }
    return () => rm(marker, { force: true });
  }

  /**
   * Runs `f` (gc, clean) holding the cache's gc lock, so no run starts meanwhile; refuses with
   * CacheBusyError while a live run is registered (markers of processes that no longer run are removed).
   */
  async exclusive<T>(what: string, f: () => Promise<T>): Promise<T> {
    const release = await acquireLock(this.gcLock);
    try {
      const live = await this.liveRuns();
      if (live.length) throw new CacheBusyError(`cannot ${what} ${this.root} while a run uses it (${live.join(', ')}); try again when it has finished`);
      return await f();
    } finally {
      await release();
    }
  }

  /** `pid N` of each registered run still running (on another host: counted as running). */
  private async liveRuns(): Promise<string[]> {
    const dir = join(this.root, 'active');
    const live: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const holder = await readFile(join(dir, name), 'utf8').catch(() => '');
      const [pid, host] = holder.split('@');
      if (host === hostname() && !pidAlive(Number(pid))) await rm(join(dir, name), { force: true });
      else if (holder) live.push(host === hostname() ? `pid ${pid}` : `pid ${pid} on ${host}`);
    }
    return live;
  }

  /** Removes work directories left by processes that no longer run (killed runs). */
  async sweepTmp(): Promise<number> {
    let n = 0;
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const m = /-(\d+)-[0-9a-f]{8}$/.exec(name);
      if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) {
        await rm(join(this.tmpDir, name), { recursive: true, force: true }).catch(() => undefined);
        n++;
      }
    }
    return n;
  }

  /**
   * Checks every record (its checksum) and every object a record names (its content digest). What a
   * run would read as valid is exactly what passes here; the problems are listed, nothing is changed.
   */
  async verify(): Promise<{ records: number; objects: number; problems: string[] }> {
    const problems: string[] = [];
    let records = 0;
    const seen = new Set<string>();
    for (const f of await listFiles(join(this.root, 'runs')).catch(() => [] as string[])) {
      const name = basename(f);
      if (!name.endsWith('.json')) {
        problems.push(`stray file in runs/: ${name}`);
        continue;
      }
      let rec: RunRecord | undefined;
      try {
        rec = await this.getRecord(name.slice(0, -5));
      } catch (e) {
        problems.push((e as Error).message);
        continue;
      }
      if (!rec) continue;
      records++;
      for (const [rel, e] of Object.entries(rec.outputs)) {
        if (seen.has(e.sha256)) continue;
        seen.add(e.sha256);
        const got = await hashFile(this.objectPath(e.sha256)).catch(() => undefined);
        if (!got) problems.push(`object of '${rel}' (${rec.stageId}) is missing`);
        else if (got.sha256 !== e.sha256 || got.size !== e.size) problems.push(`object of '${rel}' (${rec.stageId}) is corrupt`);
      }
    }
    return { records, objects: seen.size, problems };
  }
}

/**
 * Removes what a killed materialisation left beside the output directories (`<id>.<pid>-<hex>.tmp`
 * copies, `.old` directories and taken-over `.stale` locks of processes that no longer run).
 */
export async function sweepOutDir(outRoot: string): Promise<number> {
  let n = 0;
  for (const name of await readdir(outRoot).catch(() => [] as string[])) {
    const m = /\.(\d+)-[0-9a-f]{8}\.(tmp|old|stale)$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) {
      await rm(join(outRoot, name), { recursive: true, force: true }).catch(() => undefined);
      n++;
    }
  }
  return n;
}

/** Whether `dir` holds exactly the manifest's files with their content (and nothing else). */
async function dirHolds(dir: string, m: Manifest): Promise<boolean> {
  let files: string[];
  try {
    files = await listFiles(dir);
  } catch {
    return false;
  }
  if (files.length !== Object.keys(m).length) return false;
  for (const f of files) {
    const e = m[relative(dir, f).split(sep).join('/')];
    if (!e) return false;
    const got = await hashFile(f).catch(() => undefined);
    if (!got || got.size !== e.size || got.sha256 !== e.sha256) return false;
  }
  return true;
}

async function isValidObject(path: string, size: number): Promise<boolean> {
  try {
    return (await stat(path)).size === size;
  } catch {
    return false;
  }
}

async function copyHashing(src: string, dest: string): Promise<string> {
  const h = createHash('sha256');
  const tap = new Transform({
    transform(chunk, _enc, cb) {
      h.update(chunk);
      cb(null, chunk);
    },
  });
  await pipeline(createReadStream(src), tap, createWriteStream(dest));
  return h.digest('hex');
}

export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) out.push(...(await listFiles(p)));
    else if (ent.isFile()) out.push(p);
  }
  return out.sort();
}

function sortManifest(m: Manifest): Manifest {
  const out: Manifest = {};
  for (const k of Object.keys(m).sort()) setOwn(out, k, m[k]);
  return out;
}
