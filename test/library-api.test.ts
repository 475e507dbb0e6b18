import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// The package by its own name: what a user's `import ... from '@compress-ml/compress'` resolves to (package.json "exports").
import * as compress from '@compress-ml/compress';
import { TINY } from './helpers.js';

test('the package entry exports the pruning, compression, engine and runner APIs', () => {
  for (const name of ['createSchedule', 'magnitudeMask', 'nmMask', 'structuredMask', 'removeUnits', 'resolveLayerSettings', 'modelStats', 'kmeansQuantize', 'huffmanEncode', 'huffmanDecode', 'trainModel', 'buildModel', 'initEngine', 'loadModelFrom', 'exportModel', 'loadRecipe', 'runRecipe']) {
    assert.equal(typeof (compress as Record<string, unknown>)[name], 'function', name);
  }
});

test('library: a TF-MOT polynomial-decay schedule, a magnitude mask, k-means + Huffman round trip', () => {
  const s = compress.createSchedule({ kind: 'polynomial-decay', initialSparsity: 0.5, finalSparsity: 0.9, beginStep: 0, endStep: 100, power: 3, frequency: 10 });
  // TF-MOT: s(t) = final + (initial - final) * (1 - t/(end-begin))^power
  assert.ok(Math.abs(s.sparsityAt(50) - (0.9 + (0.5 - 0.9) * 0.5 ** 3)) < 1e-12);
  assert.equal(s.shouldPrune(20), true);
  assert.equal(s.shouldPrune(25), false);
  assert.throws(() => compress.createSchedule({ kind: 'polynomial-decay', initialSparsity: 0.5, finalSparsity: 1.5, beginStep: 0, endStep: 100 }), compress.ScheduleError);

  const w = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i * 12.9898) * 0.1);
  const mask = compress.magnitudeMask(w, 0.8);
  assert.equal(mask.reduce((a, b) => a + b, 0), 200);
  const kept = [...w].filter((_, i) => mask[i]).map(Math.abs);
  const dropped = [...w].filter((_, i) => !mask[i]).map(Math.abs);
  assert.ok(Math.min(...kept) >= Math.max(...dropped), 'the largest magnitudes are kept');

  const q = compress.kmeansQuantize(w, { bits: 4 });
  assert.ok(q.codebook.length <= 16);
  const enc = compress.huffmanEncode(q.indices, q.codebook.length);
  assert.deepEqual(Array.from(compress.huffmanDecode(enc.bytes)), Array.from(q.indices));
});

test('library: runRecipe runs a recipe file and returns its summary', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'compress-lib-'));
  writeFileSync(join(dir, 'r.yaml'), TINY.replace('limit: 400', 'limit: 200'));
  const summary = await compress.runRecipe(compress.loadRecipe(join(dir, 'r.yaml')));
  assert.equal(summary.exitCode, 0);
  assert.deepEqual(summary.stages.map((s) => [s.id, s.status]), [['baseline', 'ran'], ['prune', 'ran'], ['report', 'ran']]);
  assert.ok((summary.stages[2].metrics.sparsity as number) > 0.5);
});
