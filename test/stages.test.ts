import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cli, workspace } from './helpers.js';
import { loadRecipe } from '../src/recipe/load.js';
import { runRecipe, type RunSummary } from '../src/run/execute.js';

const metricsOf = (s: RunSummary, id: string) => s.stages.find((x) => x.id === id)!.metrics as Record<string, any>;

function kernel(dir: string, layer: string): Float32Array {
  const mj = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  const bin = readFileSync(join(dir, 'weights.bin'));
  let off = 0;
  for (const w of mj.weightsManifest[0].weights) {
    const n = w.shape.reduce((a: number, b: number) => a * b, 1);
    if (w.name === `${layer}/kernel`) return new Float32Array(bin.buffer.slice(bin.byteOffset + off, bin.byteOffset + off + n * 4));
    off += n * 4;
  }
  throw new Error(`no kernel for ${layer}`);
}

const zeros = (a: Float32Array) => a.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
const distinct = (a: Float32Array) => new Set(a).size;

const PIPE = `version: 1
seed: 11
data:
  digits: { source: mnist, limit: 600 }
stages:
  base:
    uses: train
    with: { model: mlp-small, epochs: 2, batchSize: 32 }
  pruned:
    uses: prune
    needs: [base]
    with: { method: magnitude, scope: global, sparsity: 0.8, train: { epochs: 1, batchSize: 32 } }
  shared:
    uses: quantize
    needs: [pruned]
    with:
      default: { method: kmeans, bits: 4 }
      layers: [ { match: dense_3, bits: 5 } ]
      finetune: { epochs: 1, batchSize: 32 }
  distilled:
    uses: retrain
    needs: [pruned, base]
    with: { teacher: base, train: { epochs: 1, batchSize: 32 }, l1: 0.00001 }
  lowrank:
    uses: factorize
    needs: [base]
    with: { rank: 8 }
  neurons:
    uses: prune
    needs: [base]
    with: { method: structured, sparsity: 0.5, layers: [ { type: Dense }, { match: dense_3, exclude: true } ] }
  nm:
    uses: prune
    needs: [base]
    with: { method: "n:m", n: 2, m: 4 }
  report:
    uses: evaluate
    needs: [shared]
    with: { latencySamples: 5 }
  ship:
    uses: export
    needs: [shared]
    with: { targets: [ { target: tflite, precision: int8 }, { target: onnx, precision: int8 }, { target: tfjs, precision: uint8 } ] }
`;

