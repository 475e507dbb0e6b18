import { createRng, deriveSeed, shuffledIndices } from '../util/rng.js';
import { subset, type Dataset, type Splits } from './dataset.js';

export interface SplitSpec {
  train: number;
  validation: number;
  test: number;
}

export const DEFAULT_SPLIT: SplitSpec = { train: 0.8, validation: 0.1, test: 0.1 };
/** The share of a separate train set held out for validation when the recipe does not say. */
export const DEFAULT_VALIDATION = 0.1;

export const splitSchema = {
  type: 'object',
  description: 'Fractions of the shuffled samples (normalised to sum 1).',
  properties: {
    train: { type: 'number', exclusiveMinimum: 0 },
    validation: { type: 'number', minimum: 0 },
    test: { type: 'number', exclusiveMinimum: 0 },
  },
  required: ['train', 'validation', 'test'],
  additionalProperties: false,
} as const;

/** Keys every source has: how its samples are split. */
export const splitKeys = {
  split: splitSchema,
  limit: { type: 'integer', minimum: 10, description: 'use only the first N samples of the seeded shuffle' },
  seed: { type: 'integer', minimum: 0, description: 'split seed (default: the recipe seed)' },
} as const;

/**
 * Keys of sources whose files come as a train set and a test set (IDX files, image folders): `train`
 * and `test` take the sets as they are, `validation` carves a seeded share out of train, and `limit`
 * caps the samples taken from each set (a number for both, or per set). The other form, one set split
 * by `split` fractions, stays available with the same keys as the other sources.
 */
export const pairLimitSchema = {
  type: ['integer', 'object'],
  minimum: 10,
  properties: {
    train: { type: 'integer', minimum: 10 },
    test: { type: 'integer', minimum: 10 },
  },
  additionalProperties: false,
  description: 'use only the first N samples of the seeded shuffle: a number (the whole set, or each of train and test), or {train, test}',
} as const;

export const validationKeys = {
  validation: {
    type: 'number',
    minimum: 0,
    exclusiveMaximum: 1,
    description: `with train/test: the share of train held out (seeded) as the validation split (default ${DEFAULT_VALIDATION})`,
  },
} as const;

/** The order a seeded shuffle puts the samples in; a limit keeps its first N (so a small subset is a prefix of the full shuffle). */
export function seededOrder(n: number, seed: number, limit?: number): Uint32Array {
  return shuffledIndices(n, createRng(seed)).subarray(0, Math.min(limit ?? n, n));
}

/** Seeded split by fractions (normalised to sum 1) of the first `limit` samples of the seeded shuffle. */
export function splitDataset(d: Dataset, spec: SplitSpec, seed: number, limit?: number): Splits {
  return splitOrdered(d, seededOrder(d.n, seed, limit), spec);
}

/** Split by fractions of the samples `order` picks, in that order. */
export function splitOrdered(d: Dataset, order: Uint32Array, spec: SplitSpec): Splits {
  const n = order.length;
  const total = spec.train + spec.validation + spec.test;
  const nTrain = Math.round((n * spec.train) / total);
  const nVal = Math.round((n * spec.validation) / total);
  return {
    train: subset(d, order.subarray(0, nTrain)),
    validation: subset(d, order.subarray(nTrain, nTrain + nVal)),
    test: subset(d, order.subarray(nTrain + nVal, n)),
  };
}

export type PairLimit = number | { train?: number; test?: number };

/** The samples of a separate train and test set that the splits take, in order (see splitTrainTest). */
export function pairOrders(trainN: number, testN: number, seed: number, limit?: PairLimit): { train: Uint32Array; test: Uint32Array } {
  const lim = typeof limit === 'number' ? { train: limit, test: limit } : (limit ?? {});
  const test = lim.test !== undefined && lim.test < testN ? seededOrder(testN, deriveSeed(seed, 'test'), lim.test) : Uint32Array.from({ length: testN }, (_, i) => i);
  return { train: seededOrder(trainN, seed, lim.train), test };
}

/**
 * Splits from a separate train and test set: train is shuffled with `seed` (and cut to its limit),
 * its last `validation` share becoming the validation split; test keeps its file order unless a
 * limit picks a seeded subset of it. Both sets get the larger class count (a test set may lack a class).
 */
export function splitTrainTest(train: Dataset, test: Dataset, validation: number, seed: number, limit?: PairLimit): Splits {
  const orders = pairOrders(train.n, test.n, seed, limit);
  return splitPairOrdered(train, orders.train, test, orders.test, validation);
}

/** splitTrainTest over the samples the orders pick. */
export function splitPairOrdered(train: Dataset, trainOrder: Uint32Array, test: Dataset, testOrder: Uint32Array, validation: number): Splits {
  const numClasses = Math.max(train.numClasses, test.numClasses);
  const n = trainOrder.length;
  const nVal = Math.round(n * validation);
  const withClasses = (d: Dataset): Dataset => ({ ...d, numClasses });
  return {
    train: withClasses(subset(train, trainOrder.subarray(0, n - nVal))),
    validation: withClasses(subset(train, trainOrder.subarray(n - nVal, n))),
    test: withClasses(subset(test, testOrder)),
  };
}

export interface SpecProblem {
  path: Array<string | number>;
  message: string;
}

/**
 * The rules of the two forms a train/test source may take, which the schema leaves to this check
 * so each mistake is one plain message at its line: one set (`oneSet` keys, split by `split`
 * fractions), or `train` and `test` (split by `validation`).
 */
export function pairFormProblems(spec: Record<string, unknown>, oneSet: string[]): SpecProblem[] {
  const has = (k: string) => spec[k] !== undefined;
  const problems: SpecProblem[] = [];
  const oneSetText = oneSet.map((k) => `${k}:`).join(' and ');
  if (has('train') || has('test')) {
    for (const k of ['train', 'test']) if (!has(k)) problems.push({ path: [], message: `missing required key '${k}' (train: and test: go together)` });
    for (const k of oneSet) if (has(k)) problems.push({ path: [k], message: `'${k}' names one set of files to split, 'train'/'test' name the sets themselves: use one form` });
    if (has('split')) problems.push({ path: ['split'], message: 'split fractions divide one set of files; with train: and test:, set validation: (the share of train held out)' });
    return problems;
  }
  for (const k of oneSet) if (!has(k)) problems.push({ path: [], message: `missing required key '${k}' (or name separate sets with train: and test:)` });
  if (has('validation')) problems.push({ path: ['validation'], message: `validation: is the share of a separate train set held out; one set (${oneSetText}) is divided by split: fractions` });
  if (spec.limit !== null && typeof spec.limit === 'object') problems.push({ path: ['limit'], message: 'a limit per set needs train: and test:; for one set give a number' });
  return problems;
}
