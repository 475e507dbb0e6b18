import { CacheCorruptError, CacheStore, manifestDigest, type RunRecord } from '../cache/store.js';
import type { KeyInputs } from './keys.js';

/** What a lookup found: a usable record, or none (with why, when an entry exists but is damaged). */
export interface CacheLookup {
  record?: RunRecord;
  /** The entry under this key exists but cannot be used (fails its checksum, objects missing). */
  damaged?: string;
  /** Where a record came from when not the local store (e.g. 'remote'): said in the stage's reason. */
  source?: string;
}

/** What a finished stage adds to the cache besides its files. */
export interface StageResult {
  key: string;
  keyInputs: KeyInputs;
  stageKind: string;
  stageId: string;
  metrics: Record<string, unknown>;
  durationMs: number;
}

/**
 * The runner's view of the cache, per stage: find a key, put a stage's outputs back where the recipe
 * reads them, store a computed stage. `lookup` only reads; a damaged entry is reported, not deleted
 * (storing the recomputed stage replaces it). A remote layer wraps this interface: its `lookup` may
 * fetch into the local store, its `store` may push.
 */
export interface StageCache {
  /** The local directory (key locks, work directories live under it). */
  readonly root: string;
  lookup(key: string): Promise<CacheLookup>;
  /** Copies a record's outputs to `outDir`; CacheCorruptError when an object is damaged. */
  restore(record: RunRecord, outDir: string): Promise<void>;
  /** A fresh private directory for a stage to write its outputs into. */
  workDir(label: string): Promise<string>;
  /** Moves the files of `workDir` into the cache under `result.key` and returns the record. */
  store(result: StageResult, workDir: string): Promise<RunRecord>;
}

/** The content-addressed store on local disk, as a StageCache. */
export class LocalStageCache implements StageCache {
  constructor(readonly disk: CacheStore) {}

  get root(): string {
    return this.disk.root;
  }

  async lookup(key: string): Promise<CacheLookup> {
    let record: RunRecord | undefined;
    try {
      record = await this.disk.getRecord(key);
    } catch (e) {
      if (e instanceof CacheCorruptError) return { damaged: e.message };
      throw e;
    }
    if (!record) return {};
    if (!(await this.disk.hasObjects(record))) return { damaged: 'cache entry incomplete (missing objects)' };
    return { record };
  }

  restore(record: RunRecord, outDir: string): Promise<void> {
    return this.disk.materialize(record, outDir);
  }

  workDir(label: string): Promise<string> {
    return this.disk.makeWorkDir(label);
  }

  async store(result: StageResult, workDir: string): Promise<RunRecord> {
    const outputs = await this.disk.putDir(workDir);
    return this.disk.putRecord({ ...result, outputs, outputsDigest: manifestDigest(outputs), createdAt: new Date().toISOString() });
  }
}
