import type { CacheStore, RunRecord } from '../cache/store.js';
import { checkpoint } from '../cache/fsutil.js';
import type { PullResult, RemoteCache } from '../cache/remote.js';
import type { RemoteSettings } from '../cache/remote-config.js';
import { timed } from '../util/timings.js';
import { LocalStageCache, type CacheLookup, type StageCache, type StageResult } from './stage-cache.js';

/** What the run did with the shared remote cache (no credentials: the SDK's chain holds those). */
export interface RemoteSummary {
  url: string;
  push: boolean;
  readOnlyReason?: string;
  /** Stages taken from the remote (verified) instead of computed. */
  hits: number;
  /** Entries uploaded by this run. */
  pushed: number;
  /** Set when the remote could not be reached and the run went on local-only. */
  unavailable?: string;
}

/**
 * The local store with the shared remote behind it: a key the local store lacks (or holds damaged) is
 * fetched from the remote, verified, into the local store; a stored stage is pushed after it is stored
 * locally. The remote never fails a stage: unreachable, it warns once and the run goes on local-only.
 *
 * The S3 client (the AWS SDK: about half a second of module loading) is loaded at the first stage the
 * local store cannot answer, so a run whose every stage is a local hit does not pay for it.
 *
 * A stage's key depends on its upstream outputs, so lookups along a chain of stages would be one
 * after the other; `prefetch` starts the pulls of the keys the lock names (a fresh clone's committed
 * lock) all at once, a few at a time, while the run digests its data. A lookup of a key being
 * prefetched waits for that pull instead of starting its own.
 */
export class RemoteStageCache implements StageCache {
  private readonly local: LocalStageCache;
  private client?: Promise<RemoteCache>;
  private opened?: RemoteCache;
  private hits = 0;
  private pushed = 0;
  /** Pulls started by prefetch, by key. */
  private readonly pulls = new Map<string, Promise<PullResult>>();

  constructor(
    readonly disk: CacheStore,
    private readonly settings: RemoteSettings,
    private readonly warn: (message: string) => void,
  ) {
    this.local = new LocalStageCache(disk);
  }

  /** The remote, its S3 client loaded on first use. */
  remote(): Promise<RemoteCache> {
    this.client ??= timed('load the S3 client', () => import('../cache/remote.js')).then(({ RemoteCache }) => (this.opened = new RemoteCache(this.settings, { onWarning: this.warn })));
    return this.client;
  }

  get root(): string {
    return this.local.root;
  }

  async lookup(key: string): Promise<CacheLookup> {
    const prefetched = this.pulls.get(key);
    this.pulls.delete(key);
    const here = prefetched ? {} : await this.local.lookup(key);
    if (here.record) return here;
    const pulled = await (prefetched ?? (await this.remote()).pull(key, this.disk));
    if (pulled.refused) return { damaged: pulled.refused };
    if (!pulled.record) return prefetched ? this.local.lookup(key) : here;
    this.hits++;
    return { record: pulled.record, source: 'remote' };
  }

  /**
   * Starts pulling the keys the local store lacks, `parallel` at a time (the lock's keys: what this run
   * will most likely look up). Failures wait for the lookup of their key (or are dropped with the run).
   */
  prefetch(keys: string[], parallel = 4): void {
    const slot = limiter(parallel);
    for (const key of new Set(keys)) {
      if (this.pulls.has(key)) continue;
      const p = slot(async () => ((await this.local.lookup(key)).record ? {} : (await this.remote()).pull(key, this.disk)));
      p.catch(() => undefined);
      this.pulls.set(key, p);
    }
  }

  restore(record: RunRecord, outDir: string): Promise<void> {
    return this.local.restore(record, outDir);
  }

  workDir(label: string): Promise<string> {
    return this.local.workDir(label);
  }

  /** Stores locally, then uploads (objects first, record last); a failed push is a warning. */
  async store(result: StageResult, workDir: string): Promise<RunRecord> {
    const record = await this.local.store(result, workDir);
    try {
      if (await (await this.remote()).push(record, this.disk)) this.pushed++;
    } catch (e) {
      this.warn((e as Error).message);
    }
    checkpoint('remote:pushed');
    return record;
  }

  summary(): RemoteSummary {
    const s = this.settings;
    return { url: s.url, push: s.push, readOnlyReason: s.readOnlyReason, hits: this.hits, pushed: this.pushed, unavailable: this.opened?.unavailable };
  }

  /** Waits for prefetches nobody looked up, then closes the S3 client. */
  async close(): Promise<void> {
    await Promise.allSettled(this.pulls.values());
    this.opened?.close();
  }
}

/** Runs the functions given to it at most `n` at a time. */
function limiter(n: number): <T>(f: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (f) => {
    while (active >= n) await new Promise<void>((r) => waiting.push(r));
    active++;
    try {
      return await f();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}
