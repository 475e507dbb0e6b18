/**
 * One home for the checks before any stage (src/run/preflight.ts): `validate` and `run` call the same
 * preflight, so they report the same problems, and `run` stops before any stage starts (exit 2, as for
 * an invalid recipe) instead of failing a stage on its way while independent stages run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT } from '../src/exit-codes.js';
import { cli, workspace } from './helpers.js';

/** A workspace whose `ext` stage loads a model through a symlink that leads out of it; `baseline` is fine. */
function linkedOut(): string {
  const outside = mkdtempSync(join(tmpdir(), 'compress-outside-'));
  mkdirSync(join(outside, 'm'));
  writeFileSync(join(outside, 'm', 'model.json'), '{}');
  const { dir } = workspace(`version: 1
data:
  digits: { source: mnist, limit: 100 }
stages:
  baseline:
    uses: train
    with: { model: mlp-small, epochs: 1 }
  ext:
    uses: load
    with: { path: models/model.json }
`);
  symlinkSync(join(outside, 'm'), join(dir, 'models'));
  return dir;
}

test('validate and run report the same preflight problems, positioned in the recipe', async () => {
  const dir = linkedOut();
  const v = await cli(['validate'], dir);
  const r = await cli(['run'], dir);
  assert.equal(v.exitCode, EXIT.usage, v.stderr);
  assert.equal(r.exitCode, EXIT.usage, r.stderr);
  assert.match(v.stderr, /^compress\.config\.yaml:10:11  stages\.ext\.with  model path 'models\/model\.json' goes through a symbolic link to '.*', outside the recipe's directory/m);
  assert.equal(r.stderr, v.stderr);
});

test('run stops at a preflight problem before any stage starts (exit 2); the independent stage does not run either', async () => {
  const dir = linkedOut();
  const r = await cli(['run', '--json'], dir);
  assert.equal(r.exitCode, EXIT.usage, r.stderr);
  const events = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string });
  assert.deepEqual(events.map((e) => e.type), [], 'no run-start, stage-start or stage-end event');
  assert.ok(!existsSync(join(dir, '.compress')), 'no cache, output or report directory made');
  assert.ok(!existsSync(join(dir, 'compress.lock')), 'no lock written');
});
