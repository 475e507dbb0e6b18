import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { cli, ROOT, TINY, workspace } from './helpers.js';

// One real pipeline, run twice (the second with a param change), shared by the tests below.
const HOSTILE = '<script>alert("name")</script><img src=x onerror=alert(2)>';
const RECIPE = TINY
  .replace('name: tiny', `name: '${HOSTILE}'`)
  .replace('with: { model: mlp-small, epochs: 1, batchSize: 32 }', 'with: { model: mlp-small, epochs: 3, batchSize: 32 }')
  .replace('with: { latencySamples: 0 }', `with: { latencySamples: 5, gates: [ "accuracy >= stages.baseline.accuracy - 0.5", "compressionRatio >= 1000" ] }`);

let ws: { dir: string; file: string };
let runs: string[] = [];
const reportsDir = () => join(ws.dir, '.compress', 'reports');
const report = (runId: string) => JSON.parse(readFileSync(join(reportsDir(), runId, 'report.json'), 'utf8'));

before(async () => {
  assert.notEqual(RECIPE, TINY);
  assert.match(RECIPE, /epochs: 3/);
  ws = workspace(RECIPE);
  const first = await cli(['run'], ws.dir);
  assert.equal(first.exitCode, 3, `the failing gate exits 3\n${first.stdout}\n${first.stderr}`);
  const second = await cli(['run', '--set', 'params.sparsity=0.8'], ws.dir);
  assert.equal(second.exitCode, 3, second.stderr);
  runs = readdirSync(reportsDir()).sort();
  assert.equal(runs.length, 2);
});

/** Debian's `chromium` (CI installs it); CHROMIUM_BIN overrides. Never skipped: missing means failed. */
function chromium(): string {
  const names = process.env.CHROMIUM_BIN ? [process.env.CHROMIUM_BIN] : ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];
  for (const n of names) {
    if (n.includes('/')) {
      if (existsSync(n)) return n;
      continue;
    }
    for (const d of (process.env.PATH ?? '').split(delimiter)) if (d && existsSync(join(d, n))) return join(d, n);
  }
  assert.fail(`headless Chromium is required to check report.html but was not found (looked for ${names.join(', ')} on PATH): install it with \`apt-get install -y chromium\` (CI installs it) or set CHROMIUM_BIN`);
}

async function headless(args: string[]) {
  const profile = mkdtempSync(join(tmpdir(), 'compress-chromium-'));
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--hide-scrollbars', `--user-data-dir=${profile}`];
  const r = await execa(chromium(), [...flags, ...args], { reject: false, timeout: 60_000 });
  assert.equal(r.exitCode, 0, `chromium failed: ${r.stderr.slice(-2000)}`);
  return r;
}

/** Chart <svg>s of a page: kind, stage and the count of each kind of mark. */
function charts(html: string) {
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
    tips: (m[2].match(/ data-tip="/g) ?? []).length,
  }));
}

