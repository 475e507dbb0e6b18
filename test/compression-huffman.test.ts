import { test } from 'node:test';
import assert from 'node:assert/strict';
import { huffmanEncode, huffmanDecode, huffmanCodeLengths, canonicalCodes, huffmanEncodedBits, kmeansQuantize } from '../src/compression/index.js';
import { initEngine } from '../src/engine/backend.js';
import { buildModel } from '../src/engine/models.js';
import { createRng } from '../src/util/rng.js';

test('huffman: code lengths satisfy Kraft with equality and codes are prefix-free', () => {
  const lengths = huffmanCodeLengths([5, 9, 12, 13, 16, 45, 0]);
  assert.deepEqual(Array.from(lengths), [4, 4, 3, 3, 3, 1, 0]);
  const kraft = Array.from(lengths).reduce((a, l) => a + (l ? 2 ** -l : 0), 0);
  assert.equal(kraft, 1);
  const codes = canonicalCodes(lengths);
  const words = Array.from(lengths).flatMap((l, s) => (l ? [codes[s].toString(2).padStart(l, '0')] : []));
  for (const a of words) for (const b of words) if (a !== b) assert.ok(!b.startsWith(a), `${a} prefixes ${b}`);
});

test('huffman: round trip on edge cases', () => {
  for (const syms of [[], [3], [2, 2, 2, 2], [0, 1], Array.from({ length: 300 }, (_, i) => i % 256)]) {
    const enc = huffmanEncode(syms);
    assert.equal(enc.bytes.length, Math.ceil(enc.totalBits / 8));
    assert.deepEqual(Array.from(huffmanDecode(enc.bytes)), syms);
  }
  // length limit binds on a Fibonacci-like distribution
  const freqs = [1, 1];
  while (freqs.length < 40) freqs.push(freqs[freqs.length - 1] + freqs[freqs.length - 2]);
  const lens = huffmanCodeLengths(freqs, 24);
  assert.ok(Math.max(...lens) <= 24);
  assert.ok(Array.from(lens).reduce((a, l) => a + 2 ** -l, 0) <= 1);
});

test('huffman: round trip on k-means indices of a lenet-300-100 kernel; beats fixed width', async () => {
  const { tf } = await initEngine('wasm');
  const model = buildModel(tf, 'lenet-300-100', { inputShape: [28, 28, 1], numClasses: 10, seed: 42 });
  const kernel = model.getLayer('dense_2').getWeights()[0].dataSync() as Float32Array; // [300, 100]
  // prune 80% by magnitude so the zero code dominates, as after Deep Compression's pruning
  const sorted = Float32Array.from(kernel, Math.abs).sort();
  const thr = sorted[Math.floor(0.8 * sorted.length)];
  const pruned = kernel.map((v) => (Math.abs(v) < thr ? 0 : v));
  const km = kmeansQuantize(pruned, { bits: 5 });
  const enc = huffmanEncode(km.indices, km.codebook.length);
  assert.deepEqual(huffmanDecode(enc.bytes), Uint32Array.from(km.indices));
  const fixedBits = 5 * km.indices.length;
  assert.ok(enc.totalBits < fixedBits, `${enc.totalBits} >= ${fixedBits}`);
  assert.deepEqual(
    { ...huffmanEncodedBits(km.indices, km.codebook.length), lengths: undefined },
    { headerBits: enc.headerBits, tableBits: enc.tableBits, payloadBits: enc.payloadBits, totalBits: enc.totalBits, lengths: undefined },
  );
  // the unpruned kernel's indices round-trip too
  const dense = kmeansQuantize(kernel, { bits: 8 });
  const enc2 = huffmanEncode(dense.indices, 256);
  assert.deepEqual(huffmanDecode(enc2.bytes), Uint32Array.from(dense.indices));
  model.dispose();
});

test('huffman: skewed random stream is smaller than fixed width, uniform is not much larger', () => {
  const rng = createRng(9);
  const skewed = Array.from({ length: 5000 }, () => Math.min(15, Math.floor(-Math.log2(1 - rng()))));
  const enc = huffmanEncode(skewed, 16);
  assert.deepEqual(Array.from(huffmanDecode(enc.bytes)), skewed);
  assert.ok(enc.totalBits < 4 * skewed.length * 0.6);
  const uniform = Array.from({ length: 4096 }, (_, i) => i % 16);
  assert.equal(huffmanEncode(uniform, 16).payloadBits, 4 * 4096);
});
