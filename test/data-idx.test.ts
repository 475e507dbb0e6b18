import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { InputError } from '../src/errors/input-error.js';
import { loadIdxPair, readIdx } from '../src/data/idx.js';
import { loadSplits, type DataSpec } from '../src/data/load.js';
import { cli, workspace } from './helpers.js';

/** An IDX file as MNIST's are written: magic 00 00 <type> <rank>, big-endian uint32 dims, big-endian values. */
function idx(type: 0x08 | 0x0b | 0x0d, dims: number[], values: ArrayLike<number>): Buffer {
  const size = type === 0x08 ? 1 : type === 0x0b ? 2 : 4;
  const b = Buffer.alloc(4 + 4 * dims.length + values.length * size);
  b[2] = type;
  b[3] = dims.length;
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  const at = 4 + 4 * dims.length;
  for (let i = 0; i < values.length; i++) {
    if (type === 0x08) b[at + i] = values[i];
    else if (type === 0x0b) b.writeInt16BE(values[i], at + 2 * i);
    else b.writeFloatBE(values[i], at + 4 * i);
  }
  return b;
}

/** `n` 3x2 images whose pixel j of image i is (7 * i + j) % 256, labels i % classes. */
function sampleSet(n: number, classes = 3) {
  const pixels = Array.from({ length: n * 6 }, (_, k) => (7 * Math.floor(k / 6) + (k % 6)) % 256);
  const labels = Array.from({ length: n }, (_, i) => i % classes);
  return { images: idx(0x08, [n, 3, 2], pixels), labels: idx(0x08, [n], labels), pixels, labelValues: labels };
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'compress-idx-'));
}

test('idx: raw and gzip files read the same; values are bytes / 255 in [h, w, 1] samples', async () => {
  const dir = tmp();
  const s = sampleSet(20);
  writeFileSync(join(dir, 'img'), s.images);
  writeFileSync(join(dir, 'lab'), s.labels);
  writeFileSync(join(dir, 'img.gz'), gzipSync(s.images));
  writeFileSync(join(dir, 'lab.gz'), gzipSync(s.labels));
  const raw = await loadIdxPair({ images: join(dir, 'img'), labels: join(dir, 'lab') }, {});
  const gz = await loadIdxPair({ images: join(dir, 'img.gz'), labels: join(dir, 'lab.gz') }, {});
  assert.deepEqual(raw.sampleShape, [3, 2, 1]);
  assert.equal(raw.n, 20);
  assert.equal(raw.numClasses, 3);
  assert.equal(raw.image, true);
  assert.deepEqual(Array.from(raw.y), s.labelValues);
  raw.x.forEach((v, i) => assert.ok(Math.abs(v - s.pixels[i] / 255) < 1e-7, `value ${i}: ${v} vs ${s.pixels[i]} / 255`));
  assert.deepEqual(gz.x, raw.x);
  assert.deepEqual(gz.y, raw.y);
});

test('idx: scale/offset and per-channel mean/std are applied to the stored values', async () => {
  const dir = tmp();
  // two 1x2 RGB images: rank 4 [n, h, w, c]
  const pixels = [0, 51, 102, 153, 204, 255, 255, 0, 51, 102, 153, 204];
  writeFileSync(join(dir, 'img'), idx(0x08, [2, 1, 2, 3], pixels));
  writeFileSync(join(dir, 'lab'), idx(0x08, [2], [0, 1]));
  const pair = { images: join(dir, 'img'), labels: join(dir, 'lab') };
  const affine = await loadIdxPair(pair, { scale: 2 / 255, offset: -1 });
  assert.deepEqual(affine.sampleShape, [1, 2, 3]);
  affine.x.forEach((v, i) => assert.ok(Math.abs(v - ((pixels[i] * 2) / 255 - 1)) < 1e-6, `value ${i}: ${v}`));
  const mean = [0.5, 0.4, 0.3];
  const std = [0.25, 0.5, 1];
  const norm = await loadIdxPair(pair, { mean, std });
  norm.x.forEach((v, i) => assert.ok(Math.abs(v - (pixels[i] / 255 - mean[i % 3]) / std[i % 3]) < 1e-6, `value ${i}: ${v}`));
  await assert.rejects(loadIdxPair(pair, { mean: [0.1, 0.2] }), (e: unknown) => e instanceof InputError && /mean has 2 values but the samples have 3 channels/.test(e.message) && e.message.startsWith(pair.images));
});

test('idx: non-byte types are read big-endian and kept as stored by default', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'f'), idx(0x0d, [2, 2, 2], [1.5, -2, 0.25, 1e3, 0, 1, 2, 3]));
  writeFileSync(join(dir, 'l'), idx(0x0b, [2], [1, 0]));
  const d = await loadIdxPair({ images: join(dir, 'f'), labels: join(dir, 'l') }, {});
  assert.deepEqual(Array.from(d.x), [1.5, -2, 0.25, 1e3, 0, 1, 2, 3]);
  assert.deepEqual(Array.from(d.y), [1, 0]);
});

