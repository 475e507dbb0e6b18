/** The data-file digest memo (cache/file-digests.json) is a hint: a damaged entry is never trusted (issue 20). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lockDigests, run, smallWorkspace } from './reliability-util.js';

test('a corrupted digest in cache/file-digests.json is re-hashed: every stage stays cached and the lock is unchanged', async () => {
  const { dir } = smallWorkspace();
  const first = await run(dir, []);
  assert.equal(first.exitCode, 0, first.stderr);
  const lock = lockDigests(join(dir, 'compress.lock'));
  const memo = join(dir, '.compress', 'cache', 'file-digests.json');
  const entries = JSON.parse(readFileSync(memo, 'utf8'));
  const csv = Object.keys(entries).find((f) => f.endsWith('d.csv'))!;
  assert.ok(csv, 'the data file is in the memo');
  const d = entries[csv].sha256 as string;
  entries[csv].sha256 = (d[0] === '0' ? '1' : '0') + d.slice(1);
  writeFileSync(memo, JSON.stringify(entries));
  const again = await run(dir, ['--json']);
  assert.equal(again.exitCode, 0, again.stderr);
  assert.deepEqual(again.status, { baseline: 'cached', prune: 'cached', report: 'cached' });
  assert.deepEqual(lockDigests(join(dir, 'compress.lock')), lock);
  assert.equal(JSON.parse(readFileSync(memo, 'utf8'))[csv].sha256, d, 'the memo holds the real digest again');
});
