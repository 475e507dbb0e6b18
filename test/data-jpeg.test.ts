import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { decodeImage } from '../src/data/images.js';
import { ROOT, workspace } from './helpers.js';
import { DATA_SOURCES } from '../src/data/load.js';
import { dataDigest } from '../src/run/keys.js';
import { loadRecipe } from '../src/recipe/load.js';
import { FileDigests } from '../src/cache/file-digests.js';

/**
 * Colour JPEGs decode to the pixels libjpeg gives (PIL: torchvision's ImageFolder; TensorFlow's
 * decode_jpeg), so a model sees what its training pipeline saw. jpeg-js alone repeats each chroma
 * sample of a subsampled JPEG and truncates its colour conversion: 4.5 levels off on average on
 * smooth photos, 31 at most. Only the IDCT's last-bit rounding may differ now.
 */

const dir = mkdtempSync(join(tmpdir(), 'compress-jpeg-'));
before(async () => {
  await execa('/usr/bin/python3', [join(ROOT, 'test/fixtures/pil_jpegs.py'), dir], { timeout: 120_000 });
});

const cases = () => readFileSync(join(dir, 'names.txt'), 'utf8').trim().split('\n').map((l) => l.split(' '));

for (const tag of ['420', '422', '444', 'progressive']) {
  test(`${tag} colour JPEGs decode to PIL's pixels within the IDCT's rounding`, async () => {
    let sum = 0;
    let count = 0;
    for (const [name, w, h] of cases().filter(([n]) => n.endsWith(`-${tag}`))) {
      const img = await decodeImage(join(dir, `${name}.jpg`));
      assert.deepEqual([img.width, img.height], [Number(w), Number(h)]);
      const ref = readFileSync(join(dir, `${name}.rgb`));
      let max = 0;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(img.data[(i / 3 | 0) * 4 + (i % 3)] - ref[i]);
        max = Math.max(max, d);
        sum += d;
      }
      count += ref.length;
      assert.ok(max <= 3, `${name}: max |diff| ${max} levels against PIL`);
    }
    assert.ok(sum / count < 0.3, `mean |diff| ${(sum / count).toFixed(3)} levels against PIL`);
  });
}

test("an image dataset's cache key holds its loader's version: results cached with the old JPEG decoding are not reused", async () => {
  const { dir: ws, file } = workspace('version: 1\ndata:\n  d: { source: images, dir: set }\nstages:\n  t: { uses: train, with: { model: mlp-small } }\n');
  for (const c of ['a', 'b']) {
    mkdirSync(join(ws, 'set', c), { recursive: true });
    copyFileSync(join(dir, '96x64-420.jpg'), join(ws, 'set', c, '1.jpg'));
  }
  const digest = () => dataDigest(loadRecipe(file), 'd', new FileDigests(mkdtempSync(join(tmpdir(), 'compress-digests-'))));
  const now = await digest();
  const images = DATA_SOURCES.images as { version?: string };
  const version = images.version;
  try {
    images.version = `${version}-previous`;
    assert.notEqual(await digest(), now);
  } finally {
    images.version = version;
  }
  assert.equal(await digest(), now);
});
