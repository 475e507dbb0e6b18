import type * as tfType from '@tensorflow/tfjs';
import { rebuildModel, type LayerReplacement } from '../model/rebuild.js';

/**
 * Low-rank factorization of Dense kernels [in, out] (and conv kernels viewed as [h*w*in, out]).
 *
 * SVD: eigen-decomposition of the smaller Gram matrix (A^T A or A A^T) in float64 (Householder +
 * implicit QL, with cyclic Jacobi as fallback), then the other singular vectors by projection. The reconstruction of rank r is
 * A V_r V_r^T (or U_r U_r^T A), which is exact at full rank whatever the accuracy of tiny singular
 * values, and the factors split sqrt(sigma) across both sides: A ~= (U_r S_r^1/2)(S_r^1/2 V_r^T).
 */

export interface SvdResult {
  /** m x k, row-major, columns are left singular vectors (zero for numerically null directions). */
  u: Float64Array;
  /** All min(m, n) singular values, descending. */
  s: Float64Array;
  /** n x k, row-major, columns are right singular vectors. */
  v: Float64Array;
  m: number;
  n: number;
  /** Number of singular vectors returned (columns of u and v). */
  k: number;
}

/**
 * Eigen-decomposition of a symmetric n x n matrix (row-major): eigenvalues (unsorted) and the
 * eigenvectors as columns of a row-major n x n matrix. Householder tridiagonalisation + implicit QL
 * (the EISPACK tred2/tql2 pair, as in JAMA); falls back to cyclic Jacobi if QL fails to converge.
 */
export function symmetricEigen(matrix: ArrayLike<number>, n: number): { values: Float64Array; vectors: Float64Array } {
  return householderQlEigen(matrix, n) ?? jacobiEigen(matrix, n);
}

function householderQlEigen(matrix: ArrayLike<number>, n: number): { values: Float64Array; vectors: Float64Array } | null {
  if (n === 0) return { values: new Float64Array(0), vectors: new Float64Array(0) };
  const V = Float64Array.from(matrix);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  // tred2
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        V[j * n + i] = f;
        g = e[j] + V[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j] * d[k];
          e[k] += V[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) V[k * n + j] -= f * e[k] + g * d[k];
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i];
    V[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1] * V[k * n + j];
        for (let k = 0; k <= i; k++) V[k * n + j] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j];
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
  // tql2, on the transpose so that rotations of eigenvector columns touch contiguous memory
  const W = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) W[i * n + k] = V[k * n + i];
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 100) return null;
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          const r0 = i * n;
          const r1 = r0 + n;
          for (let k = 0; k < n; k++) {
            h = W[r1 + k];
            W[r1 + k] = s * W[r0 + k] + c * h;
            W[r0 + k] = c * W[r0 + k] - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
  for (let i = 0; i < n; i++) if (!Number.isFinite(d[i])) return null;
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) V[k * n + i] = W[i * n + k];
  return { values: d, vectors: V };
}

/** Cyclic Jacobi eigen-decomposition (slower, used as a fallback): same contract as symmetricEigen. */
export function jacobiEigen(matrix: ArrayLike<number>, n: number, maxSweeps = 60): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let norm2 = 0;
  for (let i = 0; i < n * n; i++) norm2 += a[i] * a[i];
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
    if (off <= 1e-30 * norm2 || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p];
        const aqq = a[q * n + q];
        // Skip rotations that would not change the diagonal in float64.
        if (Math.abs(apq) < 1e-18 * Math.sqrt(Math.abs(app * aqq)) && sweep > 3) {
          a[p * n + q] = 0;
          a[q * n + p] = 0;
          continue;
        }
        const theta = (aqq - app) / (2 * apq);
        const t = theta === 0 ? 1 : Math.sign(theta) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        const rp = p * n;
        const rq = q * n;
        for (let k = 0; k < n; k++) {
          const apk = a[rp + k];
          const aqk = a[rq + k];
          a[rp + k] = c * apk - s * aqk;
          a[rq + k] = s * apk + c * aqk;
        }
        a[p * n + q] = 0;
        a[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i];
  return { values, vectors: v };
}

