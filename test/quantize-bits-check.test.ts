/**
 * A quantize width outside its method's range (linear 2..8, k-means 1..16) is a recipe problem that
 * `validate` and the start of `run` report at the recipe position, before any stage runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRecipe } from '../src/recipe/load.js';
import { RecipeError, type RecipeProblem } from '../src/recipe/errors.js';

const recipe = (quantizeWith: string) => `version: 1
data:
  digits: { source: mnist, limit: 100 }
stages:
  m: { uses: train, with: { model: lenet-300-100, epochs: 1 } }
  q:
    uses: quantize
    needs: [m]
    with:
${quantizeWith}
`;

function problems(text: string): RecipeProblem[] {
  try {
    parseRecipe(text, 'r.yaml');
  } catch (e) {
    assert.ok(e instanceof RecipeError, `expected RecipeError, got ${(e as Error).stack}`);
    return e.problems;
  }
  return [];
}

const cases: Array<{ name: string; with: string; line?: number; path?: string; re?: RegExp }> = [
  { name: 'linear default at 1 bit', with: '      default: { method: linear, bits: 1 }', line: 10, path: 'stages.q.with.default.bits', re: /linear quantization takes 2\.\.8 bits \(got 1\); use method: kmeans/ },
  { name: 'linear (implicit) default at 12 bits', with: '      default: { bits: 12 }', line: 10, path: 'stages.q.with.default.bits', re: /takes 2\.\.8 bits \(got 12\)/ },
  { name: 'a layer switching to linear inherits 12 bits from a k-means default', with: '      default: { method: kmeans, bits: 12 }\n      layers:\n        - { match: dense_1, method: linear }', line: 12, path: 'stages.q.with.layers[0].method', re: /takes 2\.\.8 bits \(got 12\)/ },
  { name: 'a layer override at 9 bits under linear', with: '      layers:\n        - { match: dense_1, bits: 9 }', line: 11, path: 'stages.q.with.layers[0].bits', re: /got 9/ },
  { name: 'k-means at 12 bits is fine', with: '      default: { method: kmeans, bits: 12 }' },
  { name: 'float16 ignores bits', with: '      default: { method: float16, bits: 12 }' },
  { name: 'auto bits are chosen within the range', with: '      default: { method: linear, bits: auto }' },
];

for (const c of cases) {
  test(`quantize bit range at validation: ${c.name}`, () => {
    const ps = problems(recipe(c.with));
    if (!c.re) return assert.deepEqual(ps.map((p) => p.message), []);
    assert.equal(ps.length, 1, ps.map((p) => `${p.path} ${p.message}`).join('\n'));
    assert.equal(ps[0].path, c.path);
    assert.equal(ps[0].line, c.line);
    assert.match(ps[0].message, c.re);
  });
}
