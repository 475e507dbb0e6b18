import { test } from 'node:test';
import assert from 'node:assert/strict';
import { timeCalls } from '../src/util/latency.js';

/** A clock that advances `ms` during each call of the returned run (no real time passes). */
function fakeRun(ms: number) {
  let t = 0;
  const calls: number[] = [];
  return { calls, now: () => t, run: (i: number) => void (calls.push(i), (t += ms)) };
}

test('latency sampling: every requested run when they are fast; fewer once 10 runs have taken the budget; never fewer than 10', async () => {
  const fast = fakeRun(1);
  assert.equal((await timeCalls(fast.run, { samples: 100, now: fast.now })).length, 100);
  assert.deepEqual(fast.calls.slice(0, 7), [0, 1, 2, 3, 4, 0, 1], 'five warm-up calls, then timed calls from sample 0');

  const mid = fakeRun(50);
  const times = await timeCalls(mid.run, { samples: 100, now: mid.now });
  assert.equal(times.length, 40, '40 x 50 ms reach the 2 s budget');
  assert.ok(times.every((t) => t === 50));

  const slow = fakeRun(300);
  assert.equal((await timeCalls(slow.run, { samples: 100, now: slow.now })).length, 10);
  const few = fakeRun(300);
  assert.equal((await timeCalls(few.run, { samples: 4, now: few.now })).length, 4, 'at most the requested samples');
});