/**
 * Thin SVD of an m x n row-major matrix: all k = min(m, n) singular values, and the first
 * `vectors` (default k) left and right singular vectors.
 */
export function svd(matrix: ArrayLike<number>, m: number, n: number, opts: { vectors?: number } = {}): SvdResult {
  const g = gramEigen(matrix, m, n);
  return singularVectors(g, Math.min(g.k, opts.vectors ?? g.k));
}

interface GramEigen {
  a: Float64Array;
  m: number;
  n: number;
  k: number;
  tall: boolean;
  /** singular values, descending */
  s: Float64Array;
  /** k x k eigenvectors of the Gram matrix, columns in the order of s */
  e: Float64Array;
}

function gramEigen(matrix: ArrayLike<number>, m: number, n: number): GramEigen {
  if (matrix.length !== m * n) throw new Error(`svd: expected ${m * n} values, got ${matrix.length}`);
  const a = Float64Array.from(matrix);
  const tall = m >= n;
  const k = Math.min(m, n);
  // Gram of the smaller side: tall -> A^T A (n x n), wide -> A A^T (m x m).
  const g = new Float64Array(k * k);
  if (tall) {
    for (let i = 0; i < m; i++) {
      const row = i * n;
      for (let p = 0; p < n; p++) {
        const x = a[row + p];
        if (x === 0) continue;
        const gp = p * n;
        for (let q = p; q < n; q++) g[gp + q] += x * a[row + q];
      }
    }
  } else {
    for (let p = 0; p < m; p++) {
      for (let q = p; q < m; q++) {
        let sum = 0;
        for (let j = 0; j < n; j++) sum += a[p * n + j] * a[q * n + j];
        g[p * k + q] = sum;
      }
    }
  }
  for (let p = 0; p < k; p++) for (let q = p + 1; q < k; q++) g[q * k + p] = g[p * k + q];
  const { values, vectors } = symmetricEigen(g, k);
  const order = Array.from({ length: k }, (_, i) => i).sort((x, y) => values[y] - values[x]);
  const s = Float64Array.from(order, (i) => Math.sqrt(Math.max(0, values[i])));
  const e = new Float64Array(k * k);
  order.forEach((src, j) => {
    for (let i = 0; i < k; i++) e[i * k + j] = vectors[i * k + src];
  });
  return { a, m, n, k, tall, s, e };
}

/** The first r singular vectors: the Gram side from its eigenvectors, the other by projection. */
function singularVectors(g: GramEigen, r: number): SvdResult {
  const { a, m, n, k, tall, s, e } = g;
  const small = Math.max(m, n) * 1e-15 * (s[0] ?? 0);
  const side = new Float64Array(k * r);
  for (let i = 0; i < k; i++) for (let j = 0; j < r; j++) side[i * r + j] = e[i * k + j];
  // other = A E_r S_r^-1 (tall) or A^T E_r S_r^-1 (wide), with contiguous inner loops.
  const rows = tall ? m : n;
  const other = new Float64Array(rows * r);
  for (let i = 0; i < m; i++) {
    for (let q = 0; q < n; q++) {
      const x = a[i * n + q];
      if (x === 0) continue;
      const o = tall ? i * r : q * r;
      const src = tall ? q * r : i * r;
      for (let j = 0; j < r; j++) other[o + j] += x * side[src + j];
    }
  }
  for (let j = 0; j < r; j++) {
    const inv = s[j] > small ? 1 / s[j] : 0;
    for (let i = 0; i < rows; i++) other[i * r + j] *= inv;
  }
  return tall ? { u: other, s, v: side, m, n, k: r } : { u: side, s, v: other, m, n, k: r };
}

