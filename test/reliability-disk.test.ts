/**
 * Disk failures: a full disk (ENOSPC) or a read-only cache (EROFS, or a cache path under a regular
 * file: ENOTDIR) at each kind of write gives a clear error naming the path (exit 1, no stack trace)
 * and loses no earlier artifact: previous cache entries, the lock file and the output directories stay
 * valid, and a later normal run is all cached. (Tests run as root, so chmod cannot make a directory
 * unwritable; the failures are injected at the write checkpoints with COMPRESS_TEST_FAIL_AT.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheOf, describeRun, dirDigests, lockDigests, outRoot, run, smallWorkspace, STACK } from './reliability-util.js';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Case {
  name: string;
  /** COMPRESS_TEST_FAIL_AT: <checkpoint>:<n>[:<errno>] */
  failAt: string;
  /** What stderr must say; `root` is the workspace. */
  message: (root: string) => RegExp;
}

// In this order, each leaves the cache a step further for the same changed param (sparsity 0.7):
// nothing stored; objects stored but no record; record stored but outputs not placed; every stage
// done but the lock not written; then a new param on a read-only file system where nothing can be written.
const CASES: Case[] = [
  { name: 'full disk storing an object', failAt: 'store:object:1', message: (r) => new RegExp(`error: stage 'prune' failed: cannot store '[^']+' in the cache ${esc(join(r, '.compress', 'cache'))}: the disk is full`) },
  { name: 'read-only cache writing a record', failAt: 'store:record:write:1:EROFS', message: (r) => new RegExp(`error: stage 'prune' failed: cannot write the cache record ${esc(join(r, '.compress', 'cache', 'runs'))}/\\S+\\.json: the file system is read-only`) },
  { name: 'full disk copying outputs', failAt: 'materialize:copy:1', message: (r) => new RegExp(`error: stage 'prune' failed: cannot write the outputs of 'prune' to ${esc(join(outRoot(r), 'prune'))}: the disk is full`) },
  { name: 'full disk writing the lock file', failAt: 'lockfile:write:1', message: (r) => new RegExp(`error: cannot write the lock file ${esc(join(r, 'compress.lock'))}: the disk is full`) },
];

test('full disk / read-only cache at each kind of write: clear error naming the path, nothing earlier lost, a later run is all cached', async () => {
  const { dir } = smallWorkspace();
  const first = await run(dir, ['--json']);
  assert.equal(first.exitCode, 0, first.stderr);
  const before = await describeRun(dir);
  const lockBytes = readFileSync(join(dir, 'compress.lock'), 'utf8');
  const records = await cacheOf(dir).listRecords();
  assert.equal(records.length, 3);

  /** Earlier artifacts are intact: lock byte-identical, earlier records valid with their objects, outputs complete. */
  const assertNothingLost = async (label: string) => {
    assert.equal(readFileSync(join(dir, 'compress.lock'), 'utf8'), lockBytes, `${label}: lock file unchanged`);
    const store = cacheOf(dir);
    assert.deepEqual((await store.verify()).problems, [], `${label}: cache verify`);
    for (const r of records) {
      const again = await store.getRecord(r.key);
      assert.equal(again?.outputsDigest, r.outputsDigest, `${label}: record of ${r.stageId} still valid`);
      assert.ok(await store.hasObjects(again!), `${label}: objects of ${r.stageId}`);
    }
    // An output directory is the earlier complete copy or a complete copy of a newer valid record.
    const valid = await store.listRecords();
    for (const id of Object.keys(before.files)) {
      const got = await dirDigests(join(outRoot(dir), id));
      const ok = valid.filter((r) => r.stageId === id).some((r) => Object.entries(r.outputs).every(([f, e]) => got[f] === e.sha256) && Object.keys(got).length === Object.keys(r.outputs).length);
      assert.ok(ok, `${label}: out/${id} is a complete copy of a valid entry`);
    }
    assert.deepEqual(await dirDigests(join(outRoot(dir), 'baseline')), before.files.baseline, `${label}: out/baseline untouched`);
  };

  for (const c of CASES) {
    const r = await run(dir, ['--set', 'params.sparsity=0.7'], { COMPRESS_TEST_FAIL_AT: c.failAt });
    assert.equal(r.exitCode, 1, `${c.name}: exit code (stderr: ${r.stderr})`);
    assert.match(r.stderr, c.message(dir), c.name);
    assert.doesNotMatch(r.stderr + r.stdout, STACK, `${c.name}: no stack trace`);
    await assertNothingLost(c.name);
  }

  // Read-only everywhere for a new param: the stage fails, and so does the lock write; both are said.
  const ro = await run(dir, ['--set', 'params.sparsity=0.8'], { COMPRESS_TEST_FAIL_AT: 'write:1:EROFS' });
  assert.equal(ro.exitCode, 1, ro.stderr);
  // The stage's own outputs (in its work directory) are the first write of a computed stage.
  assert.match(ro.stderr, new RegExp(`error: stage 'prune' failed: cannot write the outputs of 'prune' in the cache work directory ${esc(join(dir, '.compress', 'cache', 'tmp'))}/\\S+: the file system is read-only`));
  assert.match(ro.stderr, new RegExp(`error: cannot write the lock file ${esc(join(dir, 'compress.lock'))}: the file system is read-only`));
  assert.doesNotMatch(ro.stderr + ro.stdout, STACK);
  await assertNothingLost('read-only file system');

  // The disk is back: the original recipe is all cached and its outputs are back in place.
  const again = await run(dir, ['--json']);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.deepEqual(again.status, { baseline: 'cached', prune: 'cached', report: 'cached' });
  assert.equal(readFileSync(join(dir, 'compress.lock'), 'utf8'), lockBytes);
  for (const id of Object.keys(before.files)) assert.deepEqual(await dirDigests(join(outRoot(dir), id)), before.files[id], `out/${id}`);
  // And the changed param completes, reusing what the failed runs did store.
  const changed = await run(dir, ['--json', '--set', 'params.sparsity=0.7']);
  assert.equal(changed.exitCode, 0, changed.stderr);
  assert.deepEqual(changed.status, { baseline: 'cached', prune: 'cached', report: 'cached' });
  assert.notEqual(lockDigests(join(dir, 'compress.lock'))!.prune, before.digests.prune);
});

