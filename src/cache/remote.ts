import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { canonicalJson, sha256 } from './hash.js';
import { CacheCorruptError, parseRecord, type CacheStore, type RunRecord } from './store.js';
import type { RemoteSettings } from './remote-config.js';
import { timed } from '../util/timings.js';

export interface RemoteOptions {
  /** Told once when the remote becomes unreachable, and for each refused (corrupt) entry. */
  onWarning?: (message: string) => void;
  /** Attempts per request (the SDK's standard retry mode: exponential backoff with jitter). */
  maxAttempts?: number;
  /** A request taking longer (connect, or the whole exchange) counts as failed and is retried. */
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /**
   * A record lookup or HEAD (bytes, not megabytes) with no answer within this, retries included, counts as failed
   * (default 15 s): a remote that accepts connections and never answers costs a run that once, not 3 x 60 s.
   */
  lookupTimeoutMs?: number;
  /** Requests in flight at once for one entry's objects. */
  parallel?: number;
  /** What the caller does once the remote is unreachable, ending that warning (default: a run's "continuing with the local cache only"). */
  whenDown?: string;
}

/** What a lookup found: a verified record now in the local store, or why nothing was taken. */
export interface PullResult {
  record?: RunRecord;
  /** A remote entry exists but was refused (corrupt, truncated, tampered): the stage recomputes. */
  refused?: string;
}

class NotFound extends Error {}

/**
 * The shared cache on S3-compatible storage, laid out as the local store: `<prefix>/objects/ab/<sha256>`
 * holds file contents, `<prefix>/runs/ab/<key>.json` maps a stage key to its outputs and metrics.
 *
 * Nothing fetched is trusted: a record must pass its checksum and every object its sha256 before it
 * enters the local store. Objects are uploaded before the record, so a half-pushed entry is never
 * visible. A remote that stays unreachable after the SDK's bounded retries (server down, timeouts,
 * 5xx) is switched off for the rest of the process with one warning: the run goes on local-only.
 */
export class RemoteCache {
  private readonly client: S3Client;
  private down?: string;
  /** Objects found corrupt on the remote: re-uploaded by the next push instead of trusted by a HEAD. */
  private readonly suspect = new Set<string>();
  private readonly parallel: number;
  readonly maxAttempts: number;

