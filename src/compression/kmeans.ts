import type { KmeansWeightQuant } from '../model/meta.js';
import { createRng } from '../util/rng.js';

/**
 * Weight sharing (Deep Compression, Han et al. 2016): cluster a layer's weights into at most 2^bits
 * shared values with 1-D k-means.
 *
 * Exact zeros (pruned weights) are excluded from clustering. When the layer has any, code 0 is
 * reserved for the value exactly 0 and the non-zero weights get 2^bits - 1 centroids; otherwise all
 * 2^bits codes are non-zero centroids. Non-zero centroids are sorted ascending after code 0.
 * Centroids that end up with no members are dropped, so the codebook can be shorter than 2^bits.
 *
 * Lloyd's iterations are exact and fast in 1-D: the values are sorted once, clusters are contiguous
 * runs between midpoints of adjacent sorted centroids, and cluster sums come from prefix sums, so
 * one iteration costs O(k log n). Iteration stops at a fixed point of the assignment.
 *
 * `init: 'optimal'` starts from the optimal clustering (least squared error) by dynamic programming
 * over the sorted values (Wang & Song's Ckmeans.1d.dp, divide-and-conquer form); above 8192 non-zero
 * values the DP runs over 8192 equal-count runs of sorted values (clusters of whole runs, each run's
 * error exact from prefix sums), then Lloyd's refines on the exact values. Lloyd's never raises the
 * error, so up to 8192 values the result is the exact optimum, and above it stays at or near it: at
 * most the error of Lloyd's from any other start in practice (see the kmeans tests).
 */

export type KmeansInit = 'linear' | 'density' | 'kmeans++' | 'optimal';

export interface KmeansOptions {
  bits: number;
  /** Default 'linear' (the best of the three in the paper). */
  init?: KmeansInit;
  /** Default 1000 (1-D Lloyd iterations are cheap; typical layers converge in < 500). */
  maxIter?: number;
  /** Seed for 'kmeans++'. Default 0. */
  seed?: number;
}

export interface KmeansResult {
  bits: number;
  /** Shared values as float32-representable numbers; codebook[0] === 0 when `hasZero`. */
  codebook: number[];
  /** Code of each weight (Uint8Array for bits <= 8, else Uint16Array). */
  indices: Uint8Array | Uint16Array;
  /** codebook[indices[i]] as float32. */
  dequantized: Float32Array;
  hasZero: boolean;
  iterations: number;
  converged: boolean;
}

export function kmeansQuantize(values: ArrayLike<number>, opts: KmeansOptions): KmeansResult {
  const { bits } = opts;
  if (!Number.isInteger(bits) || bits < 1 || bits > 16) throw new Error(`kmeans supports 1..16 bits, got ${bits}`);
  const init = opts.init ?? 'linear';
  const maxIter = opts.maxIter ?? 1000;
  const n = values.length;

  let nz = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) throw new Error(`cannot cluster non-finite value ${v} at ${i}`);
    if (v !== 0) nz++;
  }
  const hasZero = nz < n;
  const sorted = new Float64Array(nz);
  for (let i = 0, j = 0; i < n; i++) if (values[i] !== 0) sorted[j++] = values[i];
  sorted.sort();
  // Distinct non-zero values bound the useful number of clusters.
  let distinct = 0;
  for (let i = 0; i < nz; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) distinct++;
  const k = Math.min((1 << bits) - (hasZero ? 1 : 0), distinct);

  let centroids: Float64Array = new Float64Array(0);
  let iterations = 0;
  let converged = true;
  if (k > 0) {
    centroids = initCentroids(sorted, k, init, opts.seed ?? 0);
    const prefix = new Float64Array(nz + 1);
    for (let i = 0; i < nz; i++) prefix[i + 1] = prefix[i] + sorted[i];
    let bounds: Int32Array = new Int32Array(k + 1);
    let prevBounds: Int32Array | null = null;
    converged = false;
    for (iterations = 0; iterations < maxIter; ) {
      centroids.sort();
      bounds = clusterBounds(sorted, centroids);
      if (prevBounds && sameBounds(bounds, prevBounds)) {
        converged = true;
        break;
      }
      iterations++;
      for (let c = 0; c < k; c++) {
        const a = bounds[c];
        const b = bounds[c + 1];
        if (b > a) centroids[c] = (prefix[b] - prefix[a]) / (b - a);
      }
      prevBounds = bounds;
    }
    // Final centroids as float32 (what the model stores), sorted, without empty clusters.
    const f = Float64Array.from(centroids, (c) => Math.fround(c)).sort();
    bounds = clusterBounds(sorted, f);
    const kept: number[] = [];
    for (let c = 0; c < k; c++) if (bounds[c + 1] > bounds[c] && (kept.length === 0 || kept[kept.length - 1] !== f[c])) kept.push(f[c]);
    centroids = Float64Array.from(kept);
  }

  const codebook = hasZero ? [0, ...centroids] : Array.from(centroids);
  if (codebook.length === 0) codebook.push(0); // empty tensor
  const indices = bits <= 8 ? new Uint8Array(n) : new Uint16Array(n);
  const dequantized = new Float32Array(n);
  const off = hasZero ? 1 : 0;
  const m = centroids.length;
  // Midpoints between adjacent non-zero centroids; code = off + number of midpoints below v.
  const mids = new Float64Array(Math.max(0, m - 1));
  for (let c = 0; c + 1 < m; c++) mids[c] = (centroids[c] + centroids[c + 1]) / 2;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v === 0 && hasZero) {
      indices[i] = 0;
      dequantized[i] = 0;
      continue;
    }
    let lo = 0;
    let hi = mids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (mids[mid] < v) lo = mid + 1;
      else hi = mid;
    }
    indices[i] = lo + off;
    dequantized[i] = codebook[lo + off];
  }
  return { bits, codebook, indices, dequantized, hasZero, iterations, converged };
}