test('a cache path under a regular file (not a directory): clear error naming the cache, nothing written or lost', async () => {
  const { dir } = smallWorkspace();
  const first = await run(dir, ['--json']);
  assert.equal(first.exitCode, 0, first.stderr);
  const before = await describeRun(dir);
  const lockBytes = readFileSync(join(dir, 'compress.lock'), 'utf8');
  writeFileSync(join(dir, 'afile'), 'not a directory\n');

  for (const [how, args, env] of [
    ['--cache-dir', ['--cache-dir', 'afile/cache'], {}],
    ['COMPRESS_CACHE_DIR', [], { COMPRESS_CACHE_DIR: join(dir, 'afile', 'cache') }],
  ] as const) {
    const r = await run(dir, [...args], env);
    assert.equal(r.exitCode, 1, `${how}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`error: stage 'baseline' failed: cannot (read|write to) the cache ${esc(join(dir, 'afile', 'cache'))}: a parent of the path is not a directory`), how);
    assert.doesNotMatch(r.stderr + r.stdout, STACK, how);
    assert.equal(readFileSync(join(dir, 'compress.lock'), 'utf8'), lockBytes, `${how}: lock unchanged`);
    for (const id of Object.keys(before.files)) assert.deepEqual(await dirDigests(join(outRoot(dir), id)), before.files[id], `${how}: out/${id}`);
  }
  const again = await run(dir, ['--json']);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.deepEqual(again.status, { baseline: 'cached', prune: 'cached', report: 'cached' });
});

test('a cache that cannot be written when computing (ENOTDIR for the work dir): clear error, earlier entries intact', async () => {
  const { dir } = smallWorkspace();
  const first = await run(dir, ['--json']);
  assert.equal(first.exitCode, 0, first.stderr);
  const lockBytes = readFileSync(join(dir, 'compress.lock'), 'utf8');
  // The cache's tmp dir replaced by a file: records still read, nothing new can be computed into it.
  rmSync(join(dir, '.compress', 'cache', 'tmp'), { recursive: true, force: true });
  writeFileSync(join(dir, '.compress', 'cache', 'tmp'), 'in the way\n');
  const r = await run(dir, ['--set', 'params.sparsity=0.7']);
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`error: stage 'prune' failed: cannot create a work directory in the cache ${esc(join(dir, '.compress', 'cache'))}: `));
  assert.doesNotMatch(r.stderr + r.stdout, STACK);
  assert.equal(readFileSync(join(dir, 'compress.lock'), 'utf8'), lockBytes);
  assert.deepEqual((await cacheOf(dir).verify()).problems, []);
  rmSync(join(dir, '.compress', 'cache', 'tmp'));
  const again = await run(dir, ['--json']);
  assert.deepEqual(again.status, { baseline: 'cached', prune: 'cached', report: 'cached' });
});

test('full disk while a stage writes its outputs in the cache work directory: the error names that path and says the disk is full', async () => {
  const { dir } = smallWorkspace();
  const r = await run(dir, [], { COMPRESS_TEST_FAIL_AT: 'stage:outputs:1' });
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`error: stage 'baseline' failed: cannot write the outputs of 'baseline' in the cache work directory ${esc(join(dir, '.compress', 'cache', 'tmp'))}/\\S+: the disk is full`));
  assert.doesNotMatch(r.stderr + r.stdout, STACK);
});
