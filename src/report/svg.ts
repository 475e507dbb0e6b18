/**
 * Tiny static SVG chart kit for report.html: scales, "nice" ticks, axes, and three chart kinds
 * (scatter with a highlighted front, horizontal bars, line series). Everything is rendered to a string
 * here, so a report needs no script to show its charts; all text goes through `esc`.
 */

/** Escapes text for HTML/SVG content and double- or single-quoted attribute values. */
export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const r2 = (v: number) => (Math.round(v * 100) / 100).toString();

export interface Scale {
  (v: number): number;
  ticks: number[];
  format: (v: number) => string;
}

/** "Nice" round tick values covering [min, max] (1, 2, 5 × 10^k steps). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const out: number[] = [];
  for (let v = lo; v <= hi + step * 1e-6; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Linear scale over nice ticks spanning the data (and `include`, e.g. 0). */
export function linearScale(values: number[], range: [number, number], opts: { include?: number[]; count?: number; format?: (v: number) => string; pad?: number; ticks?: number[] } = {}): Scale {
  let vs = values.filter(Number.isFinite);
  if (opts.pad && vs.length) {
    const lo = Math.min(...vs);
    const hi = Math.max(...vs);
    const p = (hi - lo || Math.abs(hi) || 1) * opts.pad;
    vs = [...vs, lo - p, hi + p];
  }
  vs = [...vs, ...(opts.include ?? [])].filter(Number.isFinite);
  const auto = niceTicks(Math.min(...(vs.length ? vs : [0])), Math.max(...(vs.length ? vs : [1])), opts.count ?? 5);
  const ticks = opts.ticks && opts.ticks.length > 1 && Math.max(...vs) <= opts.ticks[opts.ticks.length - 1] ? opts.ticks : auto;
  const d0 = ticks[0];
  const d1 = ticks[ticks.length - 1];
  const s = ((v: number) => range[0] + ((v - d0) / (d1 - d0 || 1)) * (range[1] - range[0])) as Scale;
  s.ticks = ticks;
  s.format = opts.format ?? ((v) => String(Number(v.toPrecision(6))));
  return s;
}

/** Log10 scale with ticks at 1, 2, 5 × 10^k inside decades spanning the data. */
export function logScale(values: number[], range: [number, number], format: (v: number) => string): Scale {
  const vs = values.filter((v) => v > 0 && Number.isFinite(v));
  let lo = Math.log10(Math.min(...vs));
  let hi = Math.log10(Math.max(...vs));
  lo = Math.floor(lo);
  hi = Math.ceil(hi);
  if (lo === hi) hi = lo + 1;
  const decades = hi - lo;
  const mult = decades <= 2 ? [1, 2, 5] : decades <= 4 ? [1, 3] : [1];
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) for (const m of mult) if (e < hi || m === 1) ticks.push(m * 10 ** e);
  const s = ((v: number) => range[0] + ((Math.log10(v) - lo) / (hi - lo)) * (range[1] - range[0])) as Scale;
  s.ticks = ticks;
  s.format = format;
  return s;
}

export interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

const plotX = (f: Frame): [number, number] => [f.left, f.width - f.right];
const plotY = (f: Frame): [number, number] => [f.height - f.bottom, f.top];

/** Axis lines, tick marks with labels, light grid lines and axis titles. */
export function axes(f: Frame, x: Scale, y: Scale, xTitle: string, yTitle: string): string {
  const [x0, x1] = plotX(f);
  const [y0, y1] = plotY(f);
  const parts: string[] = [`<g class="grid">`];
  for (const t of y.ticks) parts.push(`<line x1="${x0}" x2="${x1}" y1="${r2(y(t))}" y2="${r2(y(t))}"/>`);
  for (const t of x.ticks) parts.push(`<line x1="${r2(x(t))}" x2="${r2(x(t))}" y1="${y0}" y2="${y1}"/>`);
  parts.push(`</g>`, `<g class="axis x-axis">`, `<line class="domain" x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}"/>`);
  for (const t of x.ticks) parts.push(`<g class="tick"><line x1="${r2(x(t))}" x2="${r2(x(t))}" y1="${y0}" y2="${y0 + 5}"/><text x="${r2(x(t))}" y="${y0 + 18}" text-anchor="middle">${esc(x.format(t))}</text></g>`);
  parts.push(`<text class="axis-title" x="${r2((x0 + x1) / 2)}" y="${f.height - 6}" text-anchor="middle">${esc(xTitle)}</text></g>`);
  parts.push(`<g class="axis y-axis">`, `<line class="domain" x1="${x0}" x2="${x0}" y1="${y0}" y2="${y1}"/>`);
  for (const t of y.ticks) parts.push(`<g class="tick"><line x1="${x0 - 5}" x2="${x0}" y1="${r2(y(t))}" y2="${r2(y(t))}"/><text x="${x0 - 8}" y="${r2(y(t) + 4)}" text-anchor="end">${esc(y.format(t))}</text></g>`);
  parts.push(`<text class="axis-title" transform="translate(14 ${r2((y0 + y1) / 2)}) rotate(-90)" text-anchor="middle">${esc(yTitle)}</text></g>`);
  return parts.join('');
}

