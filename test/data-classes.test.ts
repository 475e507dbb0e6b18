import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fitDataToModel } from '../src/data/fit.js';
import { loadSplits } from '../src/data/load.js';
import type { DataSpec } from '../src/data/load.js';
import { encodeNpy } from '../src/data/npy.js';
import { cli, workspace } from './helpers.js';

const data = (numClasses: number, classNames?: string[]) => ({
  x: new Float32Array(4),
  y: Int32Array.of(0, 1),
  n: 2,
  sampleShape: [2],
  numClasses,
  ...(classNames ? { classNames } : {}),
});

test('classes: labels that index fewer classes than the model outputs are taken as the model\'s; more, or named classes that differ, are an error naming both counts', () => {
  assert.equal(fitDataToModel(data(3), [2], 'ev', 10).numClasses, 10);
  assert.equal(fitDataToModel(data(10), [2], 'ev', 10).numClasses, 10);
  assert.throws(() => fitDataToModel(data(12), [2], 'ev', 10), /the data has 12 classes but the model's output has 10 units/);
  assert.throws(() => fitDataToModel(data(3, ['bird', 'cat', 'dog']), [2], 'ft', 1000), /the data has 3 classes \(bird, cat, dog\) but the model's output has 1000 units.*\n.*hint: give the model one output per class folder.*or list the model's 1000 class names in its output order as the dataset's classes:/s);
});

test('classes: a stage whose data has more classes than the model has outputs fails naming both (exit 1, no stack); labels within them evaluate', async () => {
  const { dir } = workspace(`version: 1
name: classes
seed: 3
data:
  digits: { source: mnist, limit: 200 }
  wide: { source: files, features: x.npy, labels: wide.npy }
  few: { source: files, features: x.npy, labels: few.npy }
stages:
  base:
    uses: train
    with: { model: mlp-small, epochs: 1, batchSize: 50, data: digits }
  too-many:
    uses: evaluate
    needs: [base]
    with: { data: wide, split: train, latencySamples: 0 }
  subset:
    uses: evaluate
    needs: [base]
    with: { data: few, split: train, latencySamples: 0 }
`);
  const n = 24;
  writeFileSync(join(dir, 'x.npy'), encodeNpy(new Float32Array(n * 784).map((_, i) => (i % 7) / 7), [n, 784], 'f4'));
  writeFileSync(join(dir, 'wide.npy'), encodeNpy(Int32Array.from({ length: n }, (_, i) => i % 12), [n], 'i4'));
  writeFileSync(join(dir, 'few.npy'), encodeNpy(Int32Array.from({ length: n }, (_, i) => i % 3), [n], 'i4'));
  const r = await cli(['run'], dir);
  const out = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.exitCode, 1, out);
  assert.match(r.stderr, /stage 'too-many' failed: \S*x\.npy: the data has 12 classes but the model's output has 10 units/);
  assert.doesNotMatch(out, /\n\s+at /);
  assert.match(r.stdout, /^ {2}subset +ran +accuracy/m, out);
});

test('samples whose axes are the model input\'s in another order are refused, not re-viewed (layout: nchw missing or wrong)', () => {
  const d = (shape: number[]) => ({ x: new Float32Array(2 * shape.reduce((a, b) => a * b, 1)), y: new Int32Array(2), n: 2, sampleShape: shape, numClasses: 10 });
  assert.throws(() => fitDataToModel(d([3, 8, 8]), [8, 8, 3], 'ev'), /\[3, 8, 8\] but the model's input expects \[8, 8, 3\]: the same axes in another order[\s\S]*layout: nchw/);
  assert.throws(() => fitDataToModel(d([8, 3, 8]), [8, 8, 3], 'ev'), /the same axes in another order/);
  // Moving only a size-1 axis keeps the element order: re-viewed as before.
  assert.deepEqual(fitDataToModel(d([1, 28, 28]), [28, 28, 1], 'ev').sampleShape, [28, 28, 1]);
  assert.deepEqual(fitDataToModel(d([784]), [28, 28, 1], 'ev').sampleShape, [28, 28, 1]);
});

test('`layout: nchw` on one-channel channels-last data ([N, 8, 8, 1] for an [8, 8, 1] input) is refused naming layout, not transposed and re-viewed', async () => {
  const { dir } = workspace('version: 1\nstages: {}\n');
  const n = 10;
  writeFileSync(join(dir, 'x.npy'), encodeNpy(new Float32Array(n * 64).map((_, i) => i % 64), [n, 8, 8, 1], 'f4'));
  writeFileSync(join(dir, 'y.npy'), encodeNpy(Int32Array.from({ length: n }, (_, i) => i % 2), [n], 'i4'));
  const spec = { source: 'files', features: 'x.npy', labels: 'y.npy', layout: 'nchw', split: { train: 0.5, validation: 0, test: 0.5 } } as DataSpec;
  const { test: t } = await loadSplits(spec, dir, 1);
  assert.throws(() => fitDataToModel(t, [8, 8, 1], "stage 'ev'"), /stored as \[8, 8, 1\], the model's input shape, but `layout: nchw` reads them as \[C, H, W\][\s\S]*remove `layout: nchw`/);
});

test('a files dataset takes scale / offset / mean / std like idx and images: uint8 .npy pixels with scale 1/255 load as 0..1 (kept as stored without)', async () => {
  const { dir } = workspace('version: 1\nstages: {}\n');
  const n = 10;
  writeFileSync(join(dir, 'x.npy'), encodeNpy(new Uint8Array(n * 4).fill(255), [n, 2, 2, 1], 'u1'));
  writeFileSync(join(dir, 'y.npy'), encodeNpy(Int32Array.from({ length: n }, (_, i) => i % 2), [n], 'i4'));
  const spec = (extra: object) => ({ source: 'files', features: 'x.npy', labels: 'y.npy', split: { train: 0.5, validation: 0, test: 0.5 }, ...extra }) as DataSpec;
  assert.deepEqual([...new Set((await loadSplits(spec({}), dir, 1)).test.x)], [255]);
  assert.deepEqual([...new Set((await loadSplits(spec({ scale: 1 / 255 }), dir, 1)).test.x)], [1]);
  assert.deepEqual([...new Set((await loadSplits(spec({ scale: 1 / 255, mean: 0.5, std: 0.25 }), dir, 1)).test.x)], [2]);
});

test('validate refuses a directory where a data file belongs (and a file where an image folder belongs), at its position (exit 2, not a bare EISDIR)', async () => {
  const { dir } = workspace(`version: 1
name: kinds
data:
  arrays: { source: files, features: data, labels: data/y.npy }
  photos: { source: images, dir: data/y.npy }
stages:
  a: { uses: evaluate, needs: [m], with: { data: arrays } }
  b: { uses: evaluate, needs: [m], with: { data: photos } }
  m: { uses: train, with: { model: mlp-small, epochs: 1, data: arrays } }
`);
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'data', 'y.npy'), encodeNpy(Int32Array.of(0, 1), [2], 'i4'));
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 2, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /compress\.config\.yaml:4:\d+ +data\.arrays\.features +data features path 'data' is a directory, not a file/);
  assert.match(r.stdout + r.stderr, /compress\.config\.yaml:5:\d+ +data\.photos\.dir +data image folder 'data\/y\.npy' is a file, not a folder/);
});
