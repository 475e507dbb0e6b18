import { createHash } from 'node:crypto';
import type { ReportJson } from './write.js';
import { sweepHtml } from './sweep.js';
import { SIZE_KIND_LABEL, SIZE_METRICS } from './sizes.js';
import { baselineOf, EXIT_MEANING, fmtBytes, fmtMb, fmtMs, fmtPct, fmtPp, fmtRatio, modelPoints, num, scatterPoints } from './model.js';
import { int8LayersSection } from './int8-layers.js';
import { barChart, esc, lineChart, scatterChart, type ScatterPoint, type Series } from './svg.js';

/**
 * report.html: one self-contained page (inline CSS, inline SVG charts, a small inline script for
 * tooltips and legend toggles; a Content-Security-Policy that forbids every network fetch). The charts are
 * static SVG rendered here, so the page reads the same with scripts disabled.
 */

type Stage = ReportJson['stages'][number];
type Metrics = Record<string, unknown>;

interface LayerRow {
  name: string;
  sparsity: number;
  bits?: number;
  tip: string;
}

function layerRows(m: Metrics): LayerRow[] {
  if (!Array.isArray(m.layers)) return [];
  return (m.layers as Metrics[]).filter((l) => l && typeof l === 'object').map((l) => {
    const params = num(l.params);
    const kept = num(l.kept) ?? (params && num(l.nonzeros) !== undefined ? num(l.nonzeros)! / params : undefined);
    const sparsity = kept !== undefined ? 1 - kept : (num(l.sparsity) ?? 0);
    const shape = Array.isArray(l.shape) ? `[${l.shape.join('×')}]` : '';
    const tip = [
      `${String(l.name)} ${shape}`.trim(),
      `params ${params ?? '?'}, non-zeros ${num(l.nonzeros) ?? '?'} (sparsity ${fmtPct(sparsity, 1)})`,
      num(l.bits) !== undefined ? `${num(l.bits)} bits/weight${l.quant ? ` (${String(l.quant)})` : ''}` : '',
      l.storage ? `storage ${String(l.storage)}` : '',
      num(l.finalBytes) !== undefined ? `${fmtBytes(num(l.denseBytes))} → ${fmtBytes(num(l.finalBytes))} (${fmtRatio(num(l.ratio))})` : '',
      l.pruning ? `pruning ${String(l.pruning)}` : '',
    ].filter(Boolean).join('\n');
    return { name: String(l.name ?? '?'), sparsity, bits: num(l.bits), tip };
  });
}

function historyOf(m: Metrics): Metrics[] {
  return Array.isArray(m.history) ? (m.history as Metrics[]).filter((h) => h && typeof h === 'object') : [];
}

function curveCharts(s: Stage): string {
  const h = historyOf(s.metrics as Metrics);
  const series = (key: string, name: string, dashed: boolean, fmt: (v: number) => string): Series | undefined => {
    const points = h.flatMap((e, i) => {
      const v = num(e[key]);
      if (v === undefined) return [];
      const ep = (num(e.epoch) ?? i) + 1;
      return [{ x: ep, y: v, tip: `${s.id} epoch ${ep}: ${name} ${fmt(v)}${num(e.lr) !== undefined ? ` · lr ${num(e.lr)!.toPrecision(3)}` : ''}` }];
    });
    return points.length ? { name, points, dashed } : undefined;
  };
  const f4 = (v: number) => v.toFixed(4);
  const loss = [series('loss', 'train loss', false, f4), series('valLoss', 'validation loss', true, f4)].filter((x): x is Series => !!x);
  const acc = [series('accuracy', 'train accuracy', false, (v) => fmtPct(v)), series('valAccuracy', 'validation accuracy', true, (v) => fmtPct(v))].filter((x): x is Series => !!x);
  const attrs = { 'data-stage': s.id };
  return [
    loss.length ? lineChart(loss, { kind: 'loss', title: `${s.id}: loss per epoch`, xTitle: 'epoch', yTitle: 'loss', yFormat: (v) => String(Number(v.toPrecision(4))), attrs }) : '',
    acc.length ? lineChart(acc, { kind: 'accuracy', title: `${s.id}: accuracy per epoch`, xTitle: 'epoch', yTitle: 'accuracy', yFormat: (v) => `${Number((v * 100).toPrecision(4))}%`, attrs }) : '',
  ].join('');
}

const badge = (text: string, kind: string) => `<span class="badge ${esc(kind)}">${esc(text)}</span>`;