test('idx: bad magic, truncated, trailing bytes, damaged gzip and count mismatches are errors naming the file', async () => {
  const dir = tmp();
  const s = sampleSet(10);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['png-named.idx', Buffer.from('\x89PNG\r\n\x1a\n0000', 'latin1'), /not an IDX file \(bad magic 89 50 4e 47/],
    ['short', s.images.subarray(0, 9), /truncated IDX file: 9 bytes, too short for its header/],
    ['cut', s.images.subarray(0, s.images.length - 7), /truncated IDX file: its header declares \[10, 3, 2\] unsigned byte values \(60 bytes\), but only 53 bytes of values follow/],
    ['long', Buffer.concat([s.images, Buffer.alloc(5)]), /IDX file has 5 bytes after the \[10, 3, 2\] values its header declares/],
    ['cut.gz', gzipSync(s.images).subarray(0, 30), /cannot decompress \(gzip\)/],
  ];
  for (const [name, bytes, re] of cases) {
    const file = join(dir, name);
    writeFileSync(file, bytes);
    await assert.rejects(readIdx(file), (e: unknown) => e instanceof InputError && re.test(e.message) && e.message.startsWith(`${file}: `), name);
  }
  writeFileSync(join(dir, 'img'), s.images);
  writeFileSync(join(dir, 'lab9'), idx(0x08, [9], new Array(9).fill(0)));
  await assert.rejects(
    loadIdxPair({ images: join(dir, 'img'), labels: join(dir, 'lab9') }, {}),
    (e: unknown) => e instanceof InputError && e.message.startsWith(`${join(dir, 'lab9')}: has 9 labels but the images file '${join(dir, 'img')}' has 10 images`),
  );
  writeFileSync(join(dir, 'lab2d'), idx(0x08, [10, 1], new Array(10).fill(0)));
  await assert.rejects(loadIdxPair({ images: join(dir, 'img'), labels: join(dir, 'lab2d') }, {}), /labels must be one-dimensional/);
  writeFileSync(join(dir, 'lab'), s.labels);
  await assert.rejects(loadIdxPair({ images: join(dir, 'img'), labels: join(dir, 'lab') }, { numClasses: 2 }), /label 2 of sample 2 is not below numClasses 2/);
});

test('idx: a gzip file that inflates past its declared size is refused without inflating it all', async () => {
  const dir = tmp();
  // declares 10 bytes of values, then 8 MiB of zeros (compresses to ~8 KiB)
  const bomb = gzipSync(Buffer.concat([idx(0x08, [10], new Array(10).fill(0)), Buffer.alloc(8 << 20)]));
  writeFileSync(join(dir, 'bomb.gz'), bomb);
  await assert.rejects(readIdx(join(dir, 'bomb.gz')), /IDX file holds more data than its header declares/);
});

/** A workspace with train (40) and test (10) IDX files under `data/`. */
function pairWorkspace(recipe = 'version: 1\nstages: {}\n') {
  const ws = workspace(recipe);
  mkdirSync(join(ws.dir, 'data'));
  const train = sampleSet(40);
  const test = sampleSet(10);
  writeFileSync(join(ws.dir, 'data', 'train-images-idx3-ubyte.gz'), gzipSync(train.images));
  writeFileSync(join(ws.dir, 'data', 'train-labels-idx1-ubyte.gz'), gzipSync(train.labels));
  writeFileSync(join(ws.dir, 'data', 't10k-images-idx3-ubyte'), test.images);
  writeFileSync(join(ws.dir, 'data', 't10k-labels-idx1-ubyte'), test.labels);
  return ws;
}

const pairSpec = (extra: Record<string, unknown> = {}) =>
  ({
    source: 'idx',
    root: 'data',
    train: { images: 'train-images-idx3-ubyte.gz', labels: 'train-labels-idx1-ubyte.gz' },
    test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
    ...extra,
  }) as DataSpec;

