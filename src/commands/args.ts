import { UsageError } from '../recipe/errors.js';

/** Command-line argument parsers (kept apart from the commands so `--help` loads nothing else). */
export function collect(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}

export function parseConcurrency(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--concurrency must be a positive integer, got '${v}'`);
  return n;
}
