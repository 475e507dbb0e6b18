import { test } from 'node:test';
import assert from 'node:assert/strict';
import { baselineOf } from '../src/report/model.js';
import { renderHtml } from '../src/report/html.js';
import { reportJson, summaryMarkdown } from '../src/report/write.js';
import type { RunSummary, StageOutcome } from '../src/run/execute.js';

// A run shaped like the Deep Compression pipeline: a small baseline, a quantized model of 1 MiB dense fp32
// whose Deep Compression estimate is 25 KiB, and one export stage that wrote two files.
const stage = (o: Partial<StageOutcome> & Pick<StageOutcome, 'id' | 'uses'>): StageOutcome => ({ status: 'ran', reason: 'new stage', seconds: 1, metrics: {}, key: 'ab'.repeat(32), ...o });
const SOURCE = 1_066_440;
const EST = 25_199;
const exportRow = (target: string, fileBytes: number, gzipBytes: number) => ({
  target, precision: 'int8', files: [`model.${target}`], fileBytes, gzipBytes, sourceBytes: SOURCE, fileRatio: SOURCE / fileBytes,
  estimatedBytes: EST, estimatedRatio: SOURCE / EST, accuracy: 0.95, agreement: 1, latencyMs: 0.2,
});
const run: RunSummary = {
  runId: '20260101T000000-abcdef', recipe: 'pipelines/dc.yaml', engine: 'tfjs@4.22.0/wasm', startedAt: '2026-01-01T00:00:00.000Z', seconds: 3,
  exitCode: 0, lockPath: 'pipelines/dc.lock', outDir: 'pipelines/.compress/out/dc.yaml', gates: [],
  stages: [
    // The recipe's first model is tiny: a ratio against it would be 0.0x for every file.
    stage({ id: 'baseline', uses: 'train', metrics: { accuracy: 0.96, params: 1_000 } }),
    stage({ id: 'report', uses: 'evaluate', metrics: { accuracy: 0.95, sparsity: 0.92, denseBytes: SOURCE, finalBytes: EST, estimatedBytes: EST, compressionRatio: SOURCE / EST, estimatedRatio: SOURCE / EST } }),
    stage({ id: 'ship', uses: 'export', metrics: { ...exportRow('tflite', 279_856, 37_461), target: 'tflite', precision: 'int8', exports: [exportRow('tflite', 279_856, 37_461), exportRow('onnx', 275_798, 36_000)] } }),
  ],
};

const rowOf = (md: string, start: string) => md.split('\n').find((l) => l.startsWith(start));

test('summary.md lists every export of a multi-target export stage', () => {
  const md = summaryMarkdown(run);
  assert.ok(rowOf(md, '| ship · tflite int8 |'), md);
  assert.ok(rowOf(md, '| ship · onnx int8 |'), md);
});

test("summary.md: a file's ratio divides its own source model's dense fp32 bytes, next to its raw and gzip bytes", () => {
  const md = summaryMarkdown(run);
  const cells = rowOf(md, '| ship · onnx int8 |')!.split('|').map((c) => c.trim());
  const header = rowOf(md, '| model |')!.split('|').map((c) => c.trim());
  const cell = (name: string) => cells[header.indexOf(name)];
  assert.equal(cell('file (raw)'), '269.3 KiB');
  assert.equal(cell('file (gzip)'), '35.2 KiB');
  assert.equal(cell('file ratio'), `${(SOURCE / 275_798).toFixed(1)}x`);
  assert.equal(cell('source fp32'), '1.02 MiB');
});

test('summary.md labels the Deep Compression figure as an estimate and says what each size measures', () => {
  const md = summaryMarkdown(run);
  const header = rowOf(md, '| model |')!.split('|').map((c) => c.trim());
  const cells = rowOf(md, '| report |')!.split('|').map((c) => c.trim());
  assert.equal(cells[header.indexOf('estimate')], '24.6 KiB');
  assert.equal(cells[header.indexOf('est. ratio')], '42.3x est.');
  assert.equal(cells[header.indexOf('file (raw)')], '', 'an evaluate stage wrote no file');
  assert.match(md, /\*estimate\* = Deep Compression storage estimate \(CSR \+ codebook \+ Huffman\), not a file/);
});

