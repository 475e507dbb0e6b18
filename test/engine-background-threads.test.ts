import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { getPriority } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BACKGROUND_NICE, lowerBackgroundThreads, platformThreads } from '../src/engine/background-threads.js';

/** This thread's id (Linux: /proc/thread-self links to <pid>/task/<tid>). */
const threadSelf = () => Number(readlinkSync('/proc/thread-self').split('/').pop());

/** Restoring a priority needs root here (the CI runs as root; elsewhere the lowered threads stay lower). */
const mayRaise = process.getuid?.() === 0;

test('node\'s platform threads are found by their signal mask: neither this thread nor a worker thread', async () => {
  const worker = new Worker("require('node:worker_threads').parentPort.postMessage(Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop()))", { eval: true });
  const workerTid = await new Promise<number>((resolve) => worker.once('message', resolve));
  try {
    const found = platformThreads();
    // Node starts 4 V8 workers and a delayed-task thread unless --v8-pool-size says otherwise.
    assert.ok(found.length >= 2, `found ${found.join(',')}`);
    assert.ok(!found.includes(threadSelf()), 'the calling thread is not a platform thread');
    assert.ok(!found.includes(process.pid), 'the main thread is not a platform thread');
    assert.ok(!found.includes(workerTid), 'a worker thread is not a platform thread');
  } finally {
    await worker.terminate();
  }
});

test('lowering: the platform threads at BACKGROUND_NICE until the last holder releases, then back', () => {
  const tids = platformThreads();
  const before = tids.map((t) => getPriority(t));
  const self = getPriority(threadSelf());
  const first = lowerBackgroundThreads();
  const second = lowerBackgroundThreads();
  assert.deepEqual(tids.map((t) => getPriority(t)), tids.map(() => BACKGROUND_NICE));
  assert.equal(getPriority(threadSelf()), self, 'the calling thread keeps its priority');
  first();
  first(); // a second call of one release does not count twice
  assert.deepEqual(tids.map((t) => getPriority(t)), tids.map(() => BACKGROUND_NICE), 'still held by the second holder');
  second();
  const after = tids.map((t) => getPriority(t));
  if (mayRaise) assert.deepEqual(after, before);
  else assert.ok(after.every((p, i) => p >= before[i]));
});
