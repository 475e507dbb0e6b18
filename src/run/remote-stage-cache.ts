import type { CacheStore, RunRecord } from '../cache/store.js';
import { checkpoint } from '../cache/fsutil.js';
import { RemoteCache } from '../cache/remote.js';
import type { RemoteSettings } from '../cache/remote-config.js';
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
 */
export class RemoteStageCache implements StageCache {
  private readonly local: LocalStageCache;
  readonly remote: RemoteCache;
  private hits = 0;
  private pushed = 0;

  constructor(
    readonly disk: CacheStore,
    settings: RemoteSettings,
    private readonly warn: (message: string) => void,
  ) {
    this.local = new LocalStageCache(disk);
    this.remote = new RemoteCache(settings, { onWarning: warn });
  }

  get root(): string {
    return this.local.root;
  }

  async lookup(key: string): Promise<CacheLookup> {
    const here = await this.local.lookup(key);
    if (here.record) return here;
    const pulled = await this.remote.pull(key, this.disk);
    if (pulled.refused) return { damaged: pulled.refused };
    if (!pulled.record) return here;
    const fetched = await this.local.lookup(key);
    if (fetched.record) {
      this.hits++;
      return { ...fetched, source: 'remote' };
    }
    return fetched;
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
      if (await this.remote.push(record, this.disk)) this.pushed++;
    } catch (e) {
      this.warn((e as Error).message);
    }
    checkpoint('remote:pushed');
    return record;
  }

  summary(): RemoteSummary {
    const s = this.remote.settings;
    return { url: s.url, push: s.push, readOnlyReason: s.readOnlyReason, hits: this.hits, pushed: this.pushed, unavailable: this.remote.unavailable };
  }

  close(): void {
    this.remote.close();
  }
}
