import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kmeansQuantize, kmeansCodes, dequantizeKmeans, centroidGradients, finetuneCentroids, toKmeansWeightQuant } from '../src/compression/index.js';
import { createRng } from '../src/util/rng.js';

function weights(n: number, seed: number, sparsity: number): Float32Array {
  const rng = createRng(seed);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (rng() < sparsity) continue;
    // roughly bell-shaped
    w[i] = (rng() + rng() + rng() - 1.5) * 0.2;
  }
  return w;
}

for (const init of ['linear', 'density', 'kmeans++'] as const) {
  test(`kmeans (${init}): <= 2^N values, zeros kept, nearest centroid, converged`, () => {
    for (const [bits, sparsity] of [
      [2, 0.5],
      [3, 0],
      [4, 0.9],
      [5, 0.2],
      [8, 0.6],
    ] as const) {
      const w = weights(4000, bits * 10 + 1, sparsity);
      const r = kmeansQuantize(w, { bits, init, seed: 3 });
      assert.ok(r.converged, `bits ${bits} did not converge`);
      assert.ok(r.codebook.length <= 2 ** bits);
      assert.equal(new Set(r.dequantized).size <= 2 ** bits, true);
      assert.equal(r.hasZero, sparsity > 0);
      if (r.hasZero) assert.equal(r.codebook[0], 0);
      // non-zero centroids sorted, distinct, non-zero
      const nz = r.codebook.slice(r.hasZero ? 1 : 0);
      for (let i = 0; i < nz.length; i++) {
        assert.notEqual(nz[i], 0);
        assert.equal(Math.fround(nz[i]), nz[i]);
        if (i > 0) assert.ok(nz[i] > nz[i - 1]);
      }
      for (let i = 0; i < w.length; i++) {
        assert.equal(r.dequantized[i], r.codebook[r.indices[i]]);
        if (w[i] === 0) {
          assert.equal(r.dequantized[i], 0);
          continue;
        }
        assert.notEqual(r.indices[i], r.hasZero ? 0 : -1, 'non-zero weight on the zero code');
        const d = Math.abs(w[i] - r.dequantized[i]);
        for (const c of nz) assert.ok(d <= Math.abs(w[i] - c) + 1e-12, `weight ${i} not at its nearest centroid`);
      }
      // each non-zero centroid is (float32 of) the mean of its members at convergence
      const sum = new Float64Array(r.codebook.length);
      const cnt = new Float64Array(r.codebook.length);
      for (let i = 0; i < w.length; i++) if (w[i] !== 0) (sum[r.indices[i]] += w[i]), cnt[r.indices[i]]++;
      for (let c = r.hasZero ? 1 : 0; c < r.codebook.length; c++) assert.ok(Math.abs(sum[c] / cnt[c] - r.codebook[c]) < 1e-6);
      assert.deepEqual(kmeansCodes(r.dequantized, r.codebook), r.indices);
      assert.deepEqual(dequantizeKmeans(r.indices, r.codebook), r.dequantized);
      assert.deepEqual(toKmeansWeightQuant(r), { method: 'kmeans', bits, codebook: r.codebook });
    }
  });
}

test('kmeans: seeded kmeans++ is deterministic; few distinct values; >8 bits uses Uint16Array', () => {
  const w = weights(2000, 5, 0.3);
  const a = kmeansQuantize(w, { bits: 4, init: 'kmeans++', seed: 11 });
  const b = kmeansQuantize(w, { bits: 4, init: 'kmeans++', seed: 11 });
  assert.deepEqual(a.codebook, b.codebook);
  const few = Float32Array.from([0, 1, 1, 2, 0, 2, 1]);
  const f = kmeansQuantize(few, { bits: 4 });
  assert.deepEqual(f.codebook, [0, 1, 2]);
  assert.deepEqual(Array.from(f.dequantized), Array.from(few));
  const big = kmeansQuantize(w, { bits: 10 });
  assert.ok(big.indices instanceof Uint16Array);
  const allZero = kmeansQuantize(new Float32Array(5), { bits: 2 });
  assert.deepEqual(allZero.codebook, [0]);
});

test('kmeans fine-tuning: gradients summed per centroid, zero centroid fixed', () => {
  const codebook = [0, -0.5, 0.5];
  const indices = Uint8Array.from([0, 1, 2, 1, 2, 0]);
  const grads = Float32Array.from([9, 0.25, -1, 0.75, -1, 9]);
  assert.deepEqual(Array.from(centroidGradients(indices, grads, 3)), [18, 1, -2]);
  const next = finetuneCentroids(codebook, indices, grads, 0.1);
  assert.equal(next[0], 0);
  assert.equal(next[1], Math.fround(-0.6));
  assert.equal(next[2], Math.fround(0.7));
});

const sse = (v: Float32Array, q: Float32Array) => v.reduce((a, x, i) => a + (q[i] - x) ** 2, 0);

test("kmeans init 'optimal': the exact least-error clustering of a small set (checked against every partition)", () => {
  // 1-D k-means' optimum is contiguous in sorted order: enumerate every split of 10 values into 3 runs.
  const v = Float32Array.from([0.9, -0.3, 0.05, 0.7, -0.8, 0.11, 0.4, -0.35, 0.6, 0.2]);
  const s = Array.from(v).sort((a, b) => a - b);
  const runCost = (a: number, b: number) => {
    const m = s.slice(a, b).reduce((x, y) => x + y, 0) / (b - a);
    return s.slice(a, b).reduce((x, y) => x + (y - m) ** 2, 0);
  };
  let best = Infinity;
  for (let i = 1; i < s.length - 1; i++) for (let j = i + 1; j < s.length; j++) best = Math.min(best, runCost(0, i) + runCost(i, j) + runCost(j, s.length));
  const q = kmeansQuantize(v, { bits: 2, init: 'optimal' }); // no zeros: 4 centroids; compare 3 via bits 2 minus one
  const q3 = kmeansQuantize(Float32Array.from([0, ...v]), { bits: 2, init: 'optimal' }); // a zero reserves code 0: 3 centroids
  assert.equal(q.codebook.length, 4);
  assert.equal(q3.codebook.length, 4);
  assert.ok(Math.abs(sse(Float32Array.from([0, ...v]), q3.dequantized) - best) < 1e-6, `${sse(Float32Array.from([0, ...v]), q3.dequantized)} vs optimum ${best}`);
});

test("kmeans init 'optimal': squared error at most Lloyd's from every other start, on seeded weights small and large", () => {
  for (const [n, seed, sparsity] of [[3000, 11, 0.3], [60000, 12, 0.5], [200000, 13, 0]] as const) {
    const w = weights(n, seed, sparsity);
    for (const bits of [3, 5]) {
      const opt = sse(w, kmeansQuantize(w, { bits, init: 'optimal' }).dequantized);
      for (const init of ['linear', 'density', 'kmeans++'] as const) {
        const lloyd = sse(w, kmeansQuantize(w, { bits, init, seed: 1 }).dequantized);
        assert.ok(opt <= lloyd * (1 + 1e-9), `n ${n}, ${bits} bits: optimal ${opt} > ${init} ${lloyd}`);
      }
    }
  }
});
