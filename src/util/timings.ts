import { writeFileSync } from 'node:fs';

/**
 * Where one process's time goes, for benchmarks (`npm run bench -- remote`): with env
 * COMPRESS_TIMINGS=<file>, the process writes at exit a JSON of phase marks (ms since the process
 * started, node's own start-up included), summed spans (ms and calls; spans of parallel work overlap)
 * and its CPU time. Without it every call here is a no-op.
 */
const file = process.env.COMPRESS_TIMINGS;
const marks: Record<string, number> = {};
const spans: Record<string, { ms: number; calls: number }> = {};

export interface Timings {
  marks: Record<string, number>;
  spans: Record<string, { ms: number; calls: number }>;
  /** process.cpuUsage() at exit, microseconds. */
  cpu: { user: number; system: number };
  exitMs: number;
}

/** Records the first time a phase is reached. */
export function mark(name: string): void {
  if (file && !Object.hasOwn(marks, name)) marks[name] = performance.now();
}

/** Runs `f`, adding its duration to the span `name`. */
export async function timed<T>(name: string, f: () => Promise<T>): Promise<T> {
  if (!file) return f();
  const t0 = performance.now();
  try {
    return await f();
  } finally {
    const s = (spans[name] ??= { ms: 0, calls: 0 });
    s.ms += performance.now() - t0;
    s.calls++;
  }
}

if (file) {
  process.on('exit', () => {
    const t: Timings = { marks, spans, cpu: process.cpuUsage(), exitMs: performance.now() };
    writeFileSync(file, JSON.stringify(t));
  });
}
