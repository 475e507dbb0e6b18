import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accountSizes, accountSizesInBackground, relativeIndexEntries, gzipSize, kmeansQuantize, toKmeansWeightQuant } from '../src/compression/index.js';
import { createRng } from '../src/util/rng.js';

test('size: relative indices with padding, checked by hand', () => {
  const k = Float32Array.from([0, 1, 0, 0, 0, 0, 0, 2]);
  const e = relativeIndexEntries(k, 2); // gaps of 2 bits: at most 3 zeros skipped per entry
  assert.deepEqual(Array.from(e.positions), [1, 5, 7]);
  assert.deepEqual(Array.from(e.gaps), [1, 3, 1]);
  assert.deepEqual(Array.from(e.padding), [0, 1, 0]);
  assert.deepEqual(Array.from(relativeIndexEntries(new Float32Array(40), 3).positions), []);
});

test('size: tiny layer accounting, checked by hand', () => {
  const kernel = Float32Array.from([0, 1, 0, 0, 0, 0, 0, 2]);
  const bias = Float32Array.from([0.5, -0.5]);
  // unquantized, no Huffman
  let r = accountSizes([{ name: 'd', kernel, shape: [4, 2], bias }], { indexBits: 2, huffman: false, gzip: false });
  let row = r.layers[0];
  assert.equal(row.params, 8);
  assert.equal(row.biasParams, 2);
  assert.equal(row.nonzeros, 2);
  assert.equal(row.keptFraction, 0.25);
  assert.equal(row.entries, 3);
  assert.equal(row.paddingEntries, 1);
  assert.equal(row.denseBytes, 8 * 4 + 8); // 40
  assert.equal(row.sparseBytes, Math.ceil((3 * (32 + 2)) / 8) + 8); // 13 + 8 = 21
  assert.equal(row.quantBytes, 21);
  assert.equal(row.finalBytes, 21);
  assert.equal(row.storage, 'sparse-fp32');
  assert.equal(row.ratio, 40 / 21);

  // k-means 2 bits, codebook [0, 1, 2] (3 x 32 bits), with Huffman
  const quant = { method: 'kmeans' as const, bits: 2, codebook: [0, 1, 2] };
  r = accountSizes([{ name: 'd', kernel, shape: [4, 2], bias, quant }], { indexBits: 2, gzip: false });
  row = r.layers[0];
  assert.equal(row.paramBits, 96);
  assert.equal(row.quantBytes, Math.ceil((3 * (2 + 2) + 96) / 8) + 8); // 14 + 8
  // Huffman: values [1, 0(pad), 2] -> lengths {1,2,2}: 5 bits + table (16 + 3*5) + count 32 = 68;
  //          gaps [1, 3, 1] -> 2 used symbols of length 1: 3 bits + table (16 + 4*5) + 32 = 71.
  assert.equal(row.huffmanBytes, Math.ceil((68 + 71 + 96) / 8) + 8); // 30 + 8
  assert.equal(row.finalBytes, 21); // the sparse fp32 layout is still the smallest for 8 weights
  assert.equal(r.total.denseBytes, 40);
  assert.equal(r.total.ratio, 40 / 21);
});

test('size: linear 8-bit dense layer, no bias, default indexBits 5', () => {
  const kernel = Float32Array.from([0.5, 0, -1, 1]);
  const quant = { method: 'linear' as const, bits: 8, symmetric: true, axis: null, scales: [1 / 127], zeroPoints: [0] };
  const r = accountSizes([{ name: 'l', kernel, shape: [2, 2], quant }], { huffman: false, gzip: false });
  const row = r.layers[0];
  assert.equal(row.indexBits, 5);
  assert.equal(row.bits, 8);
  assert.equal(row.denseBytes, 16);
  assert.equal(row.sparseBytes, Math.ceil((3 * 37) / 8)); // 14
  assert.equal(row.quantBytes, Math.ceil((3 * 13 + 32) / 8)); // 9
  assert.equal(row.finalBytes, Math.ceil((4 * 8 + 32) / 8)); // 8: dense codes beat sparse
  assert.equal(row.storage, 'dense-quant');
  assert.equal(row.ratio, 2);
  // conv kernels default to 8-bit gaps
  const conv = accountSizes([{ name: 'c', kernel: new Float32Array(9).fill(1), shape: [3, 3, 1, 1] }], { gzip: false });
  assert.equal(conv.layers[0].indexBits, 8);
});

test('size: pruned + k-means + Huffman layer compresses well, totals add up, gzip', () => {
  const rng = createRng(5);
  const n = 300 * 100;
  const kernel = new Float32Array(n);
  for (let i = 0; i < n; i++) if (rng() < 0.1) kernel[i] = (rng() - 0.5) * 0.2;
  const km = kmeansQuantize(kernel, { bits: 4 });
  const bias = new Float32Array(100);
  const layers = [
    { name: 'a', kernel: km.dequantized, shape: [300, 100], bias, quant: toKmeansWeightQuant(km), codes: km.indices },
    { name: 'b', kernel: Float32Array.from({ length: 64 }, () => rng() - 0.5), shape: [8, 8] },
  ];
  const r = accountSizes(layers);
  const a = r.layers[0];
  assert.ok(a.keptFraction > 0.08 && a.keptFraction < 0.12);
  assert.ok(a.huffmanBytes < a.quantBytes && a.quantBytes < a.sparseBytes && a.sparseBytes < a.denseBytes);
  assert.ok(a.storage === 'sparse-huffman' || a.storage === 'dense-huffman');
  assert.ok(a.ratio > 20, `ratio ${a.ratio}`);
  assert.ok(a.gzipBytes > 0 && a.gzipBytes < a.denseBytes);
  assert.equal(r.layers[1].storage, 'dense-fp32');
  assert.equal(r.total.denseBytes, a.denseBytes + r.layers[1].denseBytes);
  assert.equal(r.total.finalBytes, a.finalBytes + r.layers[1].finalBytes);
  assert.equal(r.total.ratio, r.total.denseBytes / r.total.finalBytes);
  // codes derived from the kernel give the same numbers
  const derived = accountSizes([{ ...layers[0], codes: undefined }]);
  assert.deepEqual(derived.layers[0], a);
  assert.ok(gzipSize(new Uint8Array(10000)) < 100);
});

test('size: the background accounting (gzip in the thread pool) gives the same report as the synchronous one', async () => {
  const rng = createRng(11);
  const pruned = Float32Array.from({ length: 4096 }, () => (rng() < 0.3 ? rng() - 0.5 : 0));
  const km = kmeansQuantize(pruned, { bits: 5 });
  const layers = [
    { name: 'conv', kernel: km.dequantized, shape: [4, 4, 16, 16], quant: toKmeansWeightQuant(km), codes: km.indices, bias: new Float32Array(16).fill(0.5) },
    { name: 'dense', kernel: Float32Array.from({ length: 640 }, () => rng() - 0.5), shape: [64, 10] },
  ];
  const { sizes } = accountSizesInBackground(layers);
  const background = await sizes;
  assert.deepEqual(background, accountSizes(layers));
  assert.ok(background.layers.every((l) => l.gzipBytes > 0), 'every layer has its gzip size');
});