  constructor(
    readonly settings: RemoteSettings,
    private readonly opts: RemoteOptions = {},
  ) {
    this.maxAttempts = opts.maxAttempts ?? 3;
    this.parallel = opts.parallel ?? 8;
    // The SDK warns on Node < 22 about its releases after January 2027; compress supports Node >= 20
    // with the SDK version it pins, so the warning would only be noise in every run's output.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({
      region: settings.region,
      endpoint: settings.endpoint,
      forcePathStyle: settings.pathStyle,
      maxAttempts: this.maxAttempts,
      retryMode: 'standard',
      // Plain PUT bodies: with checksums "when supported" the SDK streams aws-chunked bodies, which some
      // S3-compatible servers (s3rver) store framing and all; the sha256 check is ours anyway.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: opts.connectTimeoutMs ?? 5000,
        requestTimeout: opts.requestTimeoutMs ?? 60000,
        throwOnRequestTimeout: true,
      },
    });
  }

  /** `s3://bucket/prefix`, with `(read-only)` when this run does not push. */
  describe(): string {
    return `${this.settings.url}${this.settings.push ? '' : ' (read-only)'}`;
  }

  get canPush(): boolean {
    return this.settings.push && !this.down;
  }

  /** Why the remote is off for this process (unreachable), if it is. */
  get unavailable(): string | undefined {
    return this.down;
  }

  objectKey(digest: string): string {
    return this.keyOf(`objects/${digest.slice(0, 2)}/${digest}`);
  }

  recordKey(key: string): string {
    return this.keyOf(`runs/${key.slice(0, 2)}/${key}.json`);
  }

  private keyOf(rel: string): string {
    return this.settings.prefix ? `${this.settings.prefix}/${rel}` : rel;
  }

  /**
   * Looks a stage key up remotely: on a hit the record is verified, its objects downloaded (those the
   * local store lacks) and each checked against its digest while it streams, then the entry is put in
   * the local store. A miss or an unreachable remote gives `{}`; a damaged entry gives `refused`.
   */
  async pull(key: string, local: CacheStore, label?: string): Promise<PullResult> {
    if (this.down) return {};
    const text = await timed('remote: get record', () => this.guard(`read ${this.recordKey(key)}`, () => this.getText(this.recordKey(key))));
    if (text == null) return {};
    let rec: RunRecord;
    try {
      rec = parseRecord(text, key);
    } catch (e) {
      if (!(e instanceof CacheCorruptError)) throw e;
      return this.refuse(`remote ${e.message}${label ? ` (${label})` : ''}`);
    }
    const stage = label ?? rec.stageId;
    const missing = await this.missingLocally(rec, local);
    const work = await local.makeWorkDir(`pull-${stage}`);
    try {
      const problems: string[] = [];
      let unreachable = false;
      const verified: Array<[string, string, RunRecord['outputs'][string]]> = [];
      // Each object once (two outputs may share content), hashed while it streams to disk: a verified
      // download goes into the local store as it is, without being read again.
      await timed('remote: download objects', () =>
        eachLimited(missing, this.parallel, async ([rel, e]) => {
          const out = join(work, e.sha256);
          const got = await this.guard(`download ${this.objectKey(e.sha256)}`, () => this.download(this.objectKey(e.sha256), out));
          if (got === undefined) {
            unreachable = true;
            return;
          }
          if (got === null) problems.push(`'${rel}' is missing`);
          else if (got.sha256 !== e.sha256 || got.size !== e.size) {
            this.suspect.add(e.sha256);
            problems.push(`'${rel}' is corrupt (sha256 ${got.sha256.slice(0, 12)}, ${got.size} bytes; expected ${e.sha256.slice(0, 12)}, ${e.size} bytes)`);
          } else verified.push([out, rel, e]);
        }),
      );
      if (unreachable) return {};
      if (problems.length) return this.refuse(`remote cache entry of ${stage} refused: object ${problems.join(', ')}`);
      await timed('remote: store objects locally', () => eachLimited(verified, this.parallel, ([out, rel, e]) => local.adoptObject(out, e, rel)));
      const { checksum: _c, ...rest } = rec;
      return { record: await local.putRecord(rest) };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Uploads an entry of the local store: its objects first (skipping those already there, unless found
   * corrupt earlier), the record last. Returns false when the remote is read-only or unreachable.
   */
  async push(rec: RunRecord, local: CacheStore): Promise<boolean> {
    if (!this.canPush) return false;
    const entries = uniqueObjects(rec);
    let ok = true;
    await eachLimited(entries, this.parallel, async (e) => {
      if (!ok) return;
      const key = this.objectKey(e.sha256);
      if (!this.suspect.has(e.sha256)) {
        const size = await this.guard(`check ${key}`, () => this.headSize(key));
        if (size === undefined) return void (ok = false);
        if (size === e.size) return;
      }
      const body = await readFile(local.objectPath(e.sha256));
      // Only verified bytes leave this machine: a local object damaged since it was stored is not pushed.
      if (sha256(body) !== e.sha256) throw new CacheCorruptError(`local cache object ${e.sha256.slice(0, 12)} of ${rec.stageId} is corrupt: not pushed`, rec.key);
      const put = await this.guard(`upload ${key}`, () => this.client.send(new PutObjectCommand({ Bucket: this.settings.bucket, Key: key, Body: body, ContentLength: body.length, ContentType: 'application/octet-stream' })));
      if (put === undefined) ok = false;
      else this.suspect.delete(e.sha256);
    });
    if (!ok) return false;
    const body = canonicalJson(rec);
    const put = await this.guard(`upload ${this.recordKey(rec.key)}`, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.settings.bucket, Key: this.recordKey(rec.key), Body: body, ContentType: 'application/json' })),
    );
    return put !== undefined;
  }

  /**
   * The remote's record for a key, checked against its checksum, without its objects (what `status`
   * needs: the record's outputs digest keys the stages downstream). `{}`: a miss or unreachable.
   */
  async peekRecord(key: string): Promise<PullResult> {
    const text = await this.guard(`read ${this.recordKey(key)}`, () => this.getText(this.recordKey(key)));
    if (text == null) return {};
    try {
      return { record: parseRecord(text, key) };
    } catch (e) {
      if (!(e instanceof CacheCorruptError)) throw e;
      return { refused: `remote ${e.message}` };
    }
  }

  /** Whether the remote holds a record for the key (no content check). undefined: unreachable. */
  async hasRecord(key: string): Promise<boolean | undefined> {
    if (this.down) return undefined;
    const size = await this.guard(`check ${this.recordKey(key)}`, () => this.headSize(this.recordKey(key)));
    return size === undefined ? undefined : size !== null;
  }

  /** Number of keys under the prefix (for `cache ls --remote` and tests). undefined: unreachable. */
  async countKeys(): Promise<number | undefined> {
    let n = 0;
    let token: string | undefined;
    do {
      const page = await this.guard('list', () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: this.settings.prefix ? `${this.settings.prefix}/` : undefined, ContinuationToken: token })),
      );
      if (page == null) return undefined;
      n += page.KeyCount ?? page.Contents?.length ?? 0;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return n;
  }

  close(): void {
    this.client.destroy();
  }

  private refuse(message: string): PullResult {
    this.opts.onWarning?.(`${message}: recomputed`);
    return { refused: message };
  }

  /** Objects a record needs that the local store lacks (or holds with the wrong size), each digest once. */
  private async missingLocally(rec: RunRecord, local: CacheStore): Promise<Array<[string, RunRecord['outputs'][string]]>> {
    const out = new Map<string, [string, RunRecord['outputs'][string]]>();
    for (const [rel, e] of Object.entries(rec.outputs)) {
      if (!out.has(e.sha256) && !(await local.hasObjects({ ...rec, outputs: { [rel]: e } }))) out.set(e.sha256, [rel, e]);
    }
    return [...out.values()];
  }

  /**
   * Runs a request; a not-found gives null. Any other failure (after the SDK's retries) turns the remote
   * off for this process with one warning and gives undefined: the caller goes on without it.
   */
  private async guard<T>(what: string, f: () => Promise<T>): Promise<T | null | undefined> {
    if (this.down) return undefined;
    try {
      return await f();
    } catch (e) {
      if (e instanceof NotFound) return null;
      if (e instanceof CacheCorruptError) throw e;
      if (this.down) return undefined;
      this.down = describeS3Error(e);
      this.opts.onWarning?.(`remote cache ${this.settings.url} is unavailable (${this.down}; ${what}, ${this.maxAttempts} attempts): ${this.opts.whenDown ?? 'continuing with the local cache only'}`);
      return undefined;
    }
  }

  private async getText(key: string): Promise<string> {
    return this.lookup(key, async (abortSignal) => {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: key }), { abortSignal });
      return await res.Body!.transformToString('utf8');
    });
  }

  private async headSize(key: string): Promise<number> {
    return this.lookup(key, async (abortSignal) => (await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: key }), { abortSignal })).ContentLength ?? -1);
  }

  /** A small request bounded by lookupTimeoutMs, retries included; a 404 is NotFound. */
  private async lookup<T>(key: string, f: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ms = this.opts.lookupTimeoutMs ?? 15_000;
    const signal = AbortSignal.timeout(ms);
    try {
      return await f(signal);
    } catch (e) {
      if (signal.aborted) throw Object.assign(new Error(`no answer to a lookup of ${key} within ${ms / 1000} s`), { name: 'LookupTimeout' });
      throw notFound(e) ? new NotFound(key) : e;
    }
  }

  /** Streams an object to a file, hashing as it goes. */
  private async download(key: string, dest: string): Promise<{ sha256: string; size: number }> {
    let res;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: key }));
    } catch (e) {
      throw notFound(e) ? new NotFound(key) : e;
    }
    await mkdir(dirname(dest), { recursive: true });
    const h = createHash('sha256');
    let size = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        h.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    await pipeline(res.Body as Readable, tap, createWriteStream(dest));
    return { sha256: h.digest('hex'), size };
  }
}

function uniqueObjects(rec: RunRecord): Array<{ sha256: string; size: number }> {
  const seen = new Map<string, { sha256: string; size: number }>();
  for (const e of Object.values(rec.outputs)) seen.set(e.sha256, e);
  return [...seen.values()];
}

function notFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err?.name === 'NoSuchKey' || err?.name === 'NotFound' || err?.$metadata?.httpStatusCode === 404 && err?.name !== 'NoSuchBucket';
}

/** An S3 failure in a few words (never the request's headers or credentials). */
export function describeS3Error(e: unknown): string {
  const err = e as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = err?.$metadata?.httpStatusCode;
  const code = err?.code ?? err?.name ?? 'Error';
  const msg = (err?.message ?? String(e)).split('\n')[0].slice(0, 160);
  return `${code}${status ? ` (HTTP ${status})` : ''}${msg && msg !== code ? `: ${msg}` : ''}`;
}

async function eachLimited<T>(items: T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await f(items[next++]);
  });
  await Promise.all(lanes);
}
