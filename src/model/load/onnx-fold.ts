import { strides, transpose } from '../../util/ndarray.js';
import type { Const } from './onnx-read.js';

export { transpose } from '../../util/ndarray.js';

/**
 * Pure tensor arithmetic on constants, for constant folding (Shape -> Gather -> Unsqueeze -> Concat
 * chains, Constant values, weight plumbing) and for re-laying out weights (OIHW -> HWIO...).
 */

export const size = (dims: number[]): number => dims.reduce((a, b) => a * b, 1);

export function constOf(dims: number[], values: ArrayLike<number>, int: boolean): Const {
  return { dims, data: int ? Float64Array.from(values) : Float32Array.from(values), int };
}

export const intConst = (values: number[], dims = [values.length]): Const => constOf(dims, values, true);

/** numpy-style broadcast of two shapes, or undefined when they do not broadcast. */
export function broadcastShape(a: number[], b: number[]): number[] | undefined {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return undefined;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Elementwise binary op with numpy broadcasting. */
export function binary(a: Const, b: Const, f: (x: number, y: number) => number, int: boolean): Const | undefined {
  const dims = broadcastShape(a.dims, b.dims);
  if (!dims) return undefined;
  const n = size(dims);
  const out = int ? new Float64Array(n) : new Float32Array(n);
  const os = strides(dims);
  const pick = (c: Const, o: number): number => {
    const off = dims.length - c.dims.length;
    const cs = strides(c.dims);
    let src = 0;
    let rem = o;
    for (let k = 0; k < dims.length; k++) {
      const i = Math.floor(rem / os[k]);
      rem -= i * os[k];
      if (k >= off && c.dims[k - off] !== 1) src += i * cs[k - off];
    }
    return c.data[src];
  };
  for (let o = 0; o < n; o++) out[o] = f(pick(a, o), pick(b, o));
  return { dims, data: out, int };
}

/** numpy.take(data, indices, axis). */
export function gather(c: Const, indices: Const, axis: number): Const {
  const ax = axis < 0 ? axis + c.dims.length : axis;
  const outer = size(c.dims.slice(0, ax));
  const inner = size(c.dims.slice(ax + 1));
  const n = c.dims[ax];
  const idx = Array.from(indices.data, (i) => (i < 0 ? i + n : i));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) for (const i of idx) for (let k = 0; k < inner; k++) out.push(c.data[(o * n + i) * inner + k]);
  return constOf([...c.dims.slice(0, ax), ...indices.dims, ...c.dims.slice(ax + 1)], out, c.int);
}

export function concat(cs: Const[], axis: number): Const {
  const rank = cs[0].dims.length;
  const ax = axis < 0 ? axis + rank : axis;
  const outer = size(cs[0].dims.slice(0, ax));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const c of cs) {
      const chunk = size(c.dims.slice(ax));
      for (let k = 0; k < chunk; k++) out.push(c.data[o * chunk + k]);
    }
  }
  const dims = cs[0].dims.slice();
  dims[ax] = cs.reduce((a, c) => a + c.dims[ax], 0);
  return constOf(dims, out, cs.every((c) => c.int));
}

/** numpy slicing along `axes` with starts/ends/steps (ONNX Slice semantics, clamped). */
export function slice(c: Const, starts: number[], ends: number[], axes: number[], steps: number[]): Const {
  const rank = c.dims.length;
  const ranges = c.dims.map((d) => ({ start: 0, step: 1, count: d }));
  axes.forEach((a0, j) => {
    const a = a0 < 0 ? a0 + rank : a0;
    const d = c.dims[a];
    const step = steps[j] ?? 1;
    let s = starts[j] < 0 ? starts[j] + d : starts[j];
    let e = ends[j] < 0 ? ends[j] + d : ends[j];
    if (step > 0) {
      s = Math.min(Math.max(s, 0), d);
      e = Math.min(Math.max(e, 0), d);
    } else {
      s = Math.min(Math.max(s, -1), d - 1);
      e = Math.min(Math.max(e, -1), d - 1);
    }
    ranges[a] = { start: s, step, count: Math.max(0, Math.ceil((e - s) / step)) };
  });
  const dims = ranges.map((r) => r.count);
  const cs = strides(c.dims);
  const os = strides(dims);
  const out: number[] = [];
  for (let o = 0; o < size(dims); o++) {
    let rem = o;
    let src = 0;
    for (let k = 0; k < rank; k++) {
      const i = Math.floor(rem / os[k]);
      rem -= i * os[k];
      src += (ranges[k].start + i * ranges[k].step) * cs[k];
    }
    out.push(c.data[src]);
  }
  return constOf(dims, out, c.int);
}

/** Resolves an ONNX Reshape target (0 = copy the input's size, -1 = inferred); undefined when impossible. */
export function reshapeTarget(inDims: number[], target: number[], allowZero = false): number[] | undefined {
  const out = target.map((t, i) => (t === 0 && !allowZero ? inDims[i] : t));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const total = size(inDims);
  const free = out.filter((d) => d === -1).length;
  if (free > 1) return undefined;
  if (free === 1) {
    if (known === 0 || total % known !== 0) return undefined;
    return out.map((d) => (d === -1 ? total / known : d));
  }
  return known === total ? out : undefined;
}

/** ONNX-style axis normalisation. */
export const axisOf = (a: number, rank: number): number => (a < 0 ? a + rank : a);
