/** Cache entries of the wrong file type (issue 20): a record or object replaced by a directory is damage, healed, never EISDIR. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CacheCorruptError, CacheStore, manifestDigest } from '../src/cache/store.js';

async function stored() {
  const root = mkdtempSync(join(tmpdir(), 'compress-wrongtype-'));
  const store = new CacheStore(root);
  const work = await store.makeWorkDir('s');
  writeFileSync(join(work, 'a.bin'), 'hello');
  const outputs = await store.putDir(work);
  const input = () => ({ key: 'ab'.repeat(32), keyInputs: {}, stageKind: 'exec', stageId: 's', outputs, outputsDigest: manifestDigest(outputs), metrics: {}, createdAt: 'now', durationMs: 1 });
  const rec = await store.putRecord(input());
  return { root, store, rec, input };
}

test('a run record replaced by a directory is corrupt (not EISDIR), removed, and a new record file takes its place', async () => {
  const { store, rec, input } = await stored();
  const path = store.recordPath(rec.key);
  const { rmSync } = await import('node:fs');
  rmSync(path);
  mkdirSync(join(path, 'inner'), { recursive: true });
  await assert.rejects(store.getRecord(rec.key), (e: unknown) => e instanceof CacheCorruptError && /not a file/.test(e.message));
  assert.equal(await store.getRecord(rec.key), undefined, 'the directory was removed');
  await store.putRecord(input());
  assert.ok(statSync(path).isFile(), 'a record file takes its place');
});

test('a cache object replaced by a directory is corrupt on restore and replaced when stored again', async () => {
  const { store, rec } = await stored();
  const obj = store.objectPath(rec.outputs['a.bin'].sha256);
  const { rmSync } = await import('node:fs');
  rmSync(obj);
  mkdirSync(join(obj, 'inner'), { recursive: true });
  const dest = mkdtempSync(join(tmpdir(), 'compress-wrongtype-out-'));
  await assert.rejects(store.materialize(rec, join(dest, 'out')), (e: unknown) => e instanceof CacheCorruptError);
  mkdirSync(join(obj, 'inner'), { recursive: true });
  const work = await store.makeWorkDir('s2');
  writeFileSync(join(work, 'a.bin'), 'hello');
  await store.putDir(work);
  assert.ok(statSync(obj).isFile(), 'the object is a file again');
  await store.materialize(rec, join(dest, 'out2'));
});

test('cache gc removes a run record replaced by a directory', async () => {
  const { store, rec } = await stored();
  const path = store.recordPath(rec.key);
  const { rmSync, existsSync } = await import('node:fs');
  rmSync(path);
  mkdirSync(join(path, 'inner'), { recursive: true });
  const r = await store.gc(new Set([rec.key]));
  assert.equal(r.damaged, 1);
  assert.equal(existsSync(path), false, 'the directory is gone');
  assert.equal(await store.getRecord(rec.key), undefined);
});

test('cache gc removes a cache object replaced by a directory and the kept record that needs it', async () => {
  const { store, rec } = await stored();
  const obj = store.objectPath(rec.outputs['a.bin'].sha256);
  const { rmSync, existsSync } = await import('node:fs');
  rmSync(obj);
  mkdirSync(join(obj, 'inner'), { recursive: true });
  const r = await store.gc(new Set([rec.key]));
  assert.equal(r.damaged, 2, 'the directory and the record left without its object');
  assert.equal(existsSync(obj), false, 'the directory is gone');
  assert.equal(await store.getRecord(rec.key), undefined, 'the incomplete record is gone: the stage is recomputed, not "incomplete"');
});