function initCentroids(sorted: Float64Array, k: number, init: KmeansInit, seed: number): Float64Array {
  const n = sorted.length;
  const min = sorted[0];
  const max = sorted[n - 1];
  const c = new Float64Array(k);
  switch (init) {
    case 'linear':
      for (let i = 0; i < k; i++) c[i] = k === 1 ? (min + max) / 2 : min + ((max - min) * i) / (k - 1);
      return c;
    case 'density':
      // Evenly spaced on the CDF's y axis, read back on the x axis.
      for (let i = 0; i < k; i++) c[i] = sorted[Math.min(n - 1, Math.floor(((i + 0.5) / k) * n))];
      return c;
    case 'optimal':
      return optimalCentroids(sorted, k);
    case 'kmeans++': {
      const rng = createRng(seed);
      const d2 = new Float64Array(n).fill(Infinity);
      c[0] = sorted[Math.floor(rng() * n)];
      for (let j = 1; j < k; j++) {
        let total = 0;
        const last = c[j - 1];
        for (let i = 0; i < n; i++) {
          const d = (sorted[i] - last) * (sorted[i] - last);
          if (d < d2[i]) d2[i] = d;
          total += d2[i];
        }
        if (total === 0) {
          c[j] = c[j - 1];
          continue;
        }
        let r = rng() * total;
        let pick = n - 1;
        for (let i = 0; i < n; i++) {
          r -= d2[i];
          if (r < 0) {
            pick = i;
            break;
          }
        }
        c[j] = sorted[pick];
      }
      return c;
    }
    default:
      throw new Error(`unknown kmeans init '${init as string}'`);
  }
}

/** Runs of sorted values the optimal DP clusters over (each run stays in one cluster). */
const OPTIMAL_RUNS = 8192;

/**
 * Centroids of the least-squared-error partition of `sorted` into k contiguous clusters (1-D
 * k-means' optimum is contiguous), over at most OPTIMAL_RUNS equal-count runs of values.
 * D[m][j] = min_i D[m-1][i] + cost(i, j) over run boundaries; the optimal i is monotone in j, so each
 * layer is filled by divide and conquer in O(R log R) cost evaluations of O(1) each.
 */
function optimalCentroids(sorted: Float64Array, k: number): Float64Array {
  const n = sorted.length;
  const R = Math.min(n, OPTIMAL_RUNS);
  // Run r covers sorted[edge[r], edge[r + 1]).
  const edge = new Int32Array(R + 1);
  for (let r = 0; r <= R; r++) edge[r] = Math.round((r * n) / R);
  const s1 = new Float64Array(n + 1);
  const s2 = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    s1[i + 1] = s1[i] + sorted[i];
    s2[i + 1] = s2[i] + sorted[i] * sorted[i];
  }
  /** Squared error of one cluster made of runs [a, b). */
  const cost = (a: number, b: number): number => {
    const lo = edge[a];
    const hi = edge[b];
    const m = hi - lo;
    if (m <= 0) return 0;
    const t = s1[hi] - s1[lo];
    return Math.max(0, s2[hi] - s2[lo] - (t * t) / m);
  };
  const kk = Math.min(k, R);
  let prev = new Float64Array(R + 1).fill(Infinity);
  for (let j = 1; j <= R; j++) prev[j] = cost(0, j);
  prev[0] = 0;
  const splits: Int32Array[] = [new Int32Array(R + 1)]; // 1 cluster: split at 0
  for (let m = 2; m <= kk; m++) {
    const cur = new Float64Array(R + 1).fill(Infinity);
    const arg = new Int32Array(R + 1);
    // cur[j] = min over i in [m-1, j-1] of prev[i] + cost(i, j), for j in [m, R].
    const solve = (jlo: number, jhi: number, ilo: number, ihi: number) => {
      if (jlo > jhi) return;
      const j = (jlo + jhi) >> 1;
      let best = Infinity;
      let bi = ilo;
      for (let i = ilo; i <= Math.min(ihi, j - 1); i++) {
        const v = prev[i] + cost(i, j);
        if (v < best) {
          best = v;
          bi = i;
        }
      }
      cur[j] = best;
      arg[j] = bi;
      solve(jlo, j - 1, ilo, bi);
      solve(j + 1, jhi, bi, ihi);
    };
    solve(m, R, m - 1, R - 1);
    splits.push(arg);
    prev = cur;
  }
  // Walk the splits back from R to the clusters' run ranges; centroids are their means.
  const c = new Float64Array(k);
  let j = R;
  for (let m = kk; m >= 1; m--) {
    const i = m === 1 ? 0 : splits[m - 1][j];
    const lo = edge[i];
    const hi = edge[j];
    c[m - 1] = hi > lo ? (s1[hi] - s1[lo]) / (hi - lo) : sorted[Math.min(n - 1, lo)];
    j = i;
  }
  // k > runs cannot happen (k <= distinct values <= n, runs = min(n, 8192)) unless k > 8192: spread the rest.
  for (let m = kk; m < k; m++) c[m] = sorted[Math.min(n - 1, Math.floor(((m + 0.5) / k) * n))];
  return c;
}

