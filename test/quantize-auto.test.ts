/** `bits: auto` in the quantize stage: the width search (chooseAutoBits) and the stage end to end. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workspace } from './helpers.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe } from '../src/run/execute.js';
import { chooseAutoBits } from '../src/stages/quantize.js';

/** A synthetic model: each layer loses `loss(layer, bits)` accuracy at a width, and the losses add up. */
function synthetic(loss: Record<string, (bits: number) => number>, interaction: (bits: Map<string, number>) => number = () => 0) {
  const scans: Array<[string, number]> = [];
  return {
    scans,
    layer: (name: string, bits: number) => {
      scans.push([name, bits]);
      return 0.9 - loss[name](bits);
    },
    all: (bits: Map<string, number>) => 0.9 - [...bits].reduce((a, [n, b]) => a + loss[n](b), 0) - interaction(bits),
  };
}

test('bits: auto gives each layer the narrowest width whose own drop is within its share of the budget', () => {
  // a loses 0.04 below 5 bits, b loses 0.04 below 3 bits; a budget of 0.02 gives each a share of 0.01.
  const m = synthetic({ a: (b) => (b < 5 ? 0.04 : 0), b: (b) => (b < 3 ? 0.04 : 0) });
  const bits = chooseAutoBits([['a', { method: 'linear' }], ['b', { method: 'linear' }]], 0.02, 0.9, m.layer, m.all);
  assert.deepEqual(Object.fromEntries(bits), { a: 5, b: 3 });
});

test('bits: auto searches k-means widths over the documented 1..16, not only 2..8', () => {
  const wide = synthetic({ k: (b) => (b < 12 ? 0.05 : 0) });
  assert.equal(chooseAutoBits([['k', { method: 'kmeans' }]], 0.01, 0.9, wide.layer, wide.all).get('k'), 12);
  const easy = synthetic({ k: () => 0 });
  assert.equal(chooseAutoBits([['k', { method: 'kmeans' }]], 0.01, 0.9, easy.layer, easy.all).get('k'), 1);
  // Linear stays within int-N 2..8: a layer that never fits gets 8.
  const never = synthetic({ l: () => 0.5 });
  assert.equal(chooseAutoBits([['l', { method: 'linear' }]], 0.01, 0.9, never.layer, never.all).get('l'), 8);
});

test('bits: auto widens the most sensitive layer while the whole model is over budget', () => {
  // Alone, each is within its share (0.0075) at 2 bits; together at 2 bits they also interact (0.01 more):
  // 0.006 + 0.004 + 0.01 > 0.015. Widening x, the more sensitive, removes its drop and the interaction.
  const m = synthetic({ x: (b) => (b < 3 ? 0.006 : 0), y: (b) => (b < 3 ? 0.004 : 0) }, (bits) => ([...bits.values()].every((b) => b < 3) ? 0.01 : 0));
  const bits = chooseAutoBits([['x', { method: 'linear' }], ['y', { method: 'linear' }]], 0.015, 0.9, m.layer, m.all);
  assert.deepEqual(Object.fromEntries(bits), { x: 3, y: 2 });
});

test('bits: auto measures only the widths it reaches', () => {
  const m = synthetic({ k: (b) => (b < 3 ? 0.05 : 0) });
  chooseAutoBits([['k', { method: 'kmeans' }]], 0.01, 0.9, m.layer, m.all);
  assert.deepEqual(m.scans, [['k', 1], ['k', 2], ['k', 3]]);
});

test('quantize with bits: auto and a loose budget runs end to end and picks the narrowest k-means width (1 bit)', async () => {
  const { file } = workspace(`version: 1
seed: 3
data:
  digits: { source: mnist, limit: 300 }
stages:
  base:
    uses: train
    with: { model: mlp-small, epochs: 1, batchSize: 32 }
  shared:
    uses: quantize
    needs: [base]
    with: { default: { method: kmeans, bits: auto }, budget: 1 }
`);
  const s = await runRecipe(loadRecipe(file));
  assert.equal(s.exitCode, 0, JSON.stringify(s.stages.map((x) => x.reason)));
  const layers = (s.stages.find((x) => x.id === 'shared')!.metrics as { layers: Array<{ name: string; bits: number }> }).layers;
  assert.ok(layers.length >= 2, JSON.stringify(layers));
  for (const l of layers) assert.equal(l.bits, 1, `${l.name}: ${l.bits} bits`);
});
