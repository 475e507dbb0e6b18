/** Shared by the reliability-*.test.ts files: reference runs and checks of what a run left on disk. */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { cli, TINY, workspace } from './helpers.js';
import { CacheStore, listFiles } from '../src/cache/store.js';
import { hashFile } from '../src/cache/hash.js';

/**
 * TINY's pipeline (train -> prune -> evaluate, the same stages and params) on 120 rows of CSV instead
 * of MNIST: a real run, about a quarter faster, which matters for tests that run it dozens of times.
 */
export const SMALL = TINY.replace('digits: { source: mnist, limit: 400 }', 'digits: { source: files, format: csv, features: d.csv, labelColumn: label, numClasses: 3, sampleShape: [4] }');

/** A fresh workspace with SMALL (or `recipe`, which may read d.csv) and its data file. */
export function smallWorkspace(recipe = SMALL): { dir: string; file: string } {
  const ws = workspace(recipe);
  const rows = ['a,b,c,d,label'];
  for (let i = 0; i < 120; i++) rows.push(`${i % 3},${(i * 7) % 5},${i % 2},${(i % 3) * 2},${i % 3}`);
  writeFileSync(join(ws.dir, 'd.csv'), rows.join('\n') + '\n');
  return ws;
}

export interface RunResult {
  exitCode: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  /** --json events (empty when run without --json). */
  events: Array<Record<string, any>>;
  /** Stage id -> status from the stage-end events. */
  status: Record<string, string>;
}

/** Resolves once `file` exists (a paused process's `.paused` file, a trace's first line): waiting on a
 *  condition, not on time; the test's own timeout bounds it. */
export async function waitFor(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
}

/** Whether a COMPRESS_TEST_TRACE file has reached checkpoint `event`. */
export function traced(trace: string, event: string): boolean {
  return existsSync(trace) && readFileSync(trace, 'utf8').split('\n').includes(event);
}

export async function run(dir: string, args: string[] = [], env: Record<string, string> = {}): Promise<RunResult> {
  const r = await cli(['run', ...args], dir, env);
  const events = args.includes('--json')
    ? r.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l))
    : [];
  const status = Object.fromEntries(events.filter((e) => e.type === 'stage-end').map((e) => [e.outcome.id, e.outcome.status]));
  return { exitCode: r.exitCode, signal: r.signal ?? undefined, stdout: r.stdout, stderr: r.stderr, events, status };
}

/** The outputs digest of every stage in a lock file (undefined when there is no lock file). */
export function lockDigests(lockFile: string): Record<string, string> | undefined {
  if (!existsSync(lockFile)) return undefined;
  const lock = parse(readFileSync(lockFile, 'utf8'));
  return Object.fromEntries(Object.entries(lock.stages as Record<string, { outputsDigest: string }>).map(([id, s]) => [id, s.outputsDigest]));
}

export interface Reference {
  dir: string;
  /** Stage id -> outputsDigest, as compress.lock records it. */
  digests: Record<string, string>;
  /** Stage id -> cache key. */
  keys: Record<string, string>;
  /** Stage id -> (relative file -> sha256) of the materialised outputs. */
  files: Record<string, Record<string, string>>;
  /** Every checkpoint the run reached, in order. */
  trace: string[];
}

/** An uninterrupted run of SMALL in a fresh workspace, traced. */
export async function referenceRun(): Promise<Reference> {
  const ws = smallWorkspace();
  const tracePath = join(ws.dir, 'trace.txt');
  const r = await run(ws.dir, ['--json'], { COMPRESS_TEST_TRACE: tracePath });
  assert.equal(r.exitCode, 0, r.stderr);
  return { ...(await describeRun(ws.dir)), trace: readFileSync(tracePath, 'utf8').split('\n').filter(Boolean) };
}

/** Digests, keys and output files of a workspace after a complete run. */
export async function describeRun(dir: string): Promise<Omit<Reference, 'trace'>> {
  const ws = { dir };
  const lock = parse(readFileSync(join(ws.dir, 'compress.lock'), 'utf8'));
  const ids = Object.keys(lock.stages);
  return {
    dir: ws.dir,
    digests: lockDigests(join(ws.dir, 'compress.lock'))!,
    keys: Object.fromEntries(ids.map((id) => [id, lock.stages[id].key])),
    files: Object.fromEntries(await Promise.all(ids.map(async (id) => [id, await dirDigests(join(ws.dir, '.compress', 'out', id))] as const))),
  };
}

/** Relative path -> sha256 of every file under `dir`. */
export async function dirDigests(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of await listFiles(dir)) out[f.slice(dir.length + 1)] = (await hashFile(f)).sha256;
  return out;
}

export const cacheOf = (dir: string) => new CacheStore(join(dir, '.compress', 'cache'));
export const outRoot = (dir: string) => join(dir, '.compress', 'out');

/**
 * What a run (finished or killed) left must never be read as valid unless it is right: every record
 * passes its checksum and names intact objects, every readable record is the reference's, the lock
 * (if any) has only reference digests, and an output directory is absent or a complete reference copy.
 * Returns the stage ids whose cache entry is valid.
 */
export async function assertNothingHalfWritten(dir: string, ref: Reference, label: string): Promise<string[]> {
  const store = cacheOf(dir);
  const v = await store.verify();
  assert.deepEqual(v.problems, [], `${label}: cache verify`);
  const valid: string[] = [];
  for (const rec of await store.listRecords()) {
    assert.equal(rec.key, ref.keys[rec.stageId], `${label}: record of ${rec.stageId} has the reference key`);
    assert.equal(rec.outputsDigest, ref.digests[rec.stageId], `${label}: record of ${rec.stageId} has the reference outputs`);
    assert.ok(await store.hasObjects(rec), `${label}: objects of ${rec.stageId}`);
    valid.push(rec.stageId);
  }
  const lock = lockDigests(join(dir, 'compress.lock'));
  if (lock) for (const [id, d] of Object.entries(lock)) assert.equal(d, ref.digests[id], `${label}: lock entry ${id}`);
  for (const id of Object.keys(ref.digests)) {
    const out = join(outRoot(dir), id);
    if (existsSync(out)) assert.deepEqual(await dirDigests(out), ref.files[id], `${label}: out/${id} is absent or complete`);
  }
  return valid;
}

/** After a completed run: lock, cache and outputs equal the reference, and no leftovers of killed runs remain. */
export async function assertMatchesReference(dir: string, ref: Reference, label: string): Promise<void> {
  assert.deepEqual(lockDigests(join(dir, 'compress.lock')), ref.digests, `${label}: lock digests`);
  for (const id of Object.keys(ref.digests)) assert.deepEqual(await dirDigests(join(outRoot(dir), id)), ref.files[id], `${label}: out/${id}`);
  assert.deepEqual((await cacheOf(dir).verify()).problems, [], `${label}: cache verify`);
  assert.deepEqual(readdirSync(outRoot(dir)).sort(), Object.keys(ref.digests).sort(), `${label}: nothing but stage dirs in the out dir`);
  assert.deepEqual(existsSync(join(dir, '.compress', 'cache', 'tmp')) ? readdirSync(join(dir, '.compress', 'cache', 'tmp')) : [], [], `${label}: no work dirs left`);
}

/** A printed stack trace ("    at fn (file:line)") */
export const STACK = /^\s+at .+[:(]/m;

/** The project's seeded PRNG (mulberry32). */
export { createRng as rng } from '../src/util/rng.js';

/** Runs `f` over `items`, `width` at a time. */
export async function pool<T, R>(items: T[], width: number, f: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await f(items[i], i);
      }
    }),
  );
  return out;
}