/** bounds[c]..bounds[c+1] is the run of `sorted` nearest to centroid c (centroids sorted). */
function clusterBounds(sorted: Float64Array, centroids: Float64Array): Int32Array {
  const k = centroids.length;
  const b = new Int32Array(k + 1);
  b[k] = sorted.length;
  for (let c = 1; c < k; c++) {
    const mid = (centroids[c - 1] + centroids[c]) / 2;
    // first index with sorted[i] > mid (ties go to the lower centroid)
    let lo = b[c - 1];
    let hi = sorted.length;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if (sorted[m] <= mid) lo = m + 1;
      else hi = m;
    }
    b[c] = lo;
  }
  return b;
}

function sameBounds(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function dequantizeKmeans(indices: ArrayLike<number>, codebook: ArrayLike<number>): Float32Array {
  const out = new Float32Array(indices.length);
  for (let i = 0; i < indices.length; i++) out[i] = codebook[indices[i]];
  return out;
}

/**
 * Codes of values that already lie on a codebook (e.g. a kernel read back from a model): the index
 * of the nearest codebook entry; exact zeros map to a zero entry when there is one.
 */
export function kmeansCodes(values: ArrayLike<number>, codebook: ArrayLike<number>): Uint8Array | Uint16Array {
  const k = codebook.length;
  const out = k <= 256 ? new Uint8Array(values.length) : new Uint16Array(values.length);
  const order = Array.from({ length: k }, (_, i) => i).sort((a, b) => codebook[a] - codebook[b]);
  const sortedVals = order.map((i) => codebook[i]);
  const zeroIdx = Array.prototype.indexOf.call(codebook, 0) as number;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === 0 && zeroIdx >= 0) {
      out[i] = zeroIdx;
      continue;
    }
    let lo = 0;
    let hi = k - 1;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if ((sortedVals[m] + sortedVals[m + 1]) / 2 < v) lo = m + 1;
      else hi = m;
    }
    out[i] = order[lo];
  }
  return out;
}

export function toKmeansWeightQuant(r: KmeansResult): KmeansWeightQuant {
  return { method: 'kmeans', bits: r.bits, codebook: r.codebook.slice() };
}

/**
 * Deep Compression's centroid gradient: the gradient of the loss w.r.t. a shared value is the sum
 * of the gradients of all weights that share it.
 */
export function centroidGradients(indices: ArrayLike<number>, grads: ArrayLike<number>, codebookSize: number): Float64Array {
  if (indices.length !== grads.length) throw new Error(`indices (${indices.length}) and grads (${grads.length}) differ in length`);
  const g = new Float64Array(codebookSize);
  for (let i = 0; i < indices.length; i++) g[indices[i]] += grads[i];
  return g;
}

export interface CentroidUpdateOptions {
  /** Codes never updated. Default: every code whose value is exactly 0 (the pruned-weight code). */
  fixed?: number[];
}

/**
 * One fine-tuning step on the codebook: c_k -= lr * sum_{i: idx_i = k} dL/dw_i. Returns the new
 * codebook (float32-representable); the zero centroid stays exactly 0. Re-materialise the kernel
 * with `dequantizeKmeans(indices, newCodebook)`.
 */
export function finetuneCentroids(
  codebook: ArrayLike<number>,
  indices: ArrayLike<number>,
  grads: ArrayLike<number>,
  lr: number,
  opts: CentroidUpdateOptions = {},
): number[] {
  const g = centroidGradients(indices, grads, codebook.length);
  const fixed = new Set(opts.fixed ?? Array.from(codebook, (v, i) => (v === 0 ? i : -1)).filter((i) => i >= 0));
  return Array.from(codebook, (c, i) => (fixed.has(i) ? c : Math.fround(c - lr * g[i])));
}
