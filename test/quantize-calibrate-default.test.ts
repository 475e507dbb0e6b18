/**
 * Whether a quantize stage calibrates int8 activation ranges when the recipe does not say: only a model
 * with linear int-N layers is headed for a full-integer export that reads them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calibratesByDefault } from '../src/stages/quantize.js';
import type { WeightQuantSpec } from '../src/compression/fakequant.js';

const cases: Array<[string, Record<string, WeightQuantSpec>, boolean]> = [
  ['linear int8', { a: { method: 'linear', bits: 8 }, b: { method: 'linear', bits: 8 } }, true],
  ['linear int4', { a: { method: 'linear', bits: 4 } }, true],
  ['k-means', { a: { method: 'kmeans', bits: 5 }, b: { method: 'kmeans', bits: 4 } }, false],
  ['float16', { a: { method: 'float16' } }, false],
  ['k-means with one linear layer', { a: { method: 'kmeans', bits: 5 }, b: { method: 'linear', bits: 8 } }, true],
  ['no layers', {}, false],
];

for (const [name, policy, expected] of cases) {
  test(`quantize calibrates activations by default: ${name} -> ${expected}`, () => {
    assert.equal(calibratesByDefault(policy), expected);
  });
}
