/**
 * `cache gc` and `cache clean` while a run uses the cache: they refuse (exit 75, a message naming the
 * run's process) instead of deleting the run's new entries; the run finishes and its entries survive.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from './helpers.js';
import { cacheOf, run, smallWorkspace, STACK, waitFor } from './reliability-util.js';

/** Pauses a run after prune computed (baseline stored, prune's work dir in cache/tmp), runs `cmd`, lets the run go on. */
async function duringRun(cmd: string[]) {
  const { dir } = smallWorkspace();
  const go = join(mkdtempSync(join(tmpdir(), 'compress-sync-')), 'go');
  const running = run(dir, ['--json'], { COMPRESS_TEST_WAIT_AT: `run:stage-done:prune:1:${go}` });
  await waitFor(() => existsSync(`${go}.reached`));
  const during = await cli(cmd, dir);
  writeFileSync(go, '');
  const r = await running;
  return { dir, during, r };
}

for (const sub of ['gc', 'clean']) {
  test(`cache ${sub} while a run uses the cache refuses (exit 75) and the run finishes with its entries`, async () => {
    const { dir, during, r } = await duringRun(['cache', sub]);
    assert.equal(during.exitCode, 75, during.stdout + during.stderr);
    assert.match(during.stderr, new RegExp(`error: cannot (garbage-collect|clean) \\S+cache while a run uses it \\(pid \\d+\\); try again when it has finished`));
    assert.doesNotMatch(during.stderr, STACK);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(r.status, { baseline: 'ran', prune: 'ran', report: 'ran' });
    assert.equal((await cacheOf(dir).listRecords()).length, 3);
    // Once the run has ended the cache is free again.
    const after = await cli(['cache', sub], dir);
    assert.equal(after.exitCode, 0, after.stderr);
  });
}
