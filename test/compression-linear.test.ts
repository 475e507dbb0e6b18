import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  quantizeLinear,
  dequantizeLinear,
  linearCodes,
  codeRange,
  toLinearWeightQuant,
  float32ToFloat16Bits,
  float16BitsToFloat32,
  float16RoundTrip,
} from '../src/compression/index.js';
import { createRng } from '../src/util/rng.js';

function randomKernel(shape: number[], seed: number, sparsity = 0.3): Float32Array {
  const rng = createRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = rng() < sparsity ? 0 : (rng() - 0.4) * 0.5 * (1 + (i % 7));
  return w;
}

const cases: Array<{ shape: number[]; axis: number | null }> = [
  { shape: [20, 12], axis: null },
  { shape: [20, 12], axis: 1 },
  { shape: [3, 3, 4, 6], axis: 3 },
  { shape: [3, 3, 5, 1], axis: 2 }, // depthwise [h, w, in, mult]
];

test('linear: |x - deq| <= scale/2, codes in range, zeros exact, for 2..8 bits, sym/asym, per-tensor/per-channel', () => {
  let seed = 1;
  for (const bits of [2, 3, 4, 5, 6, 7, 8]) {
    for (const symmetric of [true, false]) {
      for (const { shape, axis } of cases) {
        const w = randomKernel(shape, seed++);
        const r = quantizeLinear(w, shape, { bits, symmetric, axis });
        const { qmin, qmax } = codeRange(bits, symmetric);
        const channels = axis === null ? 1 : shape[axis];
        assert.equal(r.scales.length, channels);
        assert.equal(r.zeroPoints.length, channels);
        let stride = 1;
        if (axis !== null) for (let d = axis + 1; d < shape.length; d++) stride *= shape[d];
        for (let i = 0; i < w.length; i++) {
          const c = axis === null ? 0 : Math.floor(i / stride) % channels;
          const s = r.scales[c];
          assert.ok(r.q[i] >= qmin && r.q[i] <= qmax, `code ${r.q[i]} outside [${qmin}, ${qmax}]`);
          assert.ok(Math.abs(w[i] - r.dequantized[i]) <= s / 2 + 1e-6 * s, `bits=${bits} sym=${symmetric} axis=${axis} i=${i}: err ${Math.abs(w[i] - r.dequantized[i])} > ${s / 2}`);
          if (w[i] === 0) assert.equal(r.dequantized[i], 0);
          if (symmetric) assert.equal(r.zeroPoints[c], 0);
        }
        // dequantizeLinear / linearCodes agree with the result
        const meta = toLinearWeightQuant(r);
        assert.deepEqual(dequantizeLinear(r.q, shape, meta), r.dequantized);
        assert.deepEqual(linearCodes(r.dequantized, shape, meta), r.q);
      }
    }
  }
});

test('linear: symmetric 8-bit uses [-127, 127] and hits the extremes; asymmetric covers one-signed data', () => {
  const w = Float32Array.from([-1, -0.5, 0, 0.25, 1]);
  const r = quantizeLinear(w, [5, 1], { bits: 8, symmetric: true });
  assert.deepEqual(Array.from(r.q), [-127, -64, 0, 32, 127]);
  assert.equal(r.scales[0], 1 / 127);
  const pos = Float32Array.from([0, 0.5, 1, 2]);
  const a = quantizeLinear(pos, [4], { bits: 4, symmetric: false });
  assert.equal(a.zeroPoints[0], -8); // 0 maps to qmin
  assert.equal(a.q[3], 7);
  assert.equal(a.dequantized[0], 0);
  assert.ok(Math.abs(a.dequantized[3] - 2) < 1e-6);
});

test('linear: all-zero channels and rejecting bad arguments', () => {
  const w = new Float32Array(8);
  const r = quantizeLinear(w, [4, 2], { bits: 4, symmetric: false, axis: -1 });
  assert.equal(r.axis, 1);
  assert.deepEqual(Array.from(r.dequantized), Array.from(w));
  assert.throws(() => quantizeLinear(w, [4, 2], { bits: 9, symmetric: true }));
  assert.throws(() => quantizeLinear(w, [4, 3], { bits: 4, symmetric: true }));
});

test('float16: exact values, rounding, subnormals, overflow, NaN', () => {
  assert.equal(float32ToFloat16Bits(1), 0x3c00);
  assert.equal(float32ToFloat16Bits(-2), 0xc000);
  assert.equal(float32ToFloat16Bits(65504), 0x7bff);
  assert.equal(float32ToFloat16Bits(65520), 0x7c00); // rounds to Inf
  assert.equal(float32ToFloat16Bits(2 ** -24), 0x0001);
  assert.equal(float32ToFloat16Bits(2 ** -25), 0x0000); // tie to even -> 0
  assert.equal(float32ToFloat16Bits(1.5 * 2 ** -25), 0x0001);
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.equal(float16BitsToFloat32(0x7c00), Infinity);
  assert.ok(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN))));
  assert.ok(Object.is(float16BitsToFloat32(float32ToFloat16Bits(-0)), -0));
  // every finite half round-trips exactly
  for (let h = 0; h < 0x10000; h++) {
    const e = (h >>> 10) & 0x1f;
    if (e === 0x1f) continue;
    assert.equal(float32ToFloat16Bits(float16BitsToFloat32(h)), h);
  }
  // relative error of normal values <= 2^-11
  const rng = createRng(7);
  const x = Float32Array.from({ length: 1000 }, () => (rng() - 0.5) * 10);
  const y = float16RoundTrip(x);
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) <= Math.abs(x[i]) * 2 ** -11 + 2 ** -25);
});
