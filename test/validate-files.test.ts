/**
 * A data file, image folder, data root or model file the recipe names that is not there is a recipe
 * problem `validate` reports at its position (exit 2), and `run` says the same before any stage runs:
 * it was `ok` from validate and a bare `ENOENT: no such file or directory, stat '...'` from run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { cli, workspace } from './helpers.js';

const RECIPE = `version: 1
name: missing
data:
  mine: { source: files, features: data/features.npy, labels: data/labels.npy, numClasses: 3 }
  pics: { source: images, root: photos, train: train, test: test }
  fashion: { source: idx, root: /usr/share/datasets, images: no-such-images.gz, labels: no-such-labels.gz }
stages:
  model:
    uses: load
    with: { path: model.onnx }
  a: { uses: evaluate, needs: [model], with: { data: mine } }
  b: { uses: evaluate, needs: [model], with: { data: pics } }
  c: { uses: evaluate, needs: [model], with: { data: fashion } }
`;

test('validate reports each missing data file, data root and model file at its recipe position', async () => {
  const { dir } = workspace(RECIPE);
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 2, r.stdout + r.stderr);
  const out = r.stderr;
  assert.match(out, /compress\.config\.yaml:4:\d+ +data\.mine\.features +data features path 'data\/features\.npy' not found/);
  assert.match(out, /compress\.config\.yaml:4:\d+ +data\.mine\.labels +data labels path 'data\/labels\.npy' not found/);
  assert.match(out, /compress\.config\.yaml:5:\d+ +data\.pics\.root +data root 'photos' does not exist/);
  assert.match(out, /compress\.config\.yaml:6:\d+ +data\.fashion\.images +data images path 'no-such-images\.gz' not found \(\/usr\/share\/datasets\/no-such-images\.gz\)/);
  assert.match(out, /compress\.config\.yaml:10:\d+ +stages\.model\.with\.path +model path 'model\.onnx' not found/);
  assert.doesNotMatch(out, /ENOENT|\n\s+at /);
});

test('run stops on a missing data folder before any stage runs, naming it at its position', async () => {
  const { dir } = workspace(RECIPE.replace('photos', 'pictures'));
  mkdirSync(join(dir, 'pictures'));
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /compress\.config\.yaml:5:\d+ +data\.pics\.train +data train folder 'train' not found/);
  assert.doesNotMatch(r.stderr, /ENOENT/);
  assert.ok(!existsSync(join(dir, '.compress', 'reports')), 'no stage ran, no report written');
});