export interface RankChoice {
  /** Fixed rank (clamped to min(in, out)). */
  rank?: number;
  /** Keep the smallest r with sum of top-r sigma^2 >= energy * total (0 < energy <= 1). */
  energy?: number;
}

export function chooseRank(singularValues: ArrayLike<number>, choice: RankChoice): number {
  const k = singularValues.length;
  if (choice.rank !== undefined) {
    if (!Number.isInteger(choice.rank) || choice.rank < 1) throw new Error(`rank must be a positive integer, got ${choice.rank}`);
    return Math.min(choice.rank, k);
  }
  if (choice.energy === undefined) throw new Error('give a rank or an energy fraction');
  if (!(choice.energy > 0 && choice.energy <= 1)) throw new Error(`energy must be in (0, 1], got ${choice.energy}`);
  let total = 0;
  for (let i = 0; i < k; i++) total += singularValues[i] ** 2;
  let acc = 0;
  for (let r = 1; r <= k; r++) {
    acc += singularValues[r - 1] ** 2;
    if (acc >= choice.energy * total * (1 - 1e-12)) return r;
  }
  return k;
}

export interface LowRankFactors {
  /** [rows, rank] row-major (rows = in for Dense, h*w*in for conv). */
  a: Float32Array;
  /** [rank, out] row-major. */
  b: Float32Array;
  rank: number;
  rows: number;
  cols: number;
  /** All min(rows, cols) singular values, descending. */
  singularValues: number[];
  /** sum of kept sigma^2 / total sigma^2. */
  energyKept: number;
  /** ||W - A B||_F / ||W||_F predicted by the discarded singular values. */
  relativeError: number;
}

/** Low-rank factors of a kernel [in, out] or [h, w, in, out] (viewed as [h*w*in, out]). */
export function factorizeKernel(kernel: ArrayLike<number>, shape: readonly number[], choice: RankChoice): LowRankFactors {
  const cols = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((x, y) => x * y, 1);
  if (shape.length < 2 || rows * cols !== kernel.length) throw new Error(`factorize: bad kernel shape [${shape.join(',')}]`);
  const g = gramEigen(kernel, rows, cols);
  const r = chooseRank(g.s, choice);
  const d = singularVectors(g, r);
  const a = new Float32Array(rows * r);
  const b = new Float32Array(r * cols);
  for (let j = 0; j < r; j++) {
    const h = Math.sqrt(d.s[j]);
    for (let i = 0; i < rows; i++) a[i * r + j] = d.u[i * d.k + j] * h;
    for (let q = 0; q < cols; q++) b[j * cols + q] = d.v[q * d.k + j] * h;
  }
  let total = 0;
  let kept = 0;
  d.s.forEach((x, i) => {
    total += x * x;
    if (i < r) kept += x * x;
  });
  return {
    a,
    b,
    rank: r,
    rows,
    cols,
    singularValues: Array.from(d.s),
    energyKept: total > 0 ? kept / total : 1,
    relativeError: total > 0 ? Math.sqrt(Math.max(0, total - kept) / total) : 0,
  };
}

export interface FactorizeSelection extends RankChoice {
  layer: string;
}

export interface FactorizedLayerInfo {
  layer: string;
  kind: 'dense' | 'conv2d';
  rank: number;
  rows: number;
  cols: number;
  paramsBefore: number;
  paramsAfter: number;
  energyKept: number;
  relativeError: number;
}

type Layer = tfType.layers.Layer;
type LayerConfig = Record<string, unknown>;