test('stages end to end: prune, k-means with fine-tuning, distillation, factorization, structured, n:m, export', async () => {
  const { file, dir } = workspace(PIPE);
  const s = await runRecipe(loadRecipe(file));
  for (const st of s.stages) assert.equal(st.status, 'ran', `${st.id}: ${st.reason}`);
  const out = (id: string) => join(dir, '.compress', 'out', id);

  // Pruning: 80% global sparsity exactly; zeros survive quantization and fine-tuning on the grid.
  const prunedZeros = ['dense_1', 'dense_2', 'dense_3'].map((l) => zeros(kernel(out('pruned'), l)));
  assert.ok(Math.abs(metricsOf(s, 'pruned').sparsity - 0.8) < 0.002, `sparsity ${metricsOf(s, 'pruned').sparsity}`);
  ['dense_1', 'dense_2', 'dense_3'].forEach((l, i) => {
    const k = kernel(out('shared'), l);
    assert.ok(zeros(k) >= prunedZeros[i], `${l}: zeros kept`);
    // 4 bits => at most 16 values (zero included); dense_3 has 5 bits.
    assert.ok(distinct(k) <= (l === 'dense_3' ? 32 : 16), `${l}: ${distinct(k)} shared values`);
  });
  const meta = JSON.parse(readFileSync(join(out('shared'), 'meta.json'), 'utf8'));
  assert.equal(meta.weightQuant.dense_1.method, 'kmeans');
  // k-means weights: no activation ranges by default (the int8 exports below calibrate themselves).
  assert.deepEqual(meta.activationRanges, {});
  assert.equal(metricsOf(s, 'shared').int8Accuracy, undefined);
  const q = metricsOf(s, 'shared');
  assert.ok(q.accuracy > 0.5, `quantized accuracy ${q.accuracy}`);
  assert.equal(q.layers.length, 3);
  assert.ok(q.layers.every((l: any) => typeof l.outputSqnrDb === 'number' && l.outputSqnrDb > 5), JSON.stringify(q.layers));

  // Retraining with a teacher keeps the pruned zeros exactly.
  for (const [i, l] of ['dense_1', 'dense_2', 'dense_3'].entries()) assert.equal(zeros(kernel(out('distilled'), l)), prunedZeros[i], l);

  // Factorization and structured pruning really shrink the model.
  assert.ok(metricsOf(s, 'lowrank').params < metricsOf(s, 'lowrank').paramsBefore * 0.5);
  // By default every Dense layer but the classifier: the layers list selects (it once factorized them all).
  const factorized = JSON.stringify(metricsOf(s, 'lowrank').layers);
  assert.ok(factorized.includes('dense_1') && factorized.includes('dense_2') && !factorized.includes('dense_3'), factorized);
  assert.ok(metricsOf(s, 'neurons').params < metricsOf(s, 'neurons').paramsBefore * 0.6, JSON.stringify(metricsOf(s, 'neurons')));
  assert.equal(metricsOf(s, 'neurons').removedUnits, 32 + 16);

  // n:m: every group of 4 input weights of every output keeps exactly 2.
  const nm = kernel(out('nm'), 'dense_2'); // [64, 32]
  for (let o = 0; o < 32; o++) for (let g = 0; g < 64; g += 4) {
    let nz = 0;
    for (let i = g; i < g + 4; i++) if (nm[i * 32 + o] !== 0) nz++;
    assert.equal(nz, 2, `group ${g} of output ${o} has ${nz} non-zeros`);
  }

  // Size accounting sees the sparsity and the codebooks.
  const r = metricsOf(s, 'report');
  assert.ok(r.compressionRatio > 10, `ratio ${r.compressionRatio}`);
  // The k-means stage (no activation ranges) takes its accuracy and loss from its error-report pass:
  // the same as evaluating its saved model on the same split.
  assert.equal(q.accuracy, r.accuracy);
  assert.ok(Math.abs(q.loss - r.loss) < 1e-5 * r.loss, `loss ${q.loss} vs ${r.loss}`);
  assert.ok(r.finalBytes < r.denseBytes / 10);

  // Three exports, each verified in its runtime.
  const exps = metricsOf(s, 'ship').exports as Array<Record<string, any>>;
  assert.deepEqual(exps.map((e) => `${e.target}-${e.precision}`), ['tflite-int8', 'onnx-int8', 'tfjs-uint8']);
  for (const e of exps) {
    assert.ok(e.agreement >= 0.99, `${e.target}: agreement ${e.agreement}`);
    assert.ok(e.latencyMs > 0 && e.fileBytes > 0 && e.gzipBytes < e.fileBytes);
    // Each size says what it measures: the file's real bytes; the ratio against the stage's own source model.
    const files = (e.files as string[]).map((f) => statSync(join(out('ship'), `${e.target}-${e.precision}`, f)).size);
    assert.equal(e.fileBytes, files.reduce((a, b) => a + b, 0));
    assert.ok(Math.abs(e.fileRatio - e.sourceBytes / e.fileBytes) < 1e-9);
    assert.equal(e.estimatedBytes, r.estimatedBytes);
    // The agreement report, and for int8 the simulated per-layer error with its worst layer.
    assert.ok(e.confidentAgreement >= 0.99 && e.confidentSamples > 0 && typeof e.accuracyDelta === 'number', JSON.stringify(e));
    if (e.precision === 'int8') {
      assert.ok(e.layers.length > 0 && e.layers.every((l: { snrDb: number }) => Number.isFinite(l.snrDb)));
      // A small model's per-layer error runs on every test sample up to 64 (a large one's on fewer: layerErrorSampleCount).
      assert.equal(e.layerSamples, Math.min(64, e.samples));
      // The named layer is the one that adds the most relative noise power to its input's.
      const added = (l: { snrDb: number; snrDropDb: number }) => 10 ** (-l.snrDb / 10) - 10 ** (-(l.snrDb + l.snrDropDb) / 10);
      assert.ok(e.layers.every((l: { snrDropDb: number }) => Number.isFinite(l.snrDropDb) && l.snrDropDb >= 0), JSON.stringify(e.layers));
      const named = e.layers.find((l: { layer: string }) => l.layer === e.worstLayer);
      // (report.json rounds the dB values: compare with a tolerance.)
      assert.ok(named && added(named) >= 0.99 * Math.max(...e.layers.map(added)), JSON.stringify(e.layers));
    }
  }
  // storage: auto: the int8 .tflite stores the pruned kernels sparse; ONNX and TF.js stay dense and each row says why.
  assert.match(exps[0].storage, /^sparse \(\d tensors?\)$/);
  assert.deepEqual(exps.slice(1).map((e) => e.storage), ['dense', 'dense']);
  assert.match(exps[0].storageNote, /DENSIFY \+ RESHAPE/);
  assert.match(exps[1].storageNote, /auto keeps ONNX dense: onnx.checker full_check rejects/);
  assert.match(exps[2].storageNote, /TF.js weight shards have no sparse encoding/);
  assert.ok(statSync(join(out('ship'), 'tflite-int8', 'model.tflite')).size > 1000);
  assert.ok(existsSync(join(out('ship'), 'onnx-int8', 'model.onnx')));
});

