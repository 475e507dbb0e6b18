import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareOutputs, gateFailure } from '../src/export/agreement.js';

// 100 samples of 2 classes: the float model is sure on 90 (margin 4) and unsure on 10 (margin 0.01); the
// export adds small noise everywhere and flips `flips` of the unsure ones (and `damage` of the sure ones).
function outputs(flips: number, damage = 0) {
  const n = 100;
  const ref = new Float32Array(n * 2);
  const out = new Float32Array(n * 2);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const margin = i < 90 ? 4 : 0.01;
    ref.set([margin, 0], i * 2);
    const noise = 0.05 * (i % 2 ? 1 : -1);
    const flip = (i >= 90 && i - 90 < flips) || i < damage;
    out.set(flip ? [0, margin + 0.02] : [margin + noise, noise], i * 2);
    labels[i] = 0;
  }
  return { ref, out, labels, n };
}

test('flips of samples within the quantization noise cost top-1 agreement but not confident agreement', () => {
  const o = outputs(5);
  const r = compareOutputs(o.ref, o.out, o.labels, o.n);
  assert.equal(r.agreement, 0.95);
  assert.equal(r.confidentSamples, 90);
  assert.equal(r.confidentAgreement, 1);
  assert.ok(Math.abs(r.flippedMaxMargin - 0.01) < 1e-6);
  assert.ok(Math.abs(r.accuracyDelta + 0.05) < 1e-9);
  assert.equal(gateFailure(r, { confidentThreshold: 0.99, maxAccuracyDrop: 0.1 }), undefined);
});

test('flips of confident samples fail the default gate and say so', () => {
  const o = outputs(0, 3);
  const r = compareOutputs(o.ref, o.out, o.labels, o.n);
  assert.ok(r.confidentAgreement < 0.99, JSON.stringify(r));
  assert.match(gateFailure(r, { confidentThreshold: 0.99, maxAccuracyDrop: 0.1 })!, /samples whose float margin exceeds the quantization noise/);
});

test('an accuracy loss beyond the bound fails; an explicit threshold checks top-1 agreement instead', () => {
  const o = outputs(5);
  const r = compareOutputs(o.ref, o.out, o.labels, o.n);
  assert.match(gateFailure(r, { confidentThreshold: 0.99, maxAccuracyDrop: 0.01 })!, /accuracy drops by 5\.00 points/);
  assert.match(gateFailure(r, { threshold: 0.99, confidentThreshold: 0.99, maxAccuracyDrop: 1 })!, /top-1 agreement 95\.00%/);
});

test('on a small test set the accuracy bound allows one sample, never more', () => {
  // 50 samples: the 1-point bound is half a sample. One flipped correct prediction passes; two fail.
  const n = 50;
  const ref = new Float32Array(n * 2);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) ref.set([0.9, 0.1], i * 2);
  const flip = (k: number) => {
    const out = ref.slice();
    for (let i = 0; i < k; i++) out.set([0.1, 0.9], i * 2);
    return compareOutputs(ref, out, labels, n);
  };
  assert.equal(gateFailure(flip(1), { confidentThreshold: 0, maxAccuracyDrop: 0.01 }), undefined);
  assert.match(gateFailure(flip(2), { confidentThreshold: 0, maxAccuracyDrop: 0.01 })!, /accuracy drops by 4\.00 points \(at most 1\.00 allowed; one sample of 50 would be allowed\)/);
});

test('the quantization noise is that of each sample\'s top two outputs: classes the samples leave near zero do not dilute it', () => {
  const o = outputs(5);
  const k = 1000;
  const pad = (a: Float32Array) => {
    const wide = new Float32Array(o.n * k);
    for (let i = 0; i < o.n; i++) wide.set(a.subarray(i * 2, i * 2 + 2), i * k);
    return wide;
  };
  const two = compareOutputs(o.ref, o.out, o.labels, o.n);
  const wide = compareOutputs(pad(o.ref), pad(o.out), o.labels, o.n);
  assert.ok(Math.abs(wide.noise - two.noise) < 1e-9, `noise ${wide.noise} with ${k} classes, ${two.noise} with 2`);
  assert.equal(wide.confidentSamples, 90);
  assert.equal(wide.confidentAgreement, 1);
});

test('a float32 rounding tie is not a confident sample, even where the export is otherwise exact', () => {
  // A random model's near-uniform outputs: one margin of a few ulps, flipped by float rounding; among 200
  // samples that one difference is far below 3 sigma of the noise it makes itself.
  const n = 200;
  const ref = new Float32Array(n * 2);
  const out = new Float32Array(n * 2);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    ref.set([0.5 + (i === 0 ? 2 ** -22 : 0.01), 0.5], i * 2);
    out.set(i === 0 ? [0.5, 0.5 + 2 ** -22] : ref.subarray(i * 2, i * 2 + 2), i * 2);
  }
  const r = compareOutputs(ref, out, labels, n);
  assert.equal(r.agreement, 199 / 200);
  assert.equal(r.confidentSamples, 199, JSON.stringify(r));
  assert.equal(r.confidentAgreement, 1);
});
