import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { InputError } from '../src/errors/input-error.js';
import { fitDataToModel } from '../src/data/fit.js';
import { decodeImage, listImageTree, loadImages } from '../src/data/images.js';
import { splitDataset, splitTrainTest } from '../src/data/split.js';
import { loadSplits, type DataSpec } from '../src/data/load.js';
import { resizeBilinear } from '../src/data/resize.js';
import { initEngine } from '../src/engine/backend.js';
import { cli, workspace } from './helpers.js';
import { dataDigest } from '../src/run/keys.js';
import { loadRecipe } from '../src/recipe/load.js';
import { FileDigests } from '../src/cache/file-digests.js';

type Pixel = [number, number, number, number?];

/** A PNG as pngjs writes it (RGBA, 8-bit), from rows of [r, g, b, a?] pixels. */
function png(rows: Pixel[][]): Buffer {
  const img = new PNG({ width: rows[0].length, height: rows.length });
  rows.flat().forEach(([r, g, b, a], i) => img.data.set([r, g, b, a ?? 255], 4 * i));
  return PNG.sync.write(img);
}

/** A JPEG as jpeg-js writes it (baseline, quality 100). */
function jpg(rows: Pixel[][]): Buffer {
  const width = rows[0].length;
  const height = rows.length;
  const data = Buffer.alloc(width * height * 4);
  rows.flat().forEach(([r, g, b], i) => data.set([r, g, b, 255], 4 * i));
  return jpeg.encode({ width, height, data }, 100).data;
}

/** An image of one colour. */
const solid = (h: number, w: number, p: Pixel): Pixel[][] => Array.from({ length: h }, () => Array.from({ length: w }, () => p));

function put(root: string, rel: string, bytes: Buffer): string {
  const file = join(root, rel);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, bytes);
  return file;
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'compress-images-'));
}

test('images: classes are the sorted folder names; PNG and JPEG files in them load with their folder label', async () => {
  const dir = tmp();
  put(dir, 'set/zebra/a.png', png(solid(2, 3, [10, 20, 30])));
  put(dir, 'set/apple/b.JPG', jpg(solid(2, 3, [200, 100, 50])));
  put(dir, 'set/apple/nested/c.png', png(solid(2, 3, [0, 0, 255])));
  put(dir, 'set/apple/notes.txt', Buffer.from('not an image, skipped'));
  put(dir, 'set/.hidden/x.png', png(solid(2, 3, [0, 0, 0])));
  const tree = listImageTree(join(dir, 'set'));
  assert.deepEqual(tree.classes, ['apple', 'zebra']);
  assert.deepEqual(tree.files.map((f) => [f.label, f.file.slice(dir.length + 5)]), [['apple', 'apple/b.JPG'], ['apple', 'apple/nested/c.png'], ['zebra', 'zebra/a.png']]);
  const spec = { source: 'images', dir: 'set', split: { train: 1, validation: 0, test: 2 } } as DataSpec;
  const s = await loadSplits(spec, dir, 1);
  const all = [s.train, s.test];
  assert.equal(s.train.n + s.test.n, 3);
  assert.deepEqual(s.test.sampleShape, [2, 3, 3]);
  assert.deepEqual(s.test.classNames, ['apple', 'zebra']);
  // find each image by its label and first pixel; PNG values are exact, JPEG within its loss
  const pixels = all.flatMap((d) => Array.from({ length: d.n }, (_, i) => ({ y: d.y[i], rgb: Array.from(d.x.subarray(i * 18, i * 18 + 3)) })));
  const zebra = pixels.find((p) => p.y === 1)!;
  assert.deepEqual(zebra.rgb.map((v) => Math.round(v * 255 * 1e4) / 1e4), [10, 20, 30]);
  const apples = pixels.filter((p) => p.y === 0);
  assert.equal(apples.length, 2);
  assert.ok(apples.some((p) => p.rgb.every((v, k) => Math.abs(v * 255 - [200, 100, 50][k]) <= 3)), `jpeg pixel ${JSON.stringify(apples)}`);
  assert.ok(apples.some((p) => p.rgb.every((v, k) => v === [0, 0, 1][k])));
});