test('idx train/test: test is the test file in order, validation is a seeded share of train, limit caps each set', async () => {
  const { dir } = pairWorkspace();
  const s = await loadSplits(pairSpec({ validation: 0.25 }), dir, 5);
  assert.deepEqual([s.train.n, s.validation.n, s.test.n], [30, 10, 10]);
  assert.deepEqual(Array.from(s.test.y), sampleSet(10).labelValues, 'test split is the test file in file order');
  const again = await loadSplits(pairSpec({ validation: 0.25 }), dir, 5);
  assert.deepEqual(again.train.x, s.train.x, 'same seed, same split');
  assert.deepEqual(again.validation.y, s.validation.y);
  const other = await loadSplits(pairSpec({ validation: 0.25 }), dir, 6);
  assert.notDeepEqual(other.train.x, s.train.x, 'another seed shuffles differently');
  const limited = await loadSplits(pairSpec({ limit: { train: 20, test: 10 } }), dir, 5);
  assert.deepEqual([limited.train.n, limited.validation.n, limited.test.n], [18, 2, 10]);
  const both = await loadSplits(pairSpec({ limit: 12 }), dir, 5);
  assert.deepEqual([both.train.n + both.validation.n, both.test.n], [12, 10]);
});

test('idx one set: images/labels split by fractions like the other sources', async () => {
  const { dir } = pairWorkspace();
  const spec = { source: 'idx', root: 'data', images: 'train-images-idx3-ubyte.gz', labels: 'train-labels-idx1-ubyte.gz', split: { train: 0.5, validation: 0.25, test: 0.25 } } as DataSpec;
  const s = await loadSplits(spec, dir, 1);
  assert.deepEqual([s.train.n, s.validation.n, s.test.n], [20, 10, 10]);
});

test('idx recipe: wrong forms and data paths leaving the workspace are validate errors at their lines', async () => {
  const { dir } = pairWorkspace(`version: 1
data:
  a: { source: idx, root: /etc, images: passwd, labels: group }
  b: { source: idx, images: ../x.idx, labels: l.idx, validation: 0.2 }
  c: { source: idx, train: { images: i, labels: l } }
  d: { source: idx, root: ../up, images: i, labels: l }
stages:
  t: { uses: train, with: { model: mlp-small, data: a } }
`);
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 2, r.stderr);
  assert.match(r.stderr, /compress\.config\.yaml:3:\d+ +data\.a\.root +data root '\/etc' is outside the recipe's directory and not inside a system dataset directory \(\/usr\/share\/datasets/);
  assert.match(r.stderr, /compress\.config\.yaml:4:\d+ +data\.b\.images +data images path '\.\.\/x\.idx' climbs out of the recipe's directory/);
  assert.match(r.stderr, /compress\.config\.yaml:4:\d+ +data\.b\.validation +validation: is the share of a separate train set held out/);
  assert.match(r.stderr, /compress\.config\.yaml:5:\d+ +data\.c +missing required key 'test'/);
  assert.match(r.stderr, /compress\.config\.yaml:6:\d+ +data\.d\.root +data root '\.\.\/up' climbs out of the recipe's directory/);
});

test('idx recipe: train -> evaluate through the CLI, data under a system dataset directory given by COMPRESS_DATA_DIRS', async () => {
  const system = tmp();
  mkdirSync(join(system, 'tiny'));
  const train = sampleSet(200, 2);
  const test = sampleSet(60, 2);
  writeFileSync(join(system, 'tiny', 'train-images.gz'), gzipSync(train.images));
  writeFileSync(join(system, 'tiny', 'train-labels.gz'), gzipSync(train.labels));
  writeFileSync(join(system, 'tiny', 'test-images.gz'), gzipSync(test.images));
  writeFileSync(join(system, 'tiny', 'test-labels.gz'), gzipSync(test.labels));
  const { dir } = workspace(`version: 1
seed: 3
data:
  tiny:
    source: idx
    root: ${join(system, 'tiny')}
    train: { images: train-images.gz, labels: train-labels.gz }
    test: { images: test-images.gz, labels: test-labels.gz }
    classes: [even, odd]
stages:
  fit: { uses: train, with: { model: mlp-small, epochs: 1, batchSize: 32 } }
  score: { uses: evaluate, needs: [fit], with: { latencySamples: 0 } }
`);
  const refused = await cli(['validate'], dir);
  assert.equal(refused.exitCode, 2, 'outside the workspace and not a system dataset directory');
  assert.match(refused.stderr, /data\.tiny\.root +data root '.*tiny' is outside the recipe's directory/);
  const r = await cli(['run'], dir, { COMPRESS_DATA_DIRS: system });
  assert.equal(r.exitCode, 0, r.stderr);
  const [run] = readdirSync(join(dir, '.compress', 'reports'));
  const report = JSON.parse(readFileSync(join(dir, '.compress', 'reports', run, 'report.json'), 'utf8'));
  const score = report.stages.find((s: { id: string }) => s.id === 'score');
  assert.equal(score.status, 'ran');
  assert.equal(score.metrics.samples, 60, 'evaluated on the whole test file');
  assert.deepEqual(score.metrics.classes, ['even', 'odd'], 'class names recorded in the report');
  assert.ok(score.metrics.accuracy >= 0 && score.metrics.accuracy <= 1);
});
