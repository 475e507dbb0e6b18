/**
 * V8's background threads yield to data-parallel replicas.
 *
 * With W replicas on W cores every core runs a replica, and V8's platform threads (concurrent
 * TurboFan compilation of each replica's isolate, GC helpers: ~25-40 ms of CPU a step over the steps
 * after warm-up of a MobileNetV2-0.35 step, measured) can only run by preempting one. A preempted
 * replica is the step's straggler and the others wait for it: measured ~12 ms a step of run-queue wait
 * per replica (/proc/<tid>/schedstat). At a lower priority (a higher nice value) the background work
 * runs in the gaps instead (a replica waiting for the others, the optimizer step), and the replicas'
 * run-queue wait drops to ~4 ms. Priorities do not change results, only when threads run.
 *
 * Linux only (per-thread nice values, /proc/self/task); elsewhere nothing is found and nothing changes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** The nice value V8's background threads get while replicas train (0 is the default, 19 the lowest). */
export const BACKGROUND_NICE = 19;

/** SIGUSR1's bit in /proc/<tid>/status's SigBlk mask (signal n is bit n - 1). */
const SIGUSR1_BIT = 1n << 9n;

/**
 * The thread ids of node's platform threads (V8's background workers and its delayed-task thread).
 * Node creates them at start-up, before it installs its SIGUSR1 handler (the inspector's), with
 * SIGUSR1 blocked, and they keep that mask; JS threads (the main thread, worker threads) and libuv's
 * pool block nothing, and node's signal-watching thread blocks every signal (Node 20, measured).
 * Empty where /proc is not there.
 */
export function platformThreads(): number[] {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const tid of tids) {
    const mask = blockedSignals(tid);
    if (mask !== undefined && mask === SIGUSR1_BIT) out.push(Number(tid));
  }
  return out;
}

/** A thread's blocked-signal mask, or undefined if the thread has exited or /proc cannot be read. */
function blockedSignals(tid: string): bigint | undefined {
  try {
    const m = /^SigBlk:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/self/task/${tid}/status`, 'latin1'));
    return m ? BigInt(`0x${m[1]}`) : undefined;
  } catch {
    return undefined;
  }
}

/** Priorities to put back, by thread id, while at least one holder is active. */
let lowered: Map<number, number> | undefined;
let holders = 0;

/**
 * Lowers node's platform threads to BACKGROUND_NICE until the returned function is called (nested and
 * concurrent holders share one lowering; the last release restores). A thread whose priority is
 * already that low or lower is left alone. Restoring needs the right to raise a priority again (root,
 * or RLIMIT_NICE): without it the threads keep the lower priority for the rest of the process.
 */
export function lowerBackgroundThreads(): () => void {
  if (holders++ === 0) {
    lowered = new Map();
    for (const tid of platformThreads()) {
      try {
        const was = getPriority(tid);
        if (was >= BACKGROUND_NICE) continue;
        setPriority(tid, BACKGROUND_NICE);
        lowered.set(tid, was);
      } catch {
        // the thread has exited, or this process may not change it: it keeps its priority
      }
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders > 0) return;
    for (const [tid, was] of lowered ?? []) {
      try {
        setPriority(tid, was);
      } catch {
        // not permitted to raise it again (see above), or the thread has exited
      }
    }
    lowered = undefined;
  };
}