test('images: grayscale is BT.601 luma, rgb drops alpha, scale/offset and per-channel mean/std apply', async () => {
  const dir = tmp();
  const p: Pixel = [200, 100, 50, 7];
  put(dir, 'set/a/1.png', png(solid(1, 1, p)));
  put(dir, 'set/b/1.png', png(solid(1, 1, [90, 90, 90])));
  const load = async (extra: Record<string, unknown>) => {
    const s = await loadSplits({ source: 'images', dir: 'set', split: { train: 1, validation: 0, test: 1 }, ...extra } as DataSpec, dir, 3);
    const byLabel = new Map<number, number[]>();
    for (const d of [s.train, s.test]) for (let i = 0; i < d.n; i++) byLabel.set(d.y[i], Array.from(d.x.subarray(i * (d.x.length / d.n), (i + 1) * (d.x.length / d.n))));
    return byLabel;
  };
  const close = (a: number[], b: number[]) => assert.ok(a.every((v, i) => Math.abs(v - b[i]) < 1e-5), `${a} vs ${b}`);
  const gray = await load({ color: 'grayscale' });
  close(gray.get(0)!, [(0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255]);
  close(gray.get(1)!, [90 / 255]);
  const rgb = await load({ scale: 1, offset: -100 });
  close(rgb.get(0)!, [100, 0, -50]);
  const mean = [0.5, 0.4, 0.3];
  const std = [0.2, 0.3, 0.4];
  const norm = await load({ mean, std });
  close(norm.get(0)!, [200, 100, 50].map((v, c) => (v / 255 - mean[c]) / std[c]));
});

test('images: bilinear resize matches tfjs resizeBilinear with half-pixel centers (tf.image.resize)', async () => {
  const { tf } = await initEngine('wasm');
  const h = 3;
  const w = 5;
  const c = 2;
  const src = Float32Array.from({ length: h * w * c }, (_, i) => (i * 37) % 251);
  for (const [oh, ow] of [[6, 10], [2, 3], [7, 4], [1, 1]]) {
    const ours = resizeBilinear(src, h, w, c, oh, ow);
    const theirs = tf.tidy(() => tf.image.resizeBilinear(tf.tensor4d(src, [1, h, w, c]), [oh, ow], false, true).dataSync());
    assert.equal(ours.length, theirs.length);
    ours.forEach((v, i) => assert.ok(Math.abs(v - theirs[i]) < 1e-3, `[${oh}, ${ow}] value ${i}: ${v} vs ${theirs[i]}`));
  }
  // by hand: 1x2 -> 1x4 with half-pixel centers blends 0 and 100 at 0, 25, 75, 100
  assert.deepEqual(Array.from(resizeBilinear([0, 100], 1, 2, 1, 1, 4)), [0, 25, 75, 100]);
});

test('images: size resizes every image; without it images of different sizes are an error naming both', async () => {
  const dir = tmp();
  put(dir, 'set/a/1.png', png([[[0, 0, 0], [100, 100, 100]]]));
  const odd = put(dir, 'set/b/2.png', png(solid(3, 3, [50, 50, 50])));
  const spec = (extra: Record<string, unknown>) => ({ source: 'images', dir: 'set', color: 'grayscale', scale: 1, split: { train: 1, validation: 0, test: 1 }, ...extra }) as DataSpec;
  await assert.rejects(
    loadSplits(spec({}), dir, 1),
    (e: unknown) => e instanceof InputError && e.message.startsWith(`${odd}: image is 3x3 but '${join(dir, 'set/a/1.png')}' is 2x1`) && /set size: \[height, width\]/.test(e.message),
  );
  const s = await loadSplits(spec({ size: [1, 4] }), dir, 1);
  const rows = [s.train, s.test].flatMap((d) => Array.from({ length: d.n }, (_, i) => ({ y: d.y[i], x: Array.from(d.x.subarray(i * 4, i * 4 + 4)) })));
  assert.deepEqual(rows.find((r) => r.y === 0)!.x, [0, 25, 75, 100]);
  assert.deepEqual(rows.find((r) => r.y === 1)!.x, [50, 50, 50, 50]);
});

test('images: a dataset is resized to a model input of another height and width; a channel mismatch says which color to set', async () => {
  const d = { x: Float32Array.of(0, 100), y: Int32Array.of(0), n: 1, sampleShape: [1, 2, 1], numClasses: 2, image: true, colorOption: true as const };
  assert.deepEqual(Array.from(fitDataToModel(d, [1, 4, 1], 'train').x), [0, 25, 75, 100]);
  assert.throws(() => fitDataToModel(d, [1, 4, 3], 'train'), /set the dataset's color: rgb/);
});

test('images: undecodable, truncated and unsupported files are errors naming the file', async () => {
  const dir = tmp();
  put(dir, 'ok/a/1.png', png(solid(2, 2, [1, 2, 3])));
  const cases: Array<[string, Buffer, RegExp]> = [
    ['garbage.png', Buffer.from('hello, not a picture'), /not a PNG or JPEG image/],
    ['cut.png', png(solid(8, 8, [1, 2, 3])).subarray(0, 60), /cannot decode this PNG image/],
    ['cut.jpg', jpg(solid(16, 16, [9, 8, 7])).subarray(0, 200), /cannot decode this JPEG image/],
  ];
  for (const [name, bytes, re] of cases) {
    const file = put(dir, `bad-${name}/b/${name}`, bytes);
    await assert.rejects(decodeImage(file), (e: unknown) => e instanceof InputError && re.test(e.message) && e.message.startsWith(`${file}: `), name);
    put(dir, `bad-${name}/a/1.png`, png(solid(2, 2, [1, 2, 3])));
    await assert.rejects(loadSplits({ source: 'images', dir: `bad-${name}` } as DataSpec, dir, 1), (e: unknown) => e instanceof InputError && e.message.startsWith(`${file}: `), `${name} through the source`);
  }
  const gif = put(dir, 'gif/a/x.gif', Buffer.from('GIF89a'));
  put(dir, 'gif/b/1.png', png(solid(2, 2, [1, 2, 3])));
  assert.throws(() => listImageTree(join(dir, 'gif')), (e: unknown) => e instanceof InputError && e.message.startsWith(`${gif}: GIF images are not supported`));
  put(dir, 'one/a/1.png', png(solid(2, 2, [1, 2, 3])));
  assert.throws(() => listImageTree(join(dir, 'one')), /found 1 class folder \(a\); an image dataset needs one folder per class, at least 2/);
});

test('images: the seeded split is the same for the same seed and differs for another', async () => {
  const dir = tmp();
  for (let i = 0; i < 12; i++) put(dir, `set/${i % 2 ? 'odd' : 'even'}/${String(i).padStart(2, '0')}.png`, png(solid(1, 1, [i * 20, 0, 0])));
  const spec = { source: 'images', dir: 'set', split: { train: 0.5, validation: 0.25, test: 0.25 } } as DataSpec;
  const a = await loadSplits(spec, dir, 9);
  const b = await loadSplits(spec, dir, 9);
  const c = await loadSplits(spec, dir, 10);
  assert.deepEqual([a.train.n, a.validation.n, a.test.n], [6, 3, 3]);
  assert.deepEqual(a.train.x, b.train.x);
  assert.deepEqual(a.test.y, b.test.y);
  assert.notDeepEqual(a.train.x, c.train.x);
});

test('images: a limit decodes only the images the seeded splits take, and they are those a full load would split', async () => {
  const dir = tmp();
  for (let i = 0; i < 14; i++) put(dir, `all/${i % 2 ? 'odd' : 'even'}/${String(i).padStart(2, '0')}.png`, png(solid(1, 1, [i * 15, 0, 0])));
  for (let i = 0; i < 6; i++) put(dir, `t/${i % 2 ? 'odd' : 'even'}/${i}.png`, png(solid(1, 1, [0, i * 30, 0])));
  const tree = listImageTree(join(dir, 'all'));
  const full = await loadImages(tree.files, tree.classes, {}, 'all');
  const split = { train: 0.5, validation: 0.25, test: 0.25 };
  const limited = await loadSplits({ source: 'images', dir: 'all', split, limit: 10 } as DataSpec, dir, 21);
  const expected = splitDataset(full, split, 21, 10);
  for (const k of ['train', 'validation', 'test'] as const) {
    assert.deepEqual(limited[k].x, expected[k].x, k);
    assert.deepEqual(limited[k].y, expected[k].y, k);
  }
  const testTree = listImageTree(join(dir, 't'));
  const fullTest = await loadImages(testTree.files, testTree.classes, {}, 't');
  const pair = await loadSplits({ source: 'images', train: 'all', test: 't', validation: 0.2, limit: { train: 10, test: 4 } } as DataSpec, dir, 21);
  const pairExpected = splitTrainTest(full, fullTest, 0.2, 21, { train: 10, test: 4 });
  for (const k of ['train', 'validation', 'test'] as const) assert.deepEqual(pair[k].x, pairExpected[k].x, `pair ${k}`);
  assert.deepEqual([pair.train.n, pair.validation.n, pair.test.n], [8, 2, 4]);
});

test('images recipe: mixed forms, folders leaving the workspace and mean/std that do not fit the color are validate errors', async () => {
  const { dir } = workspace(`version: 1
data:
  a: { source: images, dir: ../photos, train: t }
  b: { source: images, dir: photos, color: grayscale, mean: [0.5, 0.5, 0.5] }
  c: { source: images, root: /etc, train: ssl, test: ssl, std: [0.2, 0.2] }
stages:
  t: { uses: train, with: { model: mlp-small, data: b } }
`);
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 2, r.stderr);
  assert.match(r.stderr, /:3:\d+ +data\.a\.dir +'dir' names one set of files to split/);
  assert.match(r.stderr, /:3:\d+ +data\.a\.dir +data image folder '\.\.\/photos' climbs out of the recipe's directory/);
  assert.match(r.stderr, /:3:\d+ +data\.a +missing required key 'test'/);
  assert.match(r.stderr, /:4:\d+ +data\.b\.mean +mean has 3 values but the samples have 1 channel \(color: grayscale\)/);
  assert.match(r.stderr, /:5:\d+ +data\.c\.root +data root '\/etc' is outside the recipe's directory/);
  assert.match(r.stderr, /:5:\d+ +data\.c\.std +std has 2 values but the samples have 3 channels \(color: rgb\)/);
});

test('images: renaming a class folder changes the dataset digest (class names are part of the cache key)', async () => {
  const { dir, file } = workspace(`version: 1
data:
  d: { source: images, dir: set }
stages:
  t: { uses: train, with: { model: mlp-small } }
`);
  put(dir, 'set/cat/1.png', png(solid(1, 1, [1, 2, 3])));
  put(dir, 'set/dog/1.png', png(solid(1, 1, [4, 5, 6])));
  const digest = () => dataDigest(loadRecipe(file), 'd', new FileDigests(mkdtempSync(join(tmpdir(), 'compress-digests-'))));
  const before = await digest();
  assert.equal(await digest(), before, 'same files, same digest');
  renameSync(join(dir, 'set', 'dog'), join(dir, 'set', 'eel'));
  assert.notEqual(await digest(), before, 'same bytes under another class name');
});

test('images recipe: train -> evaluate through the CLI with train/test folders; class names in the report', async () => {
  const { dir } = workspace(`version: 1
seed: 4
data:
  shapes:
    source: images
    root: pictures
    train: train
    test: test
    color: grayscale
    size: [8, 8]
    validation: 0.2
stages:
  fit: { uses: train, with: { model: mlp-small, epochs: 15, batchSize: 8, optimizer: { name: adam, learningRate: 0.01 } } }
  score: { uses: evaluate, needs: [fit], with: { latencySamples: 0 } }
`);
  // dark images are class 'dark', bright ones 'light'; sizes vary (resized to 8x8), PNG and JPEG mixed
  for (let i = 0; i < 40; i++) {
    const set = i < 30 ? 'train' : 'test';
    const dark = i % 2 === 0;
    const v = dark ? 20 + (i % 7) * 5 : 200 + (i % 5) * 8;
    const rows = solid(6 + (i % 5), 7 + (i % 3), [v, v, v]);
    put(join(dir, 'pictures'), `${set}/${dark ? 'dark' : 'light'}/${i}.${i % 3 ? 'png' : 'jpg'}`, i % 3 ? png(rows) : jpg(rows));
  }
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  const [run] = readdirSync(join(dir, '.compress', 'reports'));
  const report = JSON.parse(readFileSync(join(dir, '.compress', 'reports', run, 'report.json'), 'utf8'));
  const score = report.stages.find((s: { id: string }) => s.id === 'score');
  assert.equal(score.metrics.samples, 10, 'the test folder is the test split');
  assert.deepEqual(score.metrics.classes, ['dark', 'light']);
  assert.ok(score.metrics.accuracy >= 0.9, `separable classes are learnt: ${score.metrics.accuracy}`);
});

test("images: classes: sets the label order (the model's output order) and may list classes without a folder", async () => {
  const dir = tmp();
  put(dir, 'set/zebra/a.png', png(solid(2, 2, [10, 10, 10])));
  put(dir, 'set/apple/b.png', png(solid(2, 2, [200, 200, 200])));
  const spec = { source: 'images', dir: 'set', color: 'grayscale', classes: ['zebra', 'mango', 'apple'], split: { train: 1, validation: 0, test: 0 } } as DataSpec;
  const { train } = await loadSplits(spec, dir, 1);
  assert.equal(train.numClasses, 3);
  assert.deepEqual(train.classNames, ['zebra', 'mango', 'apple']);
  const labelOf = (value: number) => train.y[Array.from({ length: train.n }, (_, i) => i).find((i) => Math.round(train.x[i * 4] * 255) === value)!];
  assert.equal(labelOf(10), 0);
  assert.equal(labelOf(200), 2);
});

test('images: a class folder that classes: does not list is refused, naming it', async () => {
  const dir = tmp();
  put(dir, 'set/zebra/a.png', png(solid(2, 2, [10, 10, 10])));
  put(dir, 'set/apple/b.png', png(solid(2, 2, [200, 200, 200])));
  const spec = { source: 'images', dir: 'set', classes: ['zebra', 'mango'] } as DataSpec;
  await assert.rejects(loadSplits(spec, dir, 1), (e: Error) => e instanceof InputError && /class folder 'apple' not in the dataset's classes \(zebra, mango\)/.test(e.message));
});

test('a channel mismatch from a source without color: (idx, .npy) says how to convert the arrays, not to set color:', () => {
  const idxLike = { x: new Float32Array(16), y: Int32Array.of(0), n: 1, sampleShape: [4, 4, 1], numClasses: 2, image: true };
  assert.throws(() => fitDataToModel(idxLike, [4, 4, 3], 'ev'), (e: unknown) => e instanceof InputError && /1 channel\(s\) and the model takes 3: repeat the grey channel/.test(e.hint ?? '') && !/set the dataset's color/.test(e.message));
  const npyRgb = { x: new Float32Array(48), y: Int32Array.of(0), n: 1, sampleShape: [4, 4, 3], numClasses: 2 };
  assert.throws(() => fitDataToModel(npyRgb, [4, 4, 1], 'ev'), (e: unknown) => e instanceof InputError && /3 channel\(s\) and the model takes 1: make them grey/.test(e.hint ?? ''));
});
