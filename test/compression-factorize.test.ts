import { test } from 'node:test';
import assert from 'node:assert/strict';
import { svd, factorizeKernel, factorizeModel, chooseRank, symmetricEigen, jacobiEigen } from '../src/compression/index.js';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { createRng } from '../src/util/rng.js';

function randomMatrix(m: number, n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: m * n }, () => rng() * 2 - 1);
}

function matmul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) c[i * n + j] += a[i * k + p] * b[p * n + j];
  return c;
}

function relErr(ref: ArrayLike<number>, x: ArrayLike<number>): number {
  let s = 0;
  let e = 0;
  for (let i = 0; i < ref.length; i++) (s += ref[i] ** 2), (e += (ref[i] - x[i]) ** 2);
  return Math.sqrt(e / s);
}

test('svd: orthonormal singular vectors, descending values, exact reconstruction (tall and wide)', () => {
  for (const [m, n] of [
    [30, 12],
    [9, 25],
  ]) {
    const a = randomMatrix(m, n, m * 100 + n);
    const d = svd(a, m, n);
    for (let j = 1; j < d.k; j++) assert.ok(d.s[j] <= d.s[j - 1]);
    for (const [mat, rows] of [
      [d.u, m],
      [d.v, n],
    ] as const) {
      for (let p = 0; p < d.k; p++)
        for (let q = 0; q < d.k; q++) {
          let dot = 0;
          for (let i = 0; i < rows; i++) dot += mat[i * d.k + p] * mat[i * d.k + q];
          assert.ok(Math.abs(dot - (p === q ? 1 : 0)) < 1e-9, `gram[${p},${q}] = ${dot}`);
        }
    }
    const rec = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let r = 0; r < d.k; r++) rec[i * n + j] += d.u[i * d.k + r] * d.s[r] * d.v[j * d.k + r];
    assert.ok(relErr(a, rec) < 1e-10);
  }
  // known singular values: diag(3, 2, 1) embedded in a rotation-free matrix
  const d = svd([3, 0, 0, 0, -2, 0, 0, 0, 1, 0, 0, 0], 4, 3);
  assert.deepEqual(Array.from(d.s, (x) => Math.round(x * 1e9) / 1e9), [3, 2, 1]);
});

test('symmetric eigen: Householder-QL and the Jacobi fallback agree and diagonalise', () => {
  const n = 12;
  const b = randomMatrix(n, n, 21);
  const sym = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) sym[i * n + j] = b[i * n + j] + b[j * n + i];
  for (const eig of [symmetricEigen, jacobiEigen]) {
    const { values, vectors } = eig(sym, n);
    // A v_j = lambda_j v_j
    for (let j = 0; j < n; j++)
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let q = 0; q < n; q++) av += sym[i * n + q] * vectors[q * n + j];
        assert.ok(Math.abs(av - values[j] * vectors[i * n + j]) < 1e-10);
      }
  }
  const sorted = (x: Float64Array) => Array.from(x).sort((p, q) => p - q);
  const a = sorted(symmetricEigen(sym, n).values);
  const c = sorted(jacobiEigen(sym, n).values);
  a.forEach((v, i) => assert.ok(Math.abs(v - c[i]) < 1e-10));
});

test('factorizeKernel: error strictly decreases with rank, ~0 at full rank, energy rank rule', () => {
  const [m, n] = [40, 16];
  const w = randomMatrix(m, n, 3);
  const x = randomMatrix(8, m, 4); // a batch of inputs: output = x W
  const ref = matmul(x, w, 8, m, n);
  let prev = Infinity;
  for (let r = 1; r <= n; r++) {
    const f = factorizeKernel(w, [m, n], { rank: r });
    assert.equal(f.rank, r);
    const out = matmul(matmul(x, f.a, 8, m, r), f.b, 8, r, n);
    const e = relErr(ref, out);
    assert.ok(e < prev, `rank ${r}: ${e} >= ${prev}`);
    // Frobenius error of W matches the discarded singular values
    assert.ok(Math.abs(relErr(w, matmul(f.a, f.b, m, r, n)) - f.relativeError) < 1e-5);
    prev = e;
  }
  assert.ok(prev < 1e-5, `full-rank error ${prev}`);
  const s = [4, 2, 1, 1];
  assert.equal(chooseRank(s, { energy: 16 / 22 }), 1);
  assert.equal(chooseRank(s, { energy: 0.9 }), 2);
  assert.equal(chooseRank(s, { energy: 1 }), 4);
  assert.equal(chooseRank(s, { rank: 10 }), 4);
  const f = factorizeKernel(w, [m, n], { energy: 0.8 });
  assert.ok(f.energyKept >= 0.8 && f.rank < n);
  // conv kernel viewed as [h*w*in, out]
  const conv = factorizeKernel(randomMatrix(3 * 3 * 4 * 6, 1, 5), [3, 3, 4, 6], { rank: 6 });
  assert.equal(conv.rows, 36);
  assert.ok(conv.relativeError < 1e-9);
});