test('a selector that matches no layer fails the stage and lists the layers', async () => {
  const { dir } = workspace(`version: 1
data: { d: { source: mnist, limit: 200 } }
stages:
  base: { uses: train, with: { model: mlp-small, epochs: 1 } }
  p: { uses: prune, needs: [base], with: { sparsity: 0.5, layers: [ { match: "conv*" } ] } }
  other: { uses: evaluate, needs: [base], with: { latencySamples: 0 } }
`);
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /stage 'p' failed: .*matches no layer.*dense_1 \(Dense\)/s);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.match(r.stdout, /other\s+ran/, 'unrelated branches finish');
});

test('retrain teacher must be upstream (validation error, exit 2)', async () => {
  const { dir } = workspace(`version: 1
data: { d: { source: mnist, limit: 200 } }
stages:
  base: { uses: train, with: { model: mlp-small, epochs: 1 } }
  r: { uses: retrain, needs: [base], with: { teacher: bse } }
`);
  const r = await cli(['validate'], dir);
  assert.equal(r.exitCode, 2);
  assert.match(r.stderr, /compress\.config\.yaml:5:\d+  stages\.r\.with\.teacher  teacher 'bse' must be listed in needs/);
});

test('a gradual pruning schedule that would remove nothing within the training steps fails the stage before training, saying why', async () => {
  const { dir } = workspace(`version: 1
data: { d: { source: mnist, limit: 200 } }
stages:
  base: { uses: train, with: { model: mlp-small, epochs: 1 } }
  p:
    uses: prune
    needs: [base]
    with:
      schedule: { kind: polynomial-decay, initialSparsity: 0, finalSparsity: 0.8, beginStep: 0, endStep: 200, frequency: 50 }
      train: { epochs: 2, batchSize: 64 }
`);
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /stage 'p' failed: the pruning schedule removes nothing: training takes \d+ steps \(2 epoch\(s\) x \d+ batches of 64 on \d+ training samples\)[\s\S]*hint: lower schedule\.endStep/);
  assert.doesNotMatch(r.stdout, /p\s+ran/);
});

/** A trained mlp-small and a prune stage `p` with the given `with:` (one line of YAML). */
const PRUNE_AFTER_TRAIN = (w: string) => `version: 1
seed: 3
data:
  digits: { source: mnist, limit: 300 }
stages:
  base:
    uses: train
    with: { model: mlp-small, epochs: 1, batchSize: 32 }
  p:
    uses: prune
    needs: [base]
    with: ${w}
`;