test('report.json says what each size metric measures; report.html lists every export with labelled sizes', () => {
  const json = reportJson(run);
  assert.match(json.sizeMetrics.estimatedBytes, /estimate/);
  assert.match(json.sizeMetrics.fileBytes, /exported file/);
  const html = renderHtml(json);
  const rows = [...html.matchAll(/<tr[^>]*><th scope="row">ship<\/th><td>export <span class="muted">(\w+ int8)<\/span>.*?<\/tr>/g)];
  assert.deepEqual(rows.map((r) => r[1]), ['tflite int8', 'onnx int8']);
  assert.match(rows[1][0], /<td class="n" data-size="file">269\.3 KiB<\/td>/);
  assert.match(rows[1][0], /<td class="n" data-size="estimate">24\.6 KiB<sup title="Deep Compression storage estimate/);
});

test('report.html draws the per-layer int8 SNR of every int8 export and names the worst layer', () => {
  const layers = [{ layer: 'conv_1', op: 'conv2d', snrDb: 31.2, cosine: 0.9996 }, { layer: 'dw_1', op: 'depthwise', snrDb: 6.4, cosine: 0.88 }, { layer: 'dense_1', op: 'dense', snrDb: 25, cosine: 0.999 }];
  const withLayers: RunSummary = {
    ...run,
    stages: [...run.stages.slice(0, 2), stage({ id: 'ship', uses: 'export', metrics: { exports: [{ ...exportRow('tflite', 279_856, 37_461), layers, worstLayer: 'dw_1', worstLayerSnrDb: 6.4, worstLayerSnrDropDb: 24.8, confidentAgreement: 1, confidentSamples: 180, accuracyDelta: -0.002 }] } })],
  };
  const html = renderHtml(reportJson(withLayers));
  const chart = /<svg\b[^>]*data-chart="layer-snr"[^>]*>([\s\S]*?)<\/svg>/.exec(html);
  assert.ok(chart, 'a layer-snr chart');
  assert.equal((chart[1].match(/<rect class="bar"/g) ?? []).length, 3);
  assert.match(html, /Most noise added: <code>dw_1<\/code> \(6\.4 dB, 24\.8 dB below its input\)/);
});

test('the baseline of a recipe without a stage named baseline is the first stage with an accuracy: the evaluate after a load, not the load', () => {
  const stages = [
    { id: 'model', uses: 'load', status: 'ran', metrics: { importRelativeDiff: 1e-6 } },
    { id: 'base-eval', uses: 'evaluate', status: 'ran', metrics: { accuracy: 0.9 } },
    { id: 'pruned', uses: 'prune', status: 'ran', metrics: { accuracy: 0.88 } },
  ] as Array<Parameters<typeof baselineOf>[0][number]>;
  assert.equal(baselineOf(stages)?.id, 'base-eval');
  assert.equal(baselineOf([{ ...stages[0], metrics: { accuracy: 0.91 } }, ...stages.slice(1)])?.id, 'model');
});

test('summary.md says what each accuracy was measured on: how many samples of which split, in the engine or the exported file\'s runtime', () => {
  const measured: RunSummary = {
    ...run,
    stages: [
      stage({ id: 'report', uses: 'evaluate', metrics: { accuracy: 0.95, samples: 500, split: 'test', backend: 'wasm' } }),
      stage({ id: 'ship', uses: 'export', metrics: { exports: [{ ...exportRow('tflite', 279_856, 37_461), samples: 500, runtime: 'litert-wasm@2.5.3' }] } }),
    ],
  };
  const md = summaryMarkdown(measured);
  const header = rowOf(md, '| model |')!.split('|').map((c) => c.trim());
  const cell = (row: string) => rowOf(md, row)!.split('|').map((c) => c.trim())[header.indexOf('measured on')];
  assert.equal(cell('| **report**'), '500 test · engine (wasm)');
  assert.equal(cell('| ship'), '500 test · litert-wasm@2.5.3');
  assert.ok(header.includes('latency (batch 1)'), header.join('|'));
  const html = renderHtml(reportJson(measured));
  assert.match(html, /<td class="muted" data-measured-on>500 test · engine \(wasm\)<\/td>/);
  assert.match(html, /<td class="muted" data-measured-on>500 test · litert-wasm@2\.5\.3<\/td>/);
});
