import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { cli, TINY, workspace } from './helpers.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe, type RunSummary } from '../src/run/execute.js';
import { CacheStore } from '../src/cache/store.js';

const statusOf = (s: RunSummary) => Object.fromEntries(s.stages.map((x) => [x.id, x.status]));
const reasonOf = (s: RunSummary, id: string) => s.stages.find((x) => x.id === id)!.reason;

test('cache: miss, hit, invalidation by param and by upstream, corrupt entry recomputed', async () => {
  const { file } = workspace(TINY);
  const first = await runRecipe(loadRecipe(file));
  assert.deepEqual(statusOf(first), { baseline: 'ran', prune: 'ran', report: 'ran' });
  assert.equal(first.exitCode, 0);
  const acc = first.stages.find((s) => s.id === 'report')!.metrics.accuracy as number;
  assert.ok(acc > 0.3, `a real model was trained (accuracy ${acc})`);

  const second = await runRecipe(loadRecipe(file));
  assert.deepEqual(statusOf(second), { baseline: 'cached', prune: 'cached', report: 'cached' });

  // A param of one stage re-runs it and its descendants only, and says why.
  const third = await runRecipe(loadRecipe(file, { sets: ['params.sparsity=0.7'] }));
  assert.deepEqual(statusOf(third), { baseline: 'cached', prune: 'ran', report: 'ran' });
  assert.match(reasonOf(third, 'prune'), /with\.sparsity: 0\.6 -> 0\.7/);
  assert.match(reasonOf(third, 'report'), /upstream 'prune' changed/);

  // An upstream change propagates.
  const fourth = await runRecipe(loadRecipe(file, { sets: ['stages.baseline.with.batchSize=16'] }));
  assert.deepEqual(statusOf(fourth), { baseline: 'ran', prune: 'ran', report: 'ran' });

  // Gates do not change outputs, so they do not invalidate the cache.
  const gated = await runRecipe(loadRecipe(file, { sets: ['stages.report.with.gates=["accuracy >= 0"]'] }));
  assert.deepEqual(statusOf(gated), { baseline: 'cached', prune: 'cached', report: 'cached' });
  assert.equal(gated.gates.length, 1);

  // Corrupt one object of the prune output: it is detected on read and the stage recomputed.
  const recipe = loadRecipe(file);
  const store = new CacheStore(join(recipe.dir, '.compress', 'cache'));
  const rec = (await store.getRecord(second.stages.find((s) => s.id === 'prune')!.key!))!;
  const obj = store.objectPath(rec.outputs['weights.bin'].sha256);
  const bytes = readFileSync(obj);
  bytes[10] ^= 0xff;
  writeFileSync(obj, bytes);
  const fifth = await runRecipe(recipe);
  assert.equal(statusOf(fifth).prune, 'ran');
  assert.match(reasonOf(fifth, 'prune'), /corrupt/);
  // Same inputs, same seed: the recomputed artifact is byte-identical to the lost one.
  assert.equal(fifth.stages.find((s) => s.id === 'prune')!.outputs!['weights.bin'], rec.outputs['weights.bin'].sha256);
});

test('cache: data change invalidates the stages that read the data', async () => {
  const { dir, file } = workspace(TINY.replace('digits: { source: mnist, limit: 400 }', 'digits: { source: files, format: csv, features: d.csv, labelColumn: label, numClasses: 3, sampleShape: [4] }'));
  const rows = ['a,b,c,d,label'];
  for (let i = 0; i < 120; i++) rows.push(`${i % 3},${(i * 7) % 5},${i % 2},${(i % 3) * 2},${i % 3}`);
  writeFileSync(join(dir, 'd.csv'), rows.join('\n') + '\n');
  const a = await runRecipe(loadRecipe(file));
  assert.deepEqual(statusOf(a), { baseline: 'ran', prune: 'ran', report: 'ran' }, JSON.stringify(a.stages.map((s) => s.reason)));
  writeFileSync(join(dir, 'd.csv'), rows.concat(['1,1,1,1,1']).join('\n') + '\n');
  const b = await runRecipe(loadRecipe(file));
  assert.deepEqual(statusOf(b), { baseline: 'ran', prune: 'ran', report: 'ran' });
  assert.match(reasonOf(b, 'baseline'), /data 'digits' changed/);
});

test('a run killed mid-stage leaves the cache usable; the next run completes with identical artifacts', async () => {
  const { dir } = workspace(TINY);
  // Killed at prune's first progress report: mid-stage, whatever the machine's speed.
  const r = await cli(['run', '--json'], dir, { COMPRESS_TEST_KILL_AT: 'run:progress:prune:1' });
  assert.equal(r.signal, 'SIGKILL');
  const started = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).filter((e) => e.type === 'stage-start').map((e) => e.id);
  assert.deepEqual(started, ['baseline', 'prune'], 'killed during prune');
  const after = await cli(['run', '--json'], dir);
  assert.equal(after.exitCode, 0, after.stderr);
  const ends = after.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'stage-end');
  assert.deepEqual(Object.fromEntries(ends.map((e) => [e.outcome.id, e.outcome.status])), { baseline: 'cached', prune: 'ran', report: 'ran' });
  // Leftover work dirs of the killed process are swept.
  assert.deepEqual(readdirSync(join(dir, '.compress', 'cache', 'tmp')).filter((n) => !n.includes(`-${process.pid}-`)), []);
  // Same artifacts as an uninterrupted run in a fresh workspace.
  const clean = workspace(TINY);
  const c = await cli(['run', '--json'], clean.dir);
  assert.equal(c.exitCode, 0, c.stderr);
  const lockA = parse(readFileSync(join(dir, 'compress.lock'), 'utf8'));
  const lockB = parse(readFileSync(join(clean.dir, 'compress.lock'), 'utf8'));
  for (const id of ['baseline', 'prune', 'report']) assert.equal(lockA.stages[id].outputsDigest, lockB.stages[id].outputsDigest, id);
  assert.ok(existsSync(join(dir, '.compress', 'out', 'prune', 'weights.bin')));
});