for (const [what, w, sparsity] of [
  ["a schedule without its own target prunes to the stage's sparsity", '{ sparsity: 0.6, schedule: { kind: one-shot }, train: { epochs: 1, batchSize: 32 } }', 0.6],
  ['an iterative schedule with a rate prunes to 1 - (1 - rate)^rounds', '{ schedule: { kind: iterative, rate: 0.2, rounds: 2, frequency: 1 }, train: { steps: 4, batchSize: 16 } }', 0.36],
] as const) {
  test(what, async () => {
    const { file } = workspace(PRUNE_AFTER_TRAIN(w));
    const s = await runRecipe(loadRecipe(file));
    assert.equal(s.stages.find((x) => x.id === 'p')!.status, 'ran');
    assert.ok(Math.abs(metricsOf(s, 'p').sparsity - sparsity) < 0.01, `sparsity ${metricsOf(s, 'p').sparsity}`);
  });
}

test('a gradual schedule whose last pruning step within training falls short of its target says so', async () => {
  const { dir } = workspace(PRUNE_AFTER_TRAIN('{ sparsity: 0.5, schedule: { kind: polynomial-decay, initialSparsity: 0, beginStep: 0, endStep: 8, frequency: 4 }, train: { steps: 8, batchSize: 16 } }'));
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /last pruning step within the 8 training steps is 4, at sparsity 43\.8% of the target 50\.0%/);
});


test('a prune stage that changes nothing (a target that rounds to no weight or unit) says so', async () => {
  const { dir } = workspace(PRUNE_AFTER_TRAIN('{ method: structured, sparsity: 0.0001, layers: [ { type: Dense }, { match: dense_3, exclude: true } ] }'));
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /warning: pruning changed nothing: no weight became zero and no unit was removed/);
});

test("a failed export check keeps its numbers in the stage's metrics (report.json), not just in the error text", async () => {
  const { file } = workspace(`version: 1
seed: 3
data:
  digits: { source: mnist, limit: 600, split: { train: 0.4, validation: 0.1, test: 0.5 } }
stages:
  base: { uses: train, with: { model: mlp-small, epochs: 1, batchSize: 32 } }
  # ranges from one calibration sample clip the others: some of the 300 test samples flip, under threshold 1
  t: { uses: export, needs: [base], with: { target: tflite, precision: int8, threshold: 1, calibrationSamples: 1 } }
`);
  const s = await runRecipe(loadRecipe(file));
  const t = s.stages.find((x) => x.id === 't')!;
  assert.equal(t.status, 'failed', t.reason);
  const rows = (t.metrics as { exports?: Array<Record<string, unknown>> }).exports ?? [];
  assert.equal(rows.length, 1, JSON.stringify(t.metrics));
  assert.equal(typeof rows[0].agreement, 'number');
  assert.ok((rows[0].agreement as number) < 1);
  assert.match(String(rows[0].failed), /fails its check/);
  assert.equal(typeof rows[0].fileBytes, 'number');
});

test("quantize says that a SeparableConv2D's pointwise kernel stays float32 (one record per layer: the depthwise kernel's)", async () => {
  const { initEngine } = await import('../src/engine/backend.js');
  const { saveModelDir } = await import('../src/model/io.js');
  const { emptyMeta } = await import('../src/model/meta.js');
  const { tf } = await initEngine('wasm');
  const input = tf.input({ shape: [28, 28, 1] });
  const sep = tf.layers.separableConv2d({ filters: 8, kernelSize: 3, strides: 2, name: 'sep', activation: 'relu' }).apply(input) as ReturnType<typeof tf.input>;
  const out = tf.layers.dense({ units: 10, activation: 'softmax', name: 'head' }).apply(tf.layers.flatten().apply(sep)) as ReturnType<typeof tf.input>;
  const model = tf.model({ inputs: input, outputs: out });
  const { dir } = workspace(`version: 1
seed: 2
data:
  digits: { source: mnist, limit: 200 }
stages:
  model: { uses: load, with: { path: m/model.json } }
  int8: { uses: quantize, needs: [model], with: { default: { method: linear, bits: 8 } } }
`);
  await saveModelDir(tf, model, emptyMeta(), join(dir, 'm'));
  model.dispose();
  const r = await cli(['run'], dir);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout + r.stderr, /warning: SeparableConv2D layers get their depthwise kernel quantized only; the pointwise kernel stays float32 .*: sep \(8 pointwise weights\)/);
});
