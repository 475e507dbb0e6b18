import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { cli, workspace } from './helpers.js';

const { tf } = await initEngine('cpu');

/** A TF.js layers model (tfjs-layers 4.22 model.save() layout) whose LSTM no graph export target can express. */
async function writeLstmModel(dir: string): Promise<void> {
  const input = tf.input({ shape: [28, 28], name: 'rows' });
  const h = tf.layers.lstm({ units: 8, name: 'my_lstm' }).apply(input) as tfType.SymbolicTensor;
  const out = tf.layers.dense({ units: 10, activation: 'softmax', name: 'out' }).apply(h) as tfType.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: out });
  mkdirSync(dir, { recursive: true });
  await model.save(tf.io.withSaveHandler(async (a) => {
    writeFileSync(join(dir, 'model.json'), JSON.stringify({ modelTopology: a.modelTopology, format: 'layers-model', weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }] }));
    writeFileSync(join(dir, 'weights.bin'), new Uint8Array(a.weightData as ArrayBuffer));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
}

const recipe = (target: string) => `version: 1
data:
  digits: { source: mnist, limit: 200 }
stages:
  src:
    uses: load
    with: { path: lstm }
  int8:
    uses: quantize
    needs: [src]
    with: { default: { method: linear, bits: 8 } }
  ship:
    uses: export
    needs: [int8]
    with: { target: ${target}, precision: ${target === 'tfjs' ? 'uint8' : 'int8'} }
`;

const EXPECTED = /stage 'ship' exports to tflite, which cannot express layer 'my_lstm' \(LSTM\) of lstm \(loaded by stage 'src'\): layer type LSTM is not supported .*; export this model with target tfjs, or change the layer/;

test('compress run stops before any stage when an export target cannot express a layer of the loaded model', async () => {
  const { dir } = workspace(recipe('tflite'));
  await writeLstmModel(join(dir, 'lstm'));
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, EXPECTED);
  assert.match(r.stderr, /no stage was run/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  // Nothing ran: no stage output, no cache entry, no report.
  const state = join(dir, '.compress');
  const entries = existsSync(state) ? readdirSync(state, { recursive: true }).map(String) : [];
  assert.deepEqual(entries.filter((e) => /out|cache\/|reports\//.test(e) && !/\.lock$/.test(e)), [], entries.join(', '));
});

test('compress validate reports the same problem; a tfjs export of the same model validates', async () => {
  const { dir } = workspace(recipe('tflite'));
  await writeLstmModel(join(dir, 'lstm'));
  const bad = await cli(['validate'], dir);
  assert.equal(bad.exitCode, 1, bad.stderr);
  assert.match(bad.stderr, EXPECTED);
  const ok = workspace(recipe('tfjs'));
  await writeLstmModel(join(ok.dir, 'lstm'));
  const good = await cli(['validate'], ok.dir);
  assert.equal(good.exitCode, 0, good.stderr);
});