/** One selected Dense / Conv2D layer as `<name>_u` then `<name>_v`, with the factor weights and what changed. */
function factorizedLayer(tf: typeof tfType, layer: Layer, arg: tfType.SymbolicTensor | tfType.SymbolicTensor[], sel: FactorizeSelection): LayerReplacement & { info: FactorizedLayerInfo } {
  const weights = layer.getWeights();
  const shape = weights[0].shape;
  const f = factorizeKernel(weights[0].dataSync(), shape, sel);
  const cfg = layer.getConfig() as LayerConfig;
  const isDense = layer.getClassName() === 'Dense';
  const common = { trainable: cfg.trainable !== false };
  const out = { useBias: Boolean(cfg.useBias), activation: cfg.activation as 'linear', name: `${layer.name}_v` };
  let u: Layer;
  let v: Layer;
  if (isDense) {
    u = tf.layers.dense({ ...common, units: f.rank, useBias: false, activation: 'linear', name: `${layer.name}_u` });
    v = tf.layers.dense({ ...common, ...out, units: f.cols });
  } else {
    if (cfg.dataFormat && cfg.dataFormat !== 'channelsLast') throw new Error(`factorize: ${layer.name} is not channelsLast`);
    u = tf.layers.conv2d({
      ...common,
      filters: f.rank,
      kernelSize: cfg.kernelSize as number[],
      strides: cfg.strides as number[],
      padding: cfg.padding as 'valid' | 'same',
      dilationRate: cfg.dilationRate as [number, number],
      useBias: false,
      activation: 'linear',
      name: `${layer.name}_u`,
    });
    v = tf.layers.conv2d({ ...common, ...out, filters: f.cols, kernelSize: 1 });
  }
  const outputs = [v.apply(u.apply(arg) as tfType.SymbolicTensor) as tfType.SymbolicTensor];
  const aShape = isDense ? [f.rows, f.rank] : [...shape.slice(0, -1), f.rank];
  const bShape = isDense ? [f.rank, f.cols] : [1, 1, f.rank, f.cols];
  const biasParams = weights.slice(1).reduce((acc, w) => acc + w.size, 0);
  return {
    outputs,
    setWeights: () =>
      tf.tidy(() => {
        u.setWeights([tf.tensor(f.a, aShape)]);
        v.setWeights([tf.tensor(f.b, bShape), ...weights.slice(1)]);
      }),
    info: {
      layer: layer.name,
      kind: isDense ? 'dense' : 'conv2d',
      rank: f.rank,
      rows: f.rows,
      cols: f.cols,
      paramsBefore: weights.reduce((acc, w) => acc + w.size, 0),
      paramsAfter: f.a.length + f.b.length + biasParams,
      energyKept: f.energyKept,
      relativeError: f.relativeError,
    },
  };
}

/**
 * Rebuilds a functional model with each selected Dense (or Conv2D) layer replaced by two layers:
 * `<name>_u` (linear, no bias; Dense with `rank` units, or Conv2D with the original kernel size,
 * strides, padding, dilation and `rank` filters) and `<name>_v` (Dense with the original units, or
 * a 1x1 Conv2D, carrying the original bias and activation). Every other layer is cloned with its
 * weights. The input model is left untouched.
 */
export function factorizeModel(
  tf: typeof tfType,
  model: tfType.LayersModel,
  selections: FactorizeSelection[],
): { model: tfType.LayersModel; layers: FactorizedLayerInfo[] } {
  const byName = new Map(selections.map((s) => [s.layer, s]));
  for (const s of selections) {
    const l = model.layers.find((x) => x.name === s.layer);
    if (!l) throw new Error(`factorize: no layer named ${s.layer}`);
    const cls = l.getClassName();
    if (cls !== 'Dense' && cls !== 'Conv2D') throw new Error(`factorize: layer ${s.layer} is a ${cls}, not Dense or Conv2D`);
  }
  const info: FactorizedLayerInfo[] = [];
  const rebuilt = rebuildModel(tf, model, (layer, arg) => {
    const sel = byName.get(layer.name);
    if (!sel) return undefined;
    const r = factorizedLayer(tf, layer, arg, sel);
    info.push(r.info);
    return r;
  });
  return { model: rebuilt, layers: info };
}
