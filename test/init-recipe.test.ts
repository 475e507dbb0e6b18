import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { starterRecipe } from '../src/commands/init.js';
import { loadSplits } from '../src/data/load.js';
import { parseRecipe } from '../src/recipe/load.js';
import { plannedSteps } from '../src/stages/training-options.js';

/**
 * The recipe `compress init` writes must do what it says on its own data: its gradual pruning
 * schedule ends within the steps its training takes, so the final sparsity is reached (it ended at
 * step 300 of 250, and `compress init && compress run` warned and stopped at 77% of the 80%).
 */
test("the starter recipe's pruning schedule ends within its training steps on its MNIST split", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'compress-init-'));
  for (const model of [undefined, 'model.json']) {
    const r = parseRecipe(starterRecipe(model), join(dir, 'compress.config.yaml'));
    const prune = r.stageById.get('prune')!;
    const splits = await loadSplits(r.data[prune.datasets[0]], r.dir, r.seed);
    const steps = plannedSteps(prune.with.train, splits.train.n);
    assert.ok(prune.with.schedule.endStep <= steps, `model ${model ?? 'built-in'}: schedule ends at step ${prune.with.schedule.endStep}, training takes ${steps}`);
  }
});

test('for an image model the starter recipe suggests an image-folder dataset that validates once uncommented', () => {
  const dir = mkdtempSync(join(tmpdir(), 'compress-init-'));
  for (const fit of [{ mnist: false, numClasses: 3, inputShape: [64, 64, 3], nchw: [3, 64, 64] }, { mnist: false, numClasses: 5, inputShape: [32, 32, 1] }]) {
    const text = starterRecipe('model.onnx', './schemas/recipe.schema.json', fit);
    const hint = /^#\s+(mine: \{ source: images, .*\})$/m.exec(text);
    assert.ok(hint, text);
    assert.match(hint[1], fit.inputShape[2] === 3 ? /size: \[64, 64\], color: rgb/ : /size: \[32, 32\], color: grayscale/);
    const swapped = text.replace(/^ {2}mine: \{ source: files.*$/m, `  ${hint[1]}`);
    const r = parseRecipe(swapped, join(dir, 'compress.config.yaml'));
    assert.equal(r.data.mine.source, 'images');
  }
});

test("for a model whose data compress cannot see, the starter recipe prunes in one shot and fine-tunes, so it prunes on any data size", () => {
  const dir = mkdtempSync(join(tmpdir(), 'compress-init-'));
  const r = parseRecipe(starterRecipe('model.onnx', './schemas/recipe.schema.json', { mnist: false, numClasses: 3, inputShape: [8] }), join(dir, 'compress.config.yaml'));
  const prune = r.stageById.get('prune')!;
  assert.equal(prune.with.schedule, undefined);
  assert.equal(prune.with.sparsity, 0.8);
  assert.equal(prune.with.train.epochs, 2);
});
