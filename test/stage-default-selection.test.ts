import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workspace } from './helpers.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe } from '../src/run/execute.js';

/**
 * Stages run with their default layer selection on a MobileNet-style model (dw-cnn: a conv stem, depthwise-separable
 * blocks, one Dense classifier) say what the default took and what to write instead.
 */
const RECIPE = `version: 1
seed: 5
data:
  digits: { source: mnist, limit: 200 }
stages:
  base:
    uses: train
    with: { model: dw-cnn, epochs: 1, batchSize: 32 }
  lowrank:
    uses: factorize
    needs: [base]
  nm:
    uses: prune
    needs: [base]
    with: { method: "n:m", n: 2, m: 4 }
`;

const { file } = workspace(RECIPE);
const summary = await runRecipe(loadRecipe(file));
const reason = (id: string) => summary.stages.find((s) => s.id === id)!;

test('factorize on a model whose only Dense is its classifier fails saying the default skips the classifier, and how to pick convs', () => {
  assert.equal(reason('lowrank').status, 'failed');
  assert.match(reason('lowrank').reason, /by default factorize takes every Dense layer but the last \(the classifier\), and this model has 1 Dense layer; list the layers to factorize, e\.g\. layers: \[\{ type: Conv2D \}\]/);
});

test('n:m pruning with its default selection names the depthwise layer it cannot prune and the selector that leaves it out', () => {
  assert.equal(reason('nm').status, 'failed');
  assert.match(reason('nm').reason, /method n:m cannot prune layer 'block_1_dw'.*exclude it \(layers: \[\{ type: DepthwiseConv2D, exclude: true \}\]\)/);
});