function svgOpen(kind: string, f: Frame, title: string, attrs: Record<string, string> = {}): string {
  const extra = Object.entries(attrs).map(([k, v]) => ` ${k}="${esc(v)}"`).join('');
  return `<svg class="chart" data-chart="${esc(kind)}"${extra} viewBox="0 0 ${f.width} ${f.height}" width="${f.width}" height="${f.height}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>`;
}

export interface ScatterPoint {
  label: string;
  x: number;
  y: number;
  tip: string;
  /** Drawn hollow: an estimated position. */
  estimated?: boolean;
  front?: boolean;
  series?: string;
}

/** Scatter plot; points flagged `front` are ringed and joined by a `pareto-front` path. */
export function scatterChart(points: ScatterPoint[], o: { title: string; xTitle: string; yTitle: string; xFormat: (v: number) => string; yFormat: (v: number) => string; width?: number; height?: number }): string {
  const f: Frame = { width: o.width ?? 960, height: o.height ?? 420, left: 70, right: 30, top: 20, bottom: 50 };
  const xs = points.map((p) => p.x);
  const useLog = xs.length > 1 && Math.min(...xs) > 0 && Math.max(...xs) / Math.min(...xs) > 20;
  const x = useLog ? logScale(xs, plotX(f), o.xFormat) : linearScale(xs, plotX(f), { include: [0], format: o.xFormat });
  const y = linearScale(points.map((p) => p.y), plotY(f), { format: o.yFormat, pad: 0.08 });
  const parts = [svgOpen('scatter', f, o.title, { 'data-x-scale': useLog ? 'log' : 'linear' }), axes(f, x, y, o.xTitle + (useLog ? ' (log scale)' : ''), o.yTitle)];
  const front = points.filter((p) => p.front).sort((a, b) => a.x - b.x);
  if (front.length) parts.push(`<path class="pareto-front" d="${front.map((p, i) => `${i ? 'L' : 'M'}${r2(x(p.x))} ${r2(y(p.y))}`).join(' ')}"/>`);
  const seen = new Map<string, number>();
  for (const p of points) {
    const cx = x(p.x);
    const cy = y(p.y);
    const k = `${Math.round(cx / 8)},${Math.round(cy / 8)}`;
    const stack = seen.get(k) ?? 0;
    seen.set(k, stack + 1);
    const right = cx < f.width - f.right - 140;
    const cls = `point${p.front ? ' pareto' : ''}${p.estimated ? ' estimated' : ''}`;
    parts.push(`<g class="mark" data-stage="${esc(p.label)}"><circle class="${cls}" cx="${r2(cx)}" cy="${r2(cy)}" r="${p.front ? 7 : 6}" data-series="${esc(p.series ?? '')}"><title>${esc(p.tip)}</title></circle>`);
    parts.push(`<text class="point-label" x="${r2(cx + (right ? 11 : -11))}" y="${r2(cy + 4 + stack * 14)}" text-anchor="${right ? 'start' : 'end'}">${esc(p.label)}</text></g>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

export interface Bar {
  label: string;
  value: number;
  text: string;
  tip: string;
}

/** Horizontal bars, one row per label (layers can be many and their names long). */
export function barChart(bars: Bar[], o: { kind: string; title: string; xTitle: string; max?: number; ticks?: number[]; format: (v: number) => string; width?: number; attrs?: Record<string, string> }): string {
  const rowH = 22;
  const longest = Math.max(4, ...bars.map((b) => b.label.length));
  const left = Math.min(220, 16 + longest * 7);
  const f: Frame = { width: o.width ?? 470, height: 20 + bars.length * rowH + 50, left, right: 56, top: 20, bottom: 50 };
  const x = linearScale(bars.map((b) => b.value), plotX(f), { include: [0, ...(o.max !== undefined ? [o.max] : [])], format: o.format, count: 4, ticks: o.ticks });
  const yTop = f.top;
  // Rows are placed by index; the band axis has no ticks, only its line.
  const rows = Object.assign((v: number) => v, { ticks: [] as number[], format: String }) as Scale;
  const parts = [svgOpen(o.kind, f, o.title, o.attrs), axes(f, x, rows, o.xTitle, '')];
  bars.forEach((b, i) => {
    const top = yTop + i * rowH + 4;
    const w = Math.max(0, x(b.value) - x(0));
    const short = b.label.length > 30 ? b.label.slice(0, 29) + '…' : b.label;
    parts.push(`<g class="row" data-layer="${esc(b.label)}"><text class="bar-label" x="${f.left - 8}" y="${top + 11}" text-anchor="end">${esc(short)}</text>`);
    parts.push(`<rect class="bar" x="${r2(x(0))}" y="${top}" width="${r2(w)}" height="${rowH - 8}"><title>${esc(b.tip)}</title></rect>`);
    parts.push(`<text class="bar-value" x="${r2(x(0) + w + 4)}" y="${top + 11}">${esc(b.text)}</text></g>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

export interface Series {
  name: string;
  points: Array<{ x: number; y: number; tip: string }>;
  dashed?: boolean;
}

/** Line chart: one `series` path plus a `marker` circle per point for each series, and a legend. */
export function lineChart(series: Series[], o: { kind: string; title: string; xTitle: string; yTitle: string; yFormat: (v: number) => string; yInclude?: number[]; width?: number; attrs?: Record<string, string> }): string {
  const f: Frame = { width: o.width ?? 470, height: 280, left: 62, right: 20, top: 34, bottom: 46 };
  const all = series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...all.map((p) => p.x));
  const x = linearScale([1, xMax], plotX(f), { count: Math.min(xMax, 6), format: (v) => (Number.isInteger(v) ? String(v) : '') });
  x.ticks = x.ticks.filter((t) => Number.isInteger(t) && t >= 1);
  const y = linearScale(all.map((p) => p.y), plotY(f), { include: o.yInclude, format: o.yFormat, pad: 0.05 });
  const xs = (v: number) => (xMax === 1 ? (plotX(f)[0] + plotX(f)[1]) / 2 : x(v));
  if (xMax === 1) x.ticks = [1];
  const parts = [svgOpen(o.kind, f, o.title, o.attrs), axes(f, Object.assign(xs, { ticks: x.ticks, format: x.format }) as Scale, y, o.xTitle, o.yTitle)];
  series.forEach((s, i) => {
    const cls = `s${i % 6}`;
    parts.push(`<g class="series-group ${cls}" data-series="${esc(s.name)}">`);
    parts.push(`<path class="series${s.dashed ? ' dashed' : ''}" d="${s.points.map((p, j) => `${j ? 'L' : 'M'}${r2(xs(p.x))} ${r2(y(p.y))}`).join(' ')}"/>`);
    for (const p of s.points) parts.push(`<circle class="marker" cx="${r2(xs(p.x))}" cy="${r2(y(p.y))}" r="3.5"><title>${esc(p.tip)}</title></circle>`);
    parts.push('</g>');
    const lx = f.left + i * 130;
    parts.push(`<g class="legend-item ${cls}" data-series="${esc(s.name)}" tabindex="0" role="button" aria-pressed="true"><line class="series${s.dashed ? ' dashed' : ''}" x1="${lx}" x2="${lx + 22}" y1="14" y2="14"/><text x="${lx + 28}" y="18">${esc(s.name)}</text></g>`);
  });
  parts.push('</svg>');
  return parts.join('');
}
