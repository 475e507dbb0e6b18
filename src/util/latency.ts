/**
 * Batch-1 latency sampling, shared by `evaluate` (the engine) and export verification (the target runtime).
 * Runs `warmup` untimed calls, then times up to `samples` calls; once `minSamples` are timed it stops when
 * the timed calls have taken `budgetMs` in all, so a 224x224 model is not run a hundred times for one metric
 * (a LeNet still gets every sample it asked for).
 */
export interface LatencyOptions {
  samples: number;
  /** Default 5. */
  warmup?: number;
  /** Default 10. */
  minSamples?: number;
  /** Default LATENCY_BUDGET_MS. */
  budgetMs?: number;
  /** Default performance.now (a test passes its own). */
  now?: () => number;
}

/** Wall-clock time the timed calls of one latency measurement may take once `minSamples` are in. */
export const LATENCY_BUDGET_MS = 2000;

/** The duration (ms) of each timed call of `run(i)` (i from 0, as for the warm-up calls), in call order. */
export async function timeCalls(run: (i: number) => unknown, opts: LatencyOptions): Promise<number[]> {
  const warmup = opts.warmup ?? 5;
  const minSamples = opts.minSamples ?? 10;
  const budget = opts.budgetMs ?? LATENCY_BUDGET_MS;
  const now = opts.now ?? (() => performance.now());
  for (let i = 0; i < warmup; i++) await run(i);
  const times: number[] = [];
  let spent = 0;
  for (let i = 0; i < opts.samples; i++) {
    if (times.length >= minSamples && spent >= budget) break;
    const t0 = now();
    await run(i);
    const dt = now() - t0;
    times.push(dt);
    spent += dt;
  }
  return times;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
