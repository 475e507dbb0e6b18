/**
 * A run reads and splits a dataset once: the first stage worker that loads it hands it back in shared
 * memory and later stages of the run get that copy (src/run/executor.ts), unless its files changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TINY, workspace } from './helpers.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe } from '../src/run/execute.js';
import { WorkerThreadExecutor, type StageExecutor } from '../src/run/executor.js';

const CSV_DATA = 'digits: { source: files, format: csv, features: d.csv, labelColumn: label, numClasses: 3, sampleShape: [4] }';

const STAMP = 1_700_000_000;

function csvWorkspace() {
  const { dir, file } = workspace(TINY.replace('digits: { source: mnist, limit: 400 }', CSV_DATA));
  const rows = ['a,b,c,d,label'];
  for (let i = 0; i < 120; i++) rows.push(`${i % 3},${(i * 7) % 5},${i % 2},${(i % 3) * 2},${i % 3}`);
  const text = rows.join('\n') + '\n';
  writeFileSync(join(dir, 'd.csv'), text);
  // A whole-second modification time, which the tests can set again exactly.
  utimesSync(join(dir, 'd.csv'), STAMP, STAMP);
  return { dir, file, csv: join(dir, 'd.csv'), bytes: text.length };
}

/** The default executor, with `afterFirst` run once the first stage is done (before the next starts). */
function executorWith(afterFirst: () => void): StageExecutor {
  const inner = new WorkerThreadExecutor();
  let first = true;
  return {
    async execute(job, stage, onMessage) {
      const metrics = await inner.execute(job, stage, onMessage);
      if (first) afterFirst();
      first = false;
      return metrics;
    },
    abort: () => inner.abort(),
  };
}

test('later stages of a run use the dataset the first stage read (the file is not read again)', async () => {
  const { file, csv, bytes } = csvWorkspace();
  // Same size and modification time, unreadable content: a stage that re-read the file would fail.
  const s = await runRecipe(loadRecipe(file), {
    executor: executorWith(() => {
      writeFileSync(csv, 'x'.repeat(bytes));
      utimesSync(csv, STAMP, STAMP);
    }),
  });
  assert.deepEqual(s.stages.map((x) => `${x.id}:${x.status}`), ['baseline:ran', 'prune:ran', 'report:ran'], JSON.stringify(s.stages.map((x) => x.reason)));
});

test('a dataset file changed during a run is read again by the stages after the change', async () => {
  const { file, csv, bytes } = csvWorkspace();
  const s = await runRecipe(loadRecipe(file), {
    executor: executorWith(() => {
      writeFileSync(csv, 'x'.repeat(bytes));
      utimesSync(csv, STAMP + 5, STAMP + 5);
    }),
  });
  const prune = s.stages.find((x) => x.id === 'prune')!;
  assert.equal(prune.status, 'failed');
  assert.match(prune.reason ?? '', /d\.csv/);
});