function modelsTable(r: ReportJson): string {
  const base = baselineOf(r.stages);
  const bps = base ? modelPoints(base) : [];
  const bAcc = bps[0]?.accuracy;
  let outputs = r.stages.filter((s) => (s.uses === 'evaluate' || s.uses === 'export') && s !== base);
  if (!outputs.length) outputs = r.stages.filter((s) => s !== base && num((s.metrics as Metrics).accuracy) !== undefined);
  const rows = [...bps.map((p) => ({ p, isBase: true })), ...outputs.flatMap((s) => modelPoints(s).map((p) => ({ p, isBase: false })))];
  if (!rows.length) return '<p class="empty">No stage produced model metrics.</p>';
  const est = (v: string) => `${v}<sup title="${esc(SIZE_METRICS.estimatedBytes)}">est</sup>`;
  const body = rows.map(({ p, isBase }) => {
    const dAcc = !isBase && bAcc !== undefined && p.accuracy !== undefined ? p.accuracy - bAcc : undefined;
    const dCls = dAcc === undefined ? '' : dAcc < -0.005 ? 'worse' : dAcc > 0.005 ? 'better' : '';
    return `<tr${isBase ? ' class="baseline-row"' : ''}><th scope="row">${esc(p.id)}${isBase ? ' <span class="tag">baseline</span>' : ''}</th><td>${esc(p.uses)}${p.note ? ` <span class="muted">${esc(p.note)}</span>` : ''}</td>`
      + `<td class="n">${fmtPct(p.accuracy)}</td><td class="muted" data-measured-on>${esc(p.measuredOn ?? '')}</td><td class="n ${dCls}">${fmtPp(dAcc)}</td>`
      + `<td class="n" data-size="source">${fmtBytes(p.sourceBytes)}</td><td class="n" data-size="file">${fmtBytes(p.fileBytes)}</td><td class="n" data-size="gzip">${fmtBytes(p.gzipBytes)}</td><td class="n" data-size="file-ratio">${fmtRatio(p.fileRatio)}</td>`
      + `<td class="n" data-size="estimate">${p.estimatedBytes === undefined ? '—' : est(fmtBytes(p.estimatedBytes))}</td><td class="n" data-size="estimated-ratio">${p.estimatedRatio === undefined ? '—' : est(fmtRatio(p.estimatedRatio))}</td>`
      + `<td class="n">${fmtPct(p.sparsity, 1)}</td><td class="n">${fmtMs(p.latencyMs)}</td><td>${badge(p.status, p.status)}</td></tr>`;
  });
  return `<table class="models"><thead><tr><th>model (stage)</th><th>kind</th><th class="n">accuracy</th><th title="the samples (of which split) accuracy is top-1 on, and where they ran: the engine, or an exported file in its own runtime">measured on</th><th class="n">Δ vs baseline</th><th class="n">source fp32</th><th class="n">file (raw)</th><th class="n">file (gzip)</th><th class="n">file ratio</th><th class="n">estimate</th><th class="n">est. ratio</th><th class="n">sparsity</th><th class="n" title="ms per sample at batch 1, where the accuracy was measured">latency (batch 1)</th><th>status</th></tr></thead><tbody>${body.join('')}</tbody></table>`
    + `<p class="note">source fp32: ${esc(SIZE_METRICS.sourceBytes)}. file: ${esc(SIZE_METRICS.fileBytes)}, raw and gzip -9. <sup>est</sup> ${esc(SIZE_METRICS.estimatedBytes)}. Every ratio divides the stage's own source model's dense fp32 bytes.</p>`;
}

