import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { diffSums, fakeQuant, minMax } from '../src/compression/tensor-stats.js';
import { chooseQParams, codeRange } from '../src/compression/linear.js';
import { createRng } from '../src/util/rng.js';

/** Sizes around the SIMD kernels' vector width: below 4 takes the JS loop, the rest a last vector that overlaps. */
const SIZES = [1, 3, 4, 5, 7, 64, 4099];

function values(n: number, seed: number, scale = 4): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
}

/** The quantizer as tf ops (round half away from zero), the form the one-pass kernel replaces. */
function fakeQuantOps(tf: typeof tfType, x: tfType.Tensor, range: { min: number; max: number }, bits: number): tfType.Tensor {
  const { scale, zeroPoint } = chooseQParams(range.min, range.max, bits, false);
  const { qmin, qmax } = codeRange(bits, false);
  return tf.tidy(() => {
    const v = x.div(scale);
    const r = v.sign().mul(v.abs().add(0.5).floor());
    return r.add(zeroPoint).clipByValue(qmin, qmax).sub(zeroPoint).mul(scale);
  });
}

test('fakeQuant equals the tf-op quantizer bit for bit: ties, clipping, negatives, every size', async () => {
  const { tf } = await initEngine('wasm');
  const range = { min: -1.3, max: 2.1 };
  const { scale } = chooseQParams(range.min, range.max, 8, false);
  for (const n of SIZES) {
    const v = values(n, n);
    // exact ties (k + 0.5 steps, both signs) and values beyond the range on both sides
    for (let i = 0; i < n; i += 3) v[i] = Math.fround((Math.round(v[i] / scale) + (i % 2 ? 0.5 : -0.5)) * scale);
    const x = tf.tensor(v);
    for (const bits of [8, 4]) {
      const got = fakeQuant(tf, x, range, bits);
      const want = fakeQuantOps(tf, x, range, bits);
      assert.deepEqual(Array.from(got.dataSync()), Array.from(want.dataSync()), `n=${n} bits=${bits}`);
      tf.dispose([got, want]);
    }
    x.dispose();
  }
});

test('minMax equals tf.min / tf.max for every size', async () => {
  const { tf } = await initEngine('wasm');
  for (const n of SIZES) {
    const x = tf.tensor(values(n, 100 + n));
    const want = [tf.min(x).dataSync()[0], tf.max(x).dataSync()[0]];
    assert.deepEqual(minMax(tf, x), want, `n=${n}`);
    x.dispose();
  }
});

test('diffSums: sum ref^2, sum (approx - ref)^2 and max |approx - ref| as float64 sums give them, over all values or the first count', async () => {
  const { tf } = await initEngine('wasm');
  for (const n of SIZES) {
    const r = values(n, 200 + n);
    const q = Float32Array.from(values(n, 300 + n, 0.1), (d, i) => r[i] + d);
    for (const count of [n, Math.floor(n / 2)]) {
      let s = 0, e = 0, m = 0;
      for (let i = 0; i < count; i++) {
        const d = Math.fround(q[i] - r[i]);
        s += r[i] * r[i];
        e += d * d;
        m = Math.max(m, Math.abs(d));
      }
      const rt = tf.tensor(r);
      const qt = tf.tensor(q);
      const got = diffSums(tf, rt, qt, count);
      assert.ok(Math.abs(got.refSq - s) <= 1e-12 * Math.max(1, s), `n=${n} count=${count} refSq ${got.refSq} vs ${s}`);
      assert.ok(Math.abs(got.errSq - e) <= 1e-12 * Math.max(1, e), `n=${n} count=${count} errSq ${got.errSq} vs ${e}`);
      assert.equal(got.maxAbs, m, `n=${n} count=${count}`);
      tf.dispose([rt, qt]);
    }
  }
});
