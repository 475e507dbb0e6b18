/**
 * A thread of compress's conv kernel pool (./pool.ts): instantiates the conv module over the shared
 * wasm heap, then runs the part of a kernel call the main thread posts in its control block, until
 * told to stop. Between calls it polls for SPIN_MS (the next part of a pass usually comes sooner than a
 * futex wake would deliver it), then blocks in Atomics.wait: an idle pool leaves its cores free.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CONTROL, KERNELS, spinWhileEqual, type PoolWorkerData } from './pool.js';

const { module, memory, control } = workerData as PoolWorkerData;
const kernels = new WebAssembly.Instance(module, { env: { memory } }).exports as Record<string, (...args: number[]) => void>;
const ctl = new Int32Array(control, 0, CONTROL.ints);
const args = new Float64Array(control, CONTROL.argsOffset, CONTROL.args);
const run = KERNELS.map((name) => kernels[name]);

Atomics.store(ctl, CONTROL.ready, 1);
parentPort!.postMessage('ready');
let seen = 0;
for (;;) {
  if (!spinWhileEqual(ctl, CONTROL.posted, seen)) Atomics.wait(ctl, CONTROL.posted, seen);
  seen = Atomics.load(ctl, CONTROL.posted);
  if (seen < 0) break;
  const f = run[Atomics.load(ctl, CONTROL.kernel)];
  const n = Atomics.load(ctl, CONTROL.argc);
  f(...Array.from(args.subarray(0, n)));
  Atomics.store(ctl, CONTROL.done, seen);
  Atomics.notify(ctl, CONTROL.done);
}
