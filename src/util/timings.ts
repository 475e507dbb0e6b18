import { writeFileSync } from 'node:fs';

/**
 * Where one process's time goes, for benchmarks (`npm run bench -- remote`): with env
 * COMPRESS_TIMINGS=<file>, the process writes at exit a JSON of phase marks (ms since the process
 * started, node's own start-up included, and the CPU time used by then), summed spans (ms and calls; spans of parallel work overlap)
 * and its CPU time. Without it every call here is a no-op.
 */
const file = process.env.COMPRESS_TIMINGS;
const marks = new Map<string, number>();
/** CPU time (user + system, ms) the process had used when each mark was reached. */
const cpuAt = new Map<string, number>();
const spans = new Map<string, { ms: number; cpuMs: number; calls: number }>();

export interface Timings {
  marks: Record<string, number>;
  cpuAt: Record<string, number>;
  /** Wall and process CPU time while each span was open, summed over its calls (work running alongside included). */
  spans: Record<string, { ms: number; cpuMs: number; calls: number }>;
  /** process.cpuUsage() at exit, microseconds. */
  cpu: { user: number; system: number };
  exitMs: number;
}

/** Records the first time a phase is reached. */
export function mark(name: string): void {
  if (file && !marks.has(name)) {
    marks.set(name, performance.now());
    const c = process.cpuUsage();
    cpuAt.set(name, (c.user + c.system) / 1000);
  }
}

/** Runs `f`, adding its duration to the span `name`. */
export async function timed<T>(name: string, f: () => Promise<T>): Promise<T> {
  if (!file) return f();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  try {
    return await f();
  } finally {
    const c = process.cpuUsage(c0);
    const s = spans.get(name) ?? { ms: 0, cpuMs: 0, calls: 0 };
    spans.set(name, s);
    s.ms += performance.now() - t0;
    s.cpuMs += (c.user + c.system) / 1000;
    s.calls++;
  }
}

if (file) {
  process.on('exit', () => {
    const t: Timings = { marks: Object.fromEntries(marks), cpuAt: Object.fromEntries(cpuAt), spans: Object.fromEntries(spans), cpu: process.cpuUsage(), exitMs: performance.now() };
    writeFileSync(file, JSON.stringify(t));
  });
}