test('every run writes report.json, summary.md and a self-contained report.html', () => {
  for (const id of runs) for (const f of ['report.json', 'summary.md', 'report.html']) assert.ok(existsSync(join(reportsDir(), id, f)), `${id}/${f}`);
  const html = readFileSync(join(reportsDir(), runs[1], 'report.html'), 'utf8');
  assert.doesNotMatch(html, /https?:\/\//, 'no URL with a scheme');
  assert.doesNotMatch(html, /\b(src|href)\s*=\s*["']?\s*(\w+:|\/\/)/i, 'no external src/href');
  assert.doesNotMatch(html, /<link\b|@import|url\(/i);
  // The hostile recipe name is text, not markup.
  assert.equal((html.match(/<script/g) ?? []).length, 1);
  assert.doesNotMatch(html, /<img/);
  assert.ok(html.includes('&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;'));
  assert.match(html, /compressionRatio &gt;= 1000/);
  assert.match(html, /3 a gate failed/);
  assert.match(html, /1 of 3 stages cached, 2 ran/);
});

test('every stage that ran reports its wall time and peak memory in report.json, summary.md and report.html', () => {
  const r = report(runs[0]);
  const ran = r.stages.filter((x: { status: string }) => x.status === 'ran');
  assert.ok(ran.length >= 2);
  for (const x of ran) {
    // a tfjs stage's worker holds at least the wasm heap (16 MB+) and at most this machine's memory
    assert.ok(typeof x.peakMemoryMb === 'number' && x.peakMemoryMb > 16 && x.peakMemoryMb < 64 * 1024, `${x.id}: ${x.peakMemoryMb}`);
    assert.ok(x.seconds > 0);
  }
  const md = readFileSync(join(reportsDir(), runs[0], 'summary.md'), 'utf8');
  const html = readFileSync(join(reportsDir(), runs[0], 'report.html'), 'utf8');
  for (const x of ran) {
    const mb = `${x.peakMemoryMb.toFixed(0)} MB`;
    assert.ok(md.split('\n').some((l) => l.startsWith(`| ${x.id} |`) && l.includes(` ${x.seconds.toFixed(1)} s |`) && l.includes(`| ${mb} |`)), `summary.md row of ${x.id}`);
    assert.ok(html.includes(`<td class="n">${x.seconds.toFixed(1)} s</td><td class="n">${mb}</td>`), `report.html row of ${x.id}`);
  }
});

test("every stage that ran reports its worker thread's CPU seconds in report.json, at most its wall time", () => {
  const ran = report(runs[0]).stages.filter((x: { status: string }) => x.status === 'ran');
  assert.ok(ran.length >= 2);
  // One thread cannot use more CPU than the time it ran (plus the 10 ms tick of /proc's counters).
  for (const x of ran) assert.ok(typeof x.cpuSeconds === 'number' && x.cpuSeconds > 0 && x.cpuSeconds <= x.seconds + 0.02, `${x.id}: ${x.cpuSeconds} s CPU in ${x.seconds} s`);
});

test('report.html renders in headless Chromium: charts drawn, script ran, injected markup inert; screenshot kept', async () => {
  const file = join(reportsDir(), runs[1], 'report.html');
  const url = pathToFileURL(file).href;
  const dom = (await headless(['--virtual-time-budget=3000', '--dump-dom', url])).stdout;
  assert.match(dom, /<html[^>]*data-js="ready"/, 'the inline script ran (CSP hash matches)');
  assert.doesNotMatch(dom, /<img/, 'the hostile recipe name did not become an element');

  const r = report(runs[1]);
  const byId = Object.fromEntries(r.stages.map((s: { id: string }) => [s.id, s]));
  const epochs = byId.baseline.metrics.history.length;
  const layers = byId.report.metrics.layers.length;
  assert.equal(epochs, 3);
  const cs = charts(dom);
  assert.deepEqual(cs.map((c) => `${c.kind}:${c.stage ?? ''}`), ['scatter:', 'layer-sparsity:report', 'layer-bits:report', 'loss:baseline', 'accuracy:baseline']);
  const [scatter, sparsity, bits, loss, acc] = cs;
  // baseline (dense size estimate) and the evaluate stage; prune has no size.
  assert.equal(scatter.points, 2);
  const dominated = byId.report.metrics.accuracy >= byId.baseline.metrics.accuracy;
  assert.equal(scatter.front, dominated ? 1 : 2);
  assert.equal(scatter.frontPaths, 1);
  assert.equal(sparsity.bars, layers);
  assert.equal(bits.bars, layers);
  assert.deepEqual([loss.series, loss.markers], [2, 2 * epochs]);
  assert.deepEqual([acc.series, acc.markers], [2, 2 * epochs]);
  for (const c of cs) {
    assert.ok(c.ticks >= 3, `${c.kind}: axis ticks`);
    assert.ok(c.tips >= 1, `${c.kind}: the script turned SVG titles into tooltips`);
  }

  const outDir = join(ROOT, 'test-output');
  mkdirSync(outDir, { recursive: true });
  const png = join(outDir, 'report.png');
  await headless(['--window-size=1200,2400', `--screenshot=${png}`, url]);
  const bytes = readFileSync(png);
  assert.equal(bytes.subarray(1, 4).toString(), 'PNG');
  assert.deepEqual([bytes.readUInt32BE(16), bytes.readUInt32BE(20)], [1200, 2400]);
  assert.ok(statSync(png).size > 40_000, `a blank page compresses to a few KiB; got ${statSync(png).size} bytes`);
});

test('compress report prints the latest (or named) run as markdown, json or the html path', async () => {
  const md = await cli(['report'], ws.dir);
  assert.equal(md.exitCode, 0, md.stderr);
  assert.equal(md.stdout, readFileSync(join(reportsDir(), runs[1], 'summary.md'), 'utf8').trimEnd());
  assert.match(md.stdout, new RegExp(runs[1]));
  const prev = await cli(['report', 'previous', '--format', 'json'], ws.dir);
  assert.equal(JSON.parse(prev.stdout).runId, runs[0]);
  const byPrefix = await cli(['report', runs[0].slice(0, -3), '--format', 'json'], ws.dir);
  assert.equal(JSON.parse(byPrefix.stdout).runId, runs[0]);
  const byDir = await cli(['report', join(reportsDir(), runs[0]), '--format', 'html-path'], tmpdir());
  assert.equal(byDir.stdout, join(reportsDir(), runs[0], 'report.html'));
  const missing = await cli(['report', 'nope'], ws.dir);
  assert.equal(missing.exitCode, 2);
  assert.match(missing.stderr, /no run 'nope'.*recent: /);
  const none = await cli(['report'], tmpdir());
  assert.equal(none.exitCode, 2);
  assert.match(none.stderr, /no reports for compress\.config\.yaml/);
});

test('compress report --compare shows changed metrics (old -> new, delta) and which stages re-ran', async () => {
  const r = await cli(['report', '--compare', 'previous', 'latest'], ws.dir);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /- re-ran: prune, report\n- cached: baseline/);
  assert.match(r.stdout, /\| prune \| prune \| ran \| ran \(re-ran\) \| \d+ \| with\.sparsity: 0\.6 -> 0\.8 \|/);
  assert.match(r.stdout, /\| baseline \| train \| ran \| cached \| 0 \|/);
  assert.match(r.stdout, /### report \(evaluate\): re-ran[\s\S]*\| sparsity \| 60\.00% \| 80\.00% \| \+20\.00 pp \|/);
  assert.match(r.stdout, /\| finalBytes \| [\d.]+ KiB \| [\d.]+ KiB \| −[\d.]+ KiB \(−[\d.]+%\) \|/);
  const j = await cli(['report', '--compare', runs[0], runs[1], '--format', 'json'], ws.dir);
  const c = JSON.parse(j.stdout);
  assert.deepEqual(c.stages.map((s: { id: string; reran: boolean }) => [s.id, s.reran]), [['baseline', false], ['prune', true], ['report', true]]);
  const sp = c.stages[1].changes.find((x: { metric: string }) => x.metric === 'sparsity');
  assert.ok(Math.abs(sp.old - 0.6) < 1e-3 && Math.abs(sp.new - 0.8) < 1e-3 && Math.abs(sp.delta - 0.2) < 1e-3, JSON.stringify(sp));
  const bad = await cli(['report', '--compare', 'a', 'b', 'c'], ws.dir);
  assert.equal(bad.exitCode, 2);
});
