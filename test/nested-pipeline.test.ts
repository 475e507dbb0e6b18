import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { initEngine } from '../src/engine/backend.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe, type RunSummary } from '../src/run/execute.js';
import { cli, workspace } from './helpers.js';
import { mobileNetV2Like, teachableMachine } from './fixtures/nested-models.js';
import { writeKeras2H5 } from './fixtures/keras-writer.js';

const { tf } = await initEngine('wasm');
const metricsOf = (s: RunSummary, id: string) => s.stages.find((x) => x.id === id)!.metrics as Record<string, any>;

/** model.json + weights.bin as tfjs-layers 4.22 model.save() writes them (Teachable Machine's download layout). */
async function saveTfjs(model: tfType.LayersModel, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await model.save(tf.io.withSaveHandler(async (a) => {
    const json = { modelTopology: a.modelTopology, format: 'layers-model', generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`, convertedBy: null, weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }] };
    writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
    writeFileSync(join(dir, 'weights.bin'), new Uint8Array(a.weightData as ArrayBuffer));
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
}

/** load -> structured prune of the expand convs -> int8 -> export to every target, each verified in its runtime (>= 99% agreement). */
const recipe = (path: string) => `version: 1
seed: 5
data:
  digits: { source: mnist, limit: 600 }
stages:
  src:
    uses: load
    with: { path: ${path} }
  slim:
    uses: prune
    needs: [src]
    with: { method: structured, sparsity: 0.25, layers: [ { match: "*", exclude: true }, { match: "*_expand" } ] }
  int8:
    uses: quantize
    needs: [slim]
    with: { default: { method: linear, bits: 8 } }
  report:
    uses: evaluate
    needs: [int8]
    with: { latencySamples: 0 }
  ship:
    uses: export
    needs: [int8]
    with: { targets: [ { target: tflite, precision: int8 }, { target: onnx, precision: int8 }, { target: tfjs, precision: float32 } ] }
`;

async function runPipeline(path: string, write: (dir: string) => Promise<void>): Promise<RunSummary> {
  const { file, dir } = workspace(recipe(path));
  await write(dir);
  const s = await runRecipe(loadRecipe(file));
  for (const st of s.stages) assert.equal(st.status, 'ran', `${st.id}: ${st.reason}`);
  return s;
}

test('a Teachable-Machine-style TF.js model goes through structured pruning, int8 and every export', async () => {
  const s = await runPipeline('tm', (dir) => saveTfjs(teachableMachine(tf), join(dir, 'tm')));
  const slim = metricsOf(s, 'slim');
  assert.ok(slim.params < slim.paramsBefore, JSON.stringify(slim));
  const report = metricsOf(s, 'report');
  assert.ok(report.macs > 0, JSON.stringify(report));
  const ship = metricsOf(s, 'ship');
  assert.deepEqual(ship.exports.map((e: any) => `${e.target} ${e.precision}`), ['tflite int8', 'onnx int8', 'tfjs float32']);
  for (const e of ship.exports) assert.ok(e.agreement >= 0.99, JSON.stringify(e));
  // Layers inside the nested models are named by their path.
  assert.ok(report.layers.some((l: any) => l.name === 'sequential_1/model1/block_1_expand' && l.macs > 0), JSON.stringify(report.layers.map((l: any) => l.name)));
});

test('a keras.applications-style MobileNetV2 .h5 (ZeroPadding2D, ReLU6, depthwise, BN, Add) goes through the same pipeline', async () => {
  const s = await runPipeline('mobilenet_v2.h5', async (dir) => writeFileSync(join(dir, 'mobilenet_v2.h5'), await writeKeras2H5(mobileNetV2Like(tf, { top: true }))));
  assert.ok(metricsOf(s, 'slim').params < metricsOf(s, 'slim').paramsBefore);
  for (const e of metricsOf(s, 'ship').exports) assert.ok(e.agreement >= 0.99, JSON.stringify(e));
});

test('a TF.js model stored with uint8 weights reports its real file bytes as its baseline size', async () => {
  const { exportModel } = await import('../src/export/index.js');
  const { emptyMeta } = await import('../src/model/meta.js');
  const { file, dir } = workspace(`version: 1
stages:
  src:
    uses: load
    with: { path: tm8 }
`);
  const model = teachableMachine(tf);
  await exportModel(tf, model, emptyMeta(), { target: 'tfjs', precision: 'uint8' }, join(dir, 'tm8'));
  const onDisk = readdirSync(join(dir, 'tm8')).reduce((a, f) => a + statSync(join(dir, 'tm8', f)).size, 0);
  const s = await runRecipe(loadRecipe(file));
  const m = metricsOf(s, 'src');
  assert.equal(m.sourceFileBytes, onDisk);
  assert.equal(m.sourceBytes, model.countParams() * 4);
  // The shard holds one byte a weight (plus per-tensor min/scale in model.json), not four.
  const shard = readdirSync(join(dir, 'tm8')).filter((f) => f.endsWith('.bin')).reduce((a, f) => a + statSync(join(dir, 'tm8', f)).size, 0);
  assert.ok(shard > 0 && shard < m.sourceBytes * 0.3, `${shard} vs ${m.sourceBytes}`);
});

test("a uint8 TF.js model: export's fileRatio and evaluate's compressionRatio divide the loaded file's real bytes, labelled so", async () => {
  const { exportModel } = await import('../src/export/index.js');
  const { emptyMeta } = await import('../src/model/meta.js');
  const { summaryMarkdown } = await import('../src/report/write.js');
  const { file, dir } = workspace(`version: 1
seed: 5
data:
  digits: { source: mnist, limit: 200 }
stages:
  src:
    uses: load
    with: { path: tm8 }
  report:
    uses: evaluate
    needs: [src]
    with: { latencySamples: 0 }
  ship:
    uses: export
    needs: [src]
    with: { target: tfjs, precision: uint8 }
`);
  await exportModel(tf, teachableMachine(tf), emptyMeta(), { target: 'tfjs', precision: 'uint8' }, join(dir, 'tm8'));
  const s = await runRecipe(loadRecipe(file));
  for (const st of s.stages) assert.equal(st.status, 'ran', `${st.id}: ${st.reason}`);
  const src = metricsOf(s, 'src');
  const ship = metricsOf(s, 'ship');
  assert.equal(ship.fileRatioOf, 'sourceFileBytes');
  assert.equal(ship.sourceFileBytes, src.sourceFileBytes);
  assert.equal(ship.fileRatio, src.sourceFileBytes / ship.fileBytes);
  // Re-exporting uint8 as uint8 is no compression (about 1x), not the 4x a dense fp32 baseline would claim.
  assert.ok(ship.fileRatio > 0.8 && ship.fileRatio < 1.25, `fileRatio ${ship.fileRatio} (dense fp32 would give ${ship.sourceBytes / ship.fileBytes})`);
  const report = metricsOf(s, 'report');
  assert.equal(report.compressionRatioOf, 'sourceFileBytes');
  assert.equal(report.compressionRatio, src.sourceFileBytes / report.estimatedBytes);
  assert.equal(report.estimatedRatio, report.denseBytes / report.estimatedBytes, 'the estimate ratio stays against dense fp32');
  const row = summaryMarkdown(s).split('\n').find((l) => l.startsWith('| ship'));
  assert.match(row ?? '', /\dx of file \|/, summaryMarkdown(s));
  // The console summary (the stages cached now) says which bytes the ratio divides too.
  const again = await cli(['run'], dir);
  assert.match(again.stdout, /\n  ship\s+cached\s+.*file [\d.]+ KiB \([\d.]+x of the loaded file\)/, again.stdout);
});