function gatesSection(r: ReportJson): string {
  if (!r.gates.length) return '<p class="empty">This recipe declares no gates.</p>';
  const pass = r.gates.filter((g) => g.passed).length;
  const rows = r.gates.map((g) => `<tr class="${g.passed ? 'pass' : 'fail'}"><td>${badge(g.passed ? 'pass' : 'FAIL', g.passed ? 'pass' : 'fail')}</td><td><code>${esc(g.gate)}</code></td><td>${esc(g.stage)}</td>`
    + `<td class="n">${g.left !== undefined ? esc(Number(g.left.toPrecision(6))) : '—'}</td><td class="n">${g.right !== undefined ? esc(Number(g.right.toPrecision(6))) : '—'}</td><td>${esc(g.message)}</td></tr>`);
  return `<p class="gate-summary">${pass} of ${r.gates.length} gates passed</p><table class="gates"><thead><tr><th>result</th><th>gate</th><th>stage</th><th class="n">value</th><th class="n">bound</th><th>message</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** A stage worker's peak memory (JS heap + array buffers + wasm heap), as reported per stage. */

function stagesTable(r: ReportJson): string {
  const rows = r.stages.map((s) => `<tr><th scope="row">${esc(s.id)}</th><td>${esc(s.uses)}</td><td>${badge(s.status, s.status)}</td><td class="n">${s.status === 'ran' ? `${s.seconds.toFixed(1)} s` : ''}</td><td class="n">${esc(fmtMb(s.peakMemoryMb, ''))}</td>`
    + `<td>${esc(s.reason)}${s.error ? `<div class="error">${esc(s.error.name)}: ${esc(s.error.message)}</div>` : ''}</td><td><code title="${esc(s.key ?? '')}">${esc((s.key ?? '').slice(0, 12))}</code></td></tr>`);
  return `<table class="stages"><thead><tr><th>stage</th><th>kind</th><th>status</th><th class="n">time</th><th class="n" title="the stage worker's JS heap plus array buffers and the wasm heap, sampled every 50 ms">peak memory</th><th>why</th><th>key</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function scatterSection(r: ReportJson): string {
  const pts = scatterPoints(r);
  if (!pts.length) return '<p class="empty">No stage reported both an accuracy and a model size.</p>';
  // Ticks in whole units (KiB, MiB) read better than round byte counts.
  const maxSize = Math.max(...pts.map((p) => p.size!));
  const [div, unit] = maxSize >= 4 * 1024 * 1024 ? [1024 * 1024, 'MiB'] : maxSize >= 4 * 1024 ? [1024, 'KiB'] : [1, 'B'];
  const points: ScatterPoint[] = pts.map((p) => ({
    label: p.id,
    x: p.size! / div,
    y: p.accuracy!,
    front: p.front,
    estimated: p.sizeEstimated,
    series: p.uses,
    tip: `${p.id} (${p.uses}, ${p.status})${p.front ? ' · pareto front' : ''}\naccuracy ${fmtPct(p.accuracy)}\nsize ${fmtBytes(p.size)} (${p.sizeKind ? SIZE_KIND_LABEL[p.sizeKind] : ''})${p.fileRatio !== undefined ? `\n${fmtRatio(p.fileRatio)} smaller than its source fp32` : p.estimatedRatio !== undefined ? `\n${fmtRatio(p.estimatedRatio)} (estimate)` : ''}${p.sparsity !== undefined ? `\nsparsity ${fmtPct(p.sparsity, 1)}` : ''}`,
  }));
  const chart = scatterChart(points, { title: 'accuracy vs model size', xTitle: `model size (${unit})`, yTitle: 'accuracy', xFormat: (v) => String(Number(v.toPrecision(6))), yFormat: (v) => `${Number((v * 100).toPrecision(4))}%` });
  const front = pts.filter((p) => p.front).sort((a, b) => a.size! - b.size!).map((p) => esc(p.id));
  return `<figure>${chart}<figcaption><span class="key-front"></span> pareto front (no other model is both smaller and more accurate): ${front.join(' → ')}. <span class="key-est"></span> hollow: not a file's size (a Deep Compression estimate, or dense fp32 params × 4); filled: a real file's raw bytes.</figcaption></figure>`;
}

function layersSection(r: ReportJson): string {
  const out: string[] = [];
  for (const s of r.stages.filter((x) => x.uses === 'evaluate')) {
    const rows = layerRows(s.metrics as Metrics);
    if (!rows.length) continue;
    const attrs = { 'data-stage': s.id };
    const sp = barChart(rows.map((l) => ({ label: l.name, value: l.sparsity, text: fmtPct(l.sparsity, 1), tip: l.tip })), { kind: 'layer-sparsity', title: `${s.id}: sparsity per layer`, xTitle: 'sparsity (zero weights)', max: 1, format: (v) => `${Math.round(v * 100)}%`, attrs });
    const withBits = rows.filter((l) => l.bits !== undefined);
    const bits = withBits.length ? barChart(withBits.map((l) => ({ label: l.name, value: l.bits!, text: `${l.bits}`, tip: l.tip })), { kind: 'layer-bits', title: `${s.id}: bits per weight`, xTitle: 'bits per weight', max: 32, format: (v) => String(v), ticks: [0, 8, 16, 24, 32].filter((t) => t <= 32), attrs }) : '';
    out.push(`<h3>${esc(s.id)} <span class="muted">(${esc(s.uses)})</span></h3><div class="charts">${sp}${bits}</div>`);
  }
  return out.length ? out.join('') : '<p class="empty">No evaluate stage reported per-layer sizes.</p>';
}

function curvesSection(r: ReportJson): string {
  const out = r.stages.filter((s) => historyOf(s.metrics as Metrics).length).map((s) => `<h3>${esc(s.id)} <span class="muted">(${esc(s.uses)}, ${historyOf(s.metrics as Metrics).length} epochs)</span></h3><div class="charts">${curveCharts(s)}</div>`);
  return out.length ? out.join('') : '<p class="empty">No stage recorded a training history.</p>';
}

const CSS = `
:root{--fg:#1b1f24;--muted:#5b6470;--bg:#fff;--card:#f6f8fa;--line:#d0d7de;--grid:#eaeef2;--accent:#0969da;--front:#d1242f;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;
--s0:#0969da;--s1:#bf3989;--s2:#1a7f37;--s3:#9a6700;--s4:#8250df;--s5:#57606a;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--card:#161b22;--line:#30363d;--grid:#21262d;--accent:#4493f8;--front:#ff7b72;--ok:#3fb950;--bad:#f85149;--warn:#d29922;
--s0:#4493f8;--s1:#db61a2;--s2:#3fb950;--s3:#d29922;--s4:#a371f7;--s5:#9198a1}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px}h1{font-size:24px;margin:0 0 4px;word-break:break-word}h2{font-size:18px;margin:32px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}.muted{color:var(--muted);font-weight:normal}.empty,.note{color:var(--muted)}.note{font-size:12px}
dl.meta{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:4px 14px;margin:12px 0 0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;word-break:break-all}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}thead th{font-size:12px;color:var(--muted);font-weight:600;white-space:nowrap}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.better{color:var(--ok)}.worse{color:var(--bad)}tr.baseline-row{background:var(--card)}
.tag{font-size:11px;border:1px solid var(--line);border-radius:10px;padding:0 6px;color:var(--muted);font-weight:normal}
.badge{display:inline-block;font-size:12px;font-weight:600;border-radius:10px;padding:0 8px;border:1px solid currentColor}
.badge.ran,.badge.pass,.badge.ok{color:var(--ok)}.badge.cached{color:var(--accent)}.badge.failed,.badge.fail,.badge.interrupted{color:var(--bad)}.badge.skipped{color:var(--warn)}
table.sweep tr.pareto td{font-weight:600}
.error{color:var(--bad);margin-top:4px;white-space:pre-wrap}code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{color:var(--muted);font-size:12px;margin-top:4px}
svg.chart{max-width:100%;height:auto;background:var(--card);border:1px solid var(--line);border-radius:8px;font-size:11px;fill:var(--fg)}
svg.chart .grid line{stroke:var(--grid)}svg.chart .domain,svg.chart .tick line{stroke:var(--muted)}svg.chart .tick text{fill:var(--muted)}svg.chart .axis-title{fill:var(--fg);font-size:12px}
svg.chart .point{fill:var(--accent);stroke:var(--bg);stroke-width:1.5}svg.chart .point.pareto{fill:var(--front)}svg.chart .point.estimated{fill:var(--bg);stroke:var(--accent);stroke-width:2}svg.chart .point.estimated.pareto{stroke:var(--front)}
svg.chart .pareto-front{fill:none;stroke:var(--front);stroke-width:2;stroke-dasharray:6 4}svg.chart .point-label{font-size:12px;fill:var(--fg)}
svg.chart .bar{fill:var(--accent)}svg.chart[data-chart=layer-bits] .bar{fill:var(--s4)}svg.chart .bar-label{fill:var(--fg)}svg.chart .bar-value{fill:var(--muted)}
svg.chart .series{fill:none;stroke-width:2}svg.chart .series.dashed{stroke-dasharray:5 4}
${[0, 1, 2, 3, 4, 5].map((i) => `svg.chart .s${i} .series{stroke:var(--s${i})}svg.chart .s${i} .marker{fill:var(--s${i})}`).join('')}
svg.chart .legend-item{cursor:pointer}svg.chart .legend-item.off{opacity:.35}svg.chart .series-group.hidden{display:none}
svg.chart [data-tip]:hover,svg.chart circle:hover{stroke:var(--fg);stroke-width:2}
.key-front,.key-est{display:inline-block;width:10px;height:10px;border-radius:50%;background:var(--front);vertical-align:middle}.key-est{background:transparent;border:2px solid var(--accent)}
#tip{position:fixed;pointer-events:none;background:var(--fg);color:var(--bg);font-size:12px;padding:6px 8px;border-radius:6px;white-space:pre;display:none;z-index:10;max-width:420px}
footer{margin-top:40px;color:var(--muted);font-size:12px}
@media print{#tip{display:none!important}svg.chart{break-inside:avoid}}
`;

/** Progressive enhancement: SVG <title> tooltips become instant ones; legend entries toggle their series. */
const SCRIPT = `(function(){
var tip=document.getElementById('tip');
var marks=document.querySelectorAll('svg.chart title');
for(var i=0;i<marks.length;i++){var t=marks[i],el=t.parentNode;if(el.tagName.toLowerCase()==='svg')continue;el.setAttribute('data-tip',t.textContent);el.removeChild(t);}
document.addEventListener('mousemove',function(e){var el=e.target&&e.target.closest?e.target.closest('[data-tip]'):null;
if(!el){tip.style.display='none';return;}tip.textContent=el.getAttribute('data-tip');tip.style.display='block';
var x=e.clientX+14,y=e.clientY+14;if(x+tip.offsetWidth>innerWidth-8)x=e.clientX-tip.offsetWidth-14;if(y+tip.offsetHeight>innerHeight-8)y=e.clientY-tip.offsetHeight-14;tip.style.left=x+'px';tip.style.top=y+'px';});
function toggle(item){var svg=item.closest('svg'),name=item.getAttribute('data-series'),on=item.classList.toggle('off');item.setAttribute('aria-pressed',on?'false':'true');
var gs=svg.querySelectorAll('.series-group');for(var j=0;j<gs.length;j++)if(gs[j].getAttribute('data-series')===name)gs[j].classList.toggle('hidden',on);}
var items=document.querySelectorAll('svg.chart .legend-item');
for(var k=0;k<items.length;k++){items[k].addEventListener('click',function(){toggle(this);});items[k].addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();toggle(this);}});}
document.documentElement.setAttribute('data-js','ready');
})();`;

const SCRIPT_HASH = createHash('sha256').update(SCRIPT).digest('base64');

export interface HtmlOptions {
  /** The recipe's `name:` (report.json records only the recipe's path). */
  recipeName?: string;
}

/** The whole report page for one run, from its report.json object. */
export function renderHtml(r: ReportJson, opts: HtmlOptions = {}): string {
  const file = r.recipe.replace(/^.*[\\/]/, '');
  const title = opts.recipeName ?? file;
  const counts = (st: string) => r.stages.filter((s) => s.status === st).length;
  const other = ['failed', 'skipped', 'interrupted'].filter((st) => counts(st)).map((st) => `, ${counts(st)} ${st}`).join('');
  const exitKind = r.exitCode === 0 ? 'ok' : 'fail';
  const meta: Array<[string, string]> = [
    ['recipe', `${opts.recipeName ? `${esc(opts.recipeName)} · ` : ''}<code>${esc(r.recipe)}</code>`],
    ['run id', `<code>${esc(r.runId)}</code>`],
    ['started', esc(r.startedAt)],
    ['duration', `${esc(r.seconds.toFixed(1))} s`],
    ['engine', `<code>${esc(r.engine)}</code>`],
    ['exit code', `${badge(`${r.exitCode} ${EXIT_MEANING[r.exitCode] ?? ''}`.trim(), exitKind)}`],
    ['cache hits', `${r.cache.hits} of ${r.stages.length} stages cached, ${r.cache.ran} ran${esc(other)}`],
    ['versions', esc(Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(' · '))],
  ];
  const csp = `default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-${SCRIPT_HASH}'; img-src data:; base-uri 'none'; form-action 'none'`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="compress ${esc(r.versions.compress)}">
<title>${esc(`compress · ${title} · ${r.runId}`)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header>
<h1>compress · ${esc(title)}</h1>
<dl class="meta">${meta.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('')}</dl>
</header>
<section id="models"><h2>Models</h2>${modelsTable(r)}</section>
<section id="gates"><h2>Gates</h2>${gatesSection(r)}</section>
<section id="pareto"><h2>Accuracy vs size</h2>${scatterSection(r)}</section>
${sweepHtml(r.stages)}
<section id="layers"><h2>Per-layer sparsity and bits</h2>${layersSection(r)}</section>
<section id="int8-layers"><h2>Per-layer int8 error</h2>${int8LayersSection(r)}</section>
<section id="training"><h2>Training curves</h2>${curvesSection(r)}</section>
<section id="stages"><h2>Stages</h2>${stagesTable(r)}</section>
<footer>report format ${esc(r.reportVersion)} · data: <a href="report.json">report.json</a> · <a href="summary.md">summary.md</a> · generated by compress ${esc(r.versions.compress)}</footer>
</main>
<div id="tip" role="tooltip"></div>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
