import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { renderHtml } from '../src/report/html.js';
import { paretoFront, scatterPoints } from '../src/report/model.js';
import { niceTicks } from '../src/report/svg.js';
import { compareMarkdown, compareReports } from '../src/report/compare.js';
import { reportJson, summaryMarkdown, type ReportJson } from '../src/report/write.js';
import type { RunSummary, StageOutcome } from '../src/run/execute.js';

/** Each chart <svg> of a page with its data-chart kind and the count of its marks. */
export function charts(html: string) {
  return [...html.matchAll(/<svg\b[^>]*\bdata-chart="([^"]+)"[^>]*>([\s\S]*?)<\/svg>/g)].map((m) => ({
    kind: m[1],
    stage: /data-stage="([^"]*)"/.exec(m[0].slice(0, m[0].indexOf('>')))?.[1],
    points: (m[2].match(/<circle class="point\b/g) ?? []).length,
    front: (m[2].match(/<circle class="point pareto\b/g) ?? []).length,
    frontPaths: (m[2].match(/<path class="pareto-front"/g) ?? []).length,
    bars: (m[2].match(/<rect class="bar"/g) ?? []).length,
    series: (m[2].match(/<path class="series\b/g) ?? []).length,
    markers: (m[2].match(/<circle class="marker"/g) ?? []).length,
    ticks: (m[2].match(/<g class="tick">/g) ?? []).length,
    axisTitles: (m[2].match(/class="axis-title"/g) ?? []).length,
  }));
}

const EVIL = '<script>alert("pwned")</script>';
const stage = (o: Partial<StageOutcome> & Pick<StageOutcome, 'id' | 'uses'>): StageOutcome => ({ status: 'ran', reason: 'new stage', seconds: 1.5, metrics: {}, key: 'ab'.repeat(32), ...o });

function summary(stages: StageOutcome[], extra: Partial<RunSummary> = {}): RunSummary {
  return {
    runId: '20260101T000000-abcdef',
    recipe: 'pipelines/demo.yaml',
    engine: 'tfjs@4.22.0/wasm',
    startedAt: '2026-01-01T00:00:00.000Z',
    seconds: 12.3,
    stages,
    gates: [],
    exitCode: 0,
    lockPath: 'pipelines/demo.lock',
    outDir: 'pipelines/.compress/out/demo.yaml',
    ...extra,
  };
}

const history = (n: number) => Array.from({ length: n }, (_, i) => ({ epoch: i, loss: 2 - i * 0.3, accuracy: 0.3 + i * 0.1, valLoss: 2.1 - i * 0.25, valAccuracy: 0.28 + i * 0.1, lr: 0.001 }));
const layers = (names: string[], kept: number, bits = 32) => names.map((name, i) => ({ name, shape: [10, 10], params: 100 * (i + 1), nonzeros: Math.round(100 * (i + 1) * kept), kept, bits, storage: 'sparse-huffman', denseBytes: 400 * (i + 1), finalBytes: 150 * (i + 1), ratio: 2.6, pruning: 'magnitude' }));

function demo(): RunSummary {
  return summary([
    stage({ id: 'baseline', uses: 'train', status: 'cached', reason: 'cached', metrics: { accuracy: 0.9, loss: 0.3, params: 50_000, history: history(4) } }),
    stage({ id: 'prune', uses: 'prune', metrics: { accuracy: 0.88, sparsity: 0.8, params: 50_000, layers: [{ name: 'dense_1', sparsity: 0.8, params: 100 }] } }),
    stage({ id: 'eval', uses: 'evaluate', metrics: { accuracy: 0.885, sparsity: 0.8, finalBytes: 40_000, compressionRatio: 5, latencyMs: 0.02, layers: layers(['dense_1', 'dense_2', 'dense_3', 'dense_4', 'dense_5'], 0.2) } }),
    stage({ id: 'tflite', uses: 'export', metrics: { accuracy: 0.87, bytes: 60_000, target: 'tflite', precision: 'int8', agreement: 0.99 } }),
    stage({ id: 'worse', uses: 'export', metrics: { accuracy: 0.8, bytes: 90_000, target: 'onnx', precision: 'fp32' } }),
  ], { gates: [{ stage: 'eval', gate: 'accuracy >= 0.85', passed: true, left: 0.885, right: 0.85, message: 'gate ok' }, { stage: 'eval', gate: 'compressionRatio >= 10', passed: false, left: 5, right: 10, message: "gate 'compressionRatio >= 10' failed: 5 < 10" }] });
}

test('report helpers: nice ticks cover the data, pareto front keeps only non-dominated points', () => {
  assert.deepEqual(niceTicks(0, 0.87, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  const t = niceTicks(37.2, 211.7, 5);
  assert.ok(t[0] <= 37.2 && t[t.length - 1] >= 211.7 && t.length <= 8, String(t));
  assert.deepEqual(paretoFront([{ x: 1, y: 0.5 }, { x: 2, y: 0.6 }, { x: 3, y: 0.55 }, { x: 2, y: 0.4 }, { x: 2, y: 0.6 }]), [true, true, false, false, true]);
  const pts = scatterPoints(reportJson(demo()));
  // prune has an accuracy but no size: not a point. baseline: dense fp32 estimate (params x 4).
  assert.deepEqual(pts.map((p) => [p.id, p.size, p.front]), [['baseline', 200_000, true], ['eval', 40_000, true], ['tflite', 60_000, false], ['worse', 90_000, false]]);
  assert.equal(pts[0].sizeEstimated, true);
});

test('report.html: every chart is drawn as SVG with axes, ticks and one mark per datum', () => {
  const html = renderHtml(reportJson(demo()), { recipeName: 'demo' });
  const cs = charts(html);
  assert.deepEqual(cs.map((c) => c.kind), ['scatter', 'layer-sparsity', 'layer-bits', 'loss', 'accuracy']);
  const [scatter, sparsity, bits, loss, acc] = cs;
  assert.equal(scatter.points, 4);
  assert.equal(scatter.front, 2);
  assert.equal(scatter.frontPaths, 1);
  assert.equal(sparsity.bars, 5);
  assert.equal(bits.bars, 5);
  assert.equal(sparsity.stage, 'eval');
  assert.deepEqual([loss.series, loss.markers, acc.series, acc.markers], [2, 8, 2, 8]);
  for (const c of cs) {
    assert.ok(c.ticks >= 3, `${c.kind} has ticks`);
    assert.ok(c.axisTitles >= 1, `${c.kind} has axis titles`);
  }
  // Header, models table, gates.
  assert.match(html, /<h1>compress · demo<\/h1>/);
  assert.match(html, /1 of 5 stages cached, 4 ran/);
  assert.match(html, /<span class="badge fail">FAIL<\/span>/);
  assert.match(html, /1 of 2 gates passed/);
  for (const id of ['baseline', 'eval', 'tflite', 'worse']) assert.match(html, new RegExp(`<tr[^>]*><th scope="row">${id}`));
  assert.match(html, /<th scope="row">tflite<\/th><td>export <span class="muted">tflite int8<\/span>/);
  // Self-contained: no URL with a scheme anywhere; the one script is allowed by hash in the CSP.
  assert.doesNotMatch(html, /https?:\/\//);
  assert.doesNotMatch(html, /\b(src|href)\s*=\s*["']?\s*(\w+:|\/\/)/i);
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 1);
  const hash = createHash('sha256').update(scripts[0][1]).digest('base64');
  assert.ok(html.includes(`script-src 'sha256-${hash}'`), 'CSP allows exactly the inline script');
  assert.match(html, /default-src 'none'/);
});

test('report.html: hostile stage, layer, gate, recipe and error text is escaped', () => {
  const s = summary([
    stage({ id: EVIL, uses: 'train', metrics: { accuracy: 0.5, params: 10, history: history(2) } }),
    stage({ id: 'ev', uses: 'evaluate', reason: `with.x: ${EVIL}`, metrics: { accuracy: 0.6, finalBytes: 20, layers: layers(['<img src=x onerror=alert(1)>', 'ok'], 0.5) } }),
    stage({ id: 'bad', uses: 'export', status: 'failed', reason: 'boom', error: { name: 'Error', message: '<iframe srcdoc="x"></iframe>' } }),
  ], { recipe: '/tmp/<svg onload=alert(1)>.yaml', exitCode: 1, gates: [{ stage: 'ev', gate: 'accuracy >= 0.5 </td><script>', passed: true, left: 0.6, right: 0.5, message: `'"&<>` }] });
  const html = renderHtml(reportJson(s), { recipeName: `${EVIL}"'` });
  assert.equal((html.match(/<script/g) ?? []).length, 1, 'only the report script');
  assert.doesNotMatch(html, /<img|<iframe|<svg onload/);
  assert.ok(html.includes('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;'));
  assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'));
  assert.ok(html.includes('&#39;&quot;&amp;&lt;&gt;'));
  const cs = charts(html);
  assert.equal(cs.find((c) => c.kind === 'loss')!.stage, '&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;');
  assert.equal(cs.find((c) => c.kind === 'layer-sparsity')!.bars, 2);
  assert.match(html, /1 a stage failed/);
});

test('report.html: a run with no metrics (every stage failed) still renders, with empty-state notes', () => {
  const html = renderHtml(reportJson(summary([stage({ id: 'a', uses: 'train', status: 'failed', reason: 'x' }), stage({ id: 'b', uses: 'evaluate', status: 'skipped', reason: 'upstream failed' })], { exitCode: 1 })));
  assert.equal(charts(html).length, 0);
  assert.match(html, /<th scope="row">b<\/th><td>evaluate<\/td><td class="n">—<\/td>/);
  assert.match(html, /No stage reported both an accuracy and a model size/);
  assert.match(html, /No stage recorded a training history/);
});

test('summary markdown reads a RunSummary and its report.json alike; compare shows deltas and re-runs', () => {
  const s = demo();
  const json = JSON.parse(JSON.stringify(reportJson(s))) as ReportJson;
  assert.equal(summaryMarkdown(json), summaryMarkdown(s));
  const next = demo();
  next.runId = '20260102T000000-123456';
  next.stages = next.stages.map((x) => (x.id === 'eval' ? { ...x, key: 'cd'.repeat(32), reason: 'with.sparsity: 0.8 -> 0.9', metrics: { ...x.metrics, sparsity: 0.9, finalBytes: 30_000, accuracy: 0.87 } } : { ...x, status: 'cached', reason: 'cached' }));
  const c = compareReports(reportJson(s), reportJson(next));
  const ev = c.stages.find((x) => x.id === 'eval')!;
  assert.equal(ev.reran, true);
  assert.equal(ev.keyChanged, true);
  assert.deepEqual(ev.changes.map((x) => x.metric), ['accuracy', 'finalBytes', 'sparsity']);
  assert.ok(Math.abs(ev.changes[2].delta! - 0.1) < 1e-12);
  assert.equal(c.stages.find((x) => x.id === 'baseline')!.reran, false);
  const md = compareMarkdown(c);
  assert.match(md, /- re-ran: eval\n- cached: baseline, prune, tflite, worse/);
  assert.match(md, /\| sparsity \| 80\.00% \| 90\.00% \| \+10\.00 pp \|/);
  assert.match(md, /\| finalBytes \| 39\.1 KiB \| 29\.3 KiB \| −9\.8 KiB \(−25\.0%\) \|/);
  assert.match(md, /\| eval \| evaluate \| ran \| ran \(re-ran\) \| 3 \| with\.sparsity: 0\.8 -> 0\.9 \|/);
});
