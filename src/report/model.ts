/**
 * The report's data model, apart from any rendering: the models a run produced (points with their
 * sizes), the baseline they are compared with, the accuracy-vs-size pareto front, and the one set of
 * formatters summary.md, report.html, `report --compare` and the terminal print numbers with.
 */
import type { ReportJson } from './write.js';
import { modelRows, type ModelRow } from './sizes.js';

export type Stage = ReportJson['stages'][number];

export const EXIT_MEANING: Record<number, string> = { 0: 'ok', 1: 'a stage failed', 2: 'invalid recipe or usage', 3: 'a gate failed', 130: 'interrupted' };

export interface ModelPoint extends ModelRow {
  /** Whether `size` is not a real file's bytes (an estimate or dense fp32). */
  sizeEstimated: boolean;
}

/** Every model a stage reports (one per exported file), with the size to plot and whether it is a file's. */
export function modelPoints(s: Pick<Stage, 'id' | 'uses' | 'status' | 'metrics'>): ModelPoint[] {
  return modelRows(s).map((r) => ({ ...r, sizeEstimated: r.sizeKind !== undefined && r.sizeKind !== 'file' }));
}

/**
 * The stage the outputs are compared with: one named `baseline`, else the first train/load stage with an accuracy,
 * else the first evaluate stage (a load stage reports no accuracy: an imported model's is measured by the evaluate
 * after it; comparing with the load left every 'vs baseline' cell blank).
 */
export function baselineOf<S extends Pick<Stage, 'id' | 'uses' | 'status' | 'metrics'>>(stages: S[]): S | undefined {
  const accuracy = (s: S) => typeof (s.metrics as Record<string, unknown> | undefined)?.accuracy === 'number';
  return (
    stages.find((s) => s.id === 'baseline' && s.status !== 'failed') ??
    stages.find((s) => (s.uses === 'train' || s.uses === 'load') && accuracy(s)) ??
    stages.find((s) => s.uses === 'evaluate' && accuracy(s))
  );
}

/**
 * For each point, whether it is on the pareto front of (smaller x, larger y): no other point is at least as
 * small and at least as accurate while strictly better in one of the two.
 */
export function paretoFront(points: Array<{ x: number; y: number }>): boolean[] {
  return points.map((p) => !points.some((q) => q !== p && q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y)));
}

/** Points of the accuracy-vs-size chart: every model with both an accuracy and a size, and whether it is on the front. */
export function scatterPoints(r: Pick<ReportJson, 'stages'>): Array<ModelPoint & { front: boolean }> {
  const pts = r.stages.flatMap(modelPoints).map((p) => ({ ...p, id: p.label })).filter((p) => p.accuracy !== undefined && p.size !== undefined && p.size > 0);
  const front = paretoFront(pts.map((p) => ({ x: p.size!, y: p.accuracy! })));
  return pts.map((p, i) => ({ ...p, front: front[i] }));
}

// --- formatters: a missing value prints as `empty` ('—' in tables, '' where a blank reads better) ---

export const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** 0.9712 -> `97.12%`. */
export function fmtPct(v: unknown, digits = 2, empty = '—'): string {
  const n = num(v);
  return n === undefined ? empty : `${(n * 100).toFixed(digits)}%`;
}

/** Bytes in B, KiB or MiB (binary units). */
export function fmtBytes(v: unknown, empty = '—'): string {
  const n = num(v);
  if (n === undefined) return empty;
  if (Math.abs(n) < 1024) return `${Math.round(n)} B`;
  if (Math.abs(n) < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

/** A ratio: `12.3x` (markdown, terminal) or `12.3×` (HTML); whole numbers from 100 up. */
export function fmtRatio(v: unknown, times: 'x' | '×' = '×', empty = '—'): string {
  const n = num(v);
  return n === undefined ? empty : `${n.toFixed(n >= 100 ? 0 : 1)}${times}`;
}

/** Megabytes of memory, whole (peak memory of a stage's worker). */
export function fmtMb(v: unknown, empty = '—'): string {
  const n = num(v);
  return n === undefined ? empty : `${n.toFixed(0)} MB`;
}

/** Milliseconds with three decimals. */
export function fmtMs(v: unknown, empty = '—'): string {
  const n = num(v);
  return n === undefined ? empty : `${n.toFixed(3)} ms`;
}

/** A change of a fraction in percentage points: `+1.20 pp`, `−0.35 pp`. */
export function fmtPp(delta: number | undefined, empty = ''): string {
  return delta === undefined ? empty : `${delta >= 0 ? '+' : '−'}${Math.abs(delta * 100).toFixed(2)} pp`;
}

/** A plain number, up to `precision` significant digits (integers as they are). */
export function fmtNumber(v: unknown, precision = 5, empty = '—'): string {
  const n = num(v);
  if (n === undefined) return empty;
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(precision)));
}
