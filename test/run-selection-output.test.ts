import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cli, TINY, workspace } from './helpers.js';

test('run --until lists only the stages it runs: the others are neither announced nor reported skipped', async () => {
  const { dir } = workspace(TINY);
  const r = await cli(['run', '--until', 'baseline'], dir);
  const out = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.exitCode, 0, out);
  assert.match(out, /baseline \(train\)/);
  assert.doesNotMatch(out, /prune \(prune\)|report \(evaluate\)|not run/, out);
});