test('factorizeModel: lenet-300-100 and lenet-5 at full rank match the original; lower rank shrinks params', async () => {
  const { tf } = await initEngine('wasm');
  const rng = createRng(1);
  const x = tf.tensor(Float32Array.from({ length: 16 * 784 }, () => rng()), [16, 28, 28, 1]);
  const mlp = buildModel(tf, 'lenet-300-100', { inputShape: [28, 28, 1], numClasses: 10, seed: 7 });
  // give biases non-zero values so they are checked too
  const d2 = mlp.getLayer('dense_2');
  d2.setWeights([d2.getWeights()[0], tf.fill([100], 0.05)]);
  const full = factorizeModel(tf, mlp, [{ layer: 'dense_2', rank: 100 }, { layer: 'dense_3', energy: 1 }]);
  const names = full.model.layers.map((l) => l.name);
  assert.deepEqual(names, ['input', 'flatten', 'dense_1', 'dense_2_u', 'dense_2_v', 'dense_3_u', 'dense_3_v']);
  assert.equal(full.model.getLayer('dense_2_u').getWeights().length, 1);
  assert.equal((full.model.getLayer('dense_3_v').getConfig() as { activation: string }).activation, 'softmax');
  const y0 = mlp.predict(x) as import('@tensorflow/tfjs').Tensor;
  const y1 = full.model.predict(x) as import('@tensorflow/tfjs').Tensor;
  const maxDiff = tf.max(tf.abs(tf.sub(y0, y1))).dataSync()[0];
  assert.ok(maxDiff < 1e-4, `full-rank max diff ${maxDiff}`);
  const low = factorizeModel(tf, mlp, [{ layer: 'dense_1', rank: 20 }]);
  assert.equal(low.layers[0].paramsBefore, 784 * 300 + 300);
  assert.equal(low.layers[0].paramsAfter, 784 * 20 + 20 * 300 + 300);
  assert.equal(low.model.countParams(), mlp.countParams() - low.layers[0].paramsBefore + low.layers[0].paramsAfter);
  // partial-rank predictions are close but not exact; rank 20 of 300 already changes the output
  const y3 = low.model.predict(x) as import('@tensorflow/tfjs').Tensor;
  assert.ok(tf.max(tf.abs(tf.sub(y0, y3))).dataSync()[0] > 1e-4);
  // the original is untouched
  const y2 = mlp.predict(x) as import('@tensorflow/tfjs').Tensor;
  assert.equal(tf.max(tf.abs(tf.sub(y0, y2))).dataSync()[0], 0);

  const cnn = buildModel(tf, 'lenet-5', { inputShape: [28, 28, 1], numClasses: 10, seed: 8 });
  const fc = factorizeModel(tf, cnn, [{ layer: 'conv_2', rank: 50 }, { layer: 'dense_2', rank: 10 }]);
  const c0 = cnn.predict(x) as import('@tensorflow/tfjs').Tensor;
  const c1 = fc.model.predict(x) as import('@tensorflow/tfjs').Tensor;
  const cDiff = tf.max(tf.abs(tf.sub(c0, c1))).dataSync()[0];
  assert.ok(cDiff < 1e-4, `lenet-5 full-rank max diff ${cDiff}`);
  assert.throws(() => factorizeModel(tf, cnn, [{ layer: 'pool_1', rank: 2 }]), /not Dense or Conv2D/);
});
