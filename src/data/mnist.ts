import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createRng, shuffledIndices } from '../util/rng.js';
import { subset, type Dataset, type Splits } from './dataset.js';

const require = createRequire(import.meta.url);

/** The files that hold the digits: their digests go into every cache key that reads MNIST. */
export function mnistFiles(): string[] {
  const dir = join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  return Array.from({ length: 10 }, (_, d) => join(dir, `${d}.json`));
}

let cached: Dataset | undefined;

/** All 10,000 digits of the `mnist` package, in file order (class 0 first), 28x28x1 in [0, 1]. */
export function loadMnist(): Dataset {
  if (cached) return cached;
  const parts = mnistFiles().map((f) => (JSON.parse(readFileSync(f, 'utf8')) as { data: number[] }).data);
  const n = parts.reduce((a, p) => a + p.length / 784, 0);
  const x = new Float32Array(n * 784);
  const y = new Int32Array(n);
  let row = 0;
  parts.forEach((data, label) => {
    x.set(data, row * 784);
    y.fill(label, row, row + data.length / 784);
    row += data.length / 784;
  });
  cached = { x, y, n, sampleShape: [28, 28, 1], numClasses: 10 };
  return cached;
}

export interface SplitSpec {
  train: number;
  validation: number;
  test: number;
}

/**
 * Seeded split by fractions (normalised to sum 1). `limit` takes the first `limit` samples of the
 * shuffled order first, so a small seeded subset is a prefix of the full shuffle.
 */
export function splitDataset(d: Dataset, spec: SplitSpec, seed: number, limit?: number): Splits {
  const order = shuffledIndices(d.n, createRng(seed));
  const n = Math.min(limit ?? d.n, d.n);
  const total = spec.train + spec.validation + spec.test;
  const nTrain = Math.round((n * spec.train) / total);
  const nVal = Math.round((n * spec.validation) / total);
  return {
    train: subset(d, order.subarray(0, nTrain)),
    validation: subset(d, order.subarray(nTrain, nTrain + nVal)),
    test: subset(d, order.subarray(nTrain + nVal, n)),
  };
}
