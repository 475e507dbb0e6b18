import { fmtBytes, fmtPct, fmtRatio, modelPoints, paretoFront, type ModelPoint } from './model.js';
import type { ReportJson } from './write.js';
import { esc } from './svg.js';
import { setOwn } from '../util/own.js';

type Stage = Pick<ReportJson['stages'][number], 'id' | 'uses' | 'status' | 'metrics'>;

export interface SweepRow extends ModelPoint {
  /** Axis name -> value, parsed from the branch id `eval[finalSparsity=0.9,bits=4]`. */
  coords: Record<string, string>;
  pareto: boolean;
}

export interface SweepTable {
  /** The stage as written in the recipe (`eval`). */
  stage: string;
  axes: string[];
  /** Sorted by size, smallest first. */
  rows: SweepRow[];
}

const BRANCH = /^([^[\]]+)\[([^[\]]+)\]$/;

/** Splits a branch id made by src/recipe/matrix.ts into its stage and coordinates. */
export function parseBranchId(id: string): { stage: string; coords: Record<string, string> } | undefined {
  const m = BRANCH.exec(id);
  if (!m) return undefined;
  const coords: Record<string, string> = {};
  for (const part of m[2].split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    setOwn(coords, part.slice(0, eq), part.slice(eq + 1));
  }
  return { stage: m[1], coords };
}

/**
 * One table per swept stage whose branches report an accuracy and a size (typically the evaluate or
 * export stage at the end of a sweep), with each branch marked when it is on the accuracy-vs-size
 * pareto front among its siblings.
 */
export function sweepTables(stages: Stage[]): SweepTable[] {
  const families = new Map<string, Array<{ stage: Stage; coords: Record<string, string> }>>();
  for (const s of stages) {
    const b = parseBranchId(s.id);
    if (!b) continue;
    const list = families.get(b.stage) ?? [];
    list.push({ stage: s, coords: b.coords });
    families.set(b.stage, list);
  }
  const tables: SweepTable[] = [];
  for (const [stage, members] of families) {
    const rows = members.map((m) => ({ ...modelPoints(m.stage as ReportJson['stages'][number])[0], coords: m.coords }));
    const measured = rows.filter((r) => r.accuracy !== undefined && r.size !== undefined);
    if (measured.length < 2) continue;
    const front = paretoFront(measured.map((r) => ({ x: r.size!, y: r.accuracy! })));
    const onFront = new Set(measured.filter((_, i) => front[i]));
    const axes = [...new Set(members.flatMap((m) => Object.keys(m.coords)))];
    tables.push({
      stage,
      axes,
      rows: rows.map((r) => ({ ...r, pareto: onFront.has(r) })).sort((a, b) => (a.size ?? Infinity) - (b.size ?? Infinity) || (b.accuracy ?? 0) - (a.accuracy ?? 0)),
    });
  }
  return tables;
}

/** A sweep row's size and ratio, labelled `est.` when not a real file's. */
function sizeCells(r: SweepRow, times: 'x' | '×'): [string, string] {
  const est = r.sizeEstimated ? ' est.' : '';
  const ratio = r.fileRatio ?? r.estimatedRatio;
  return [`${fmtBytes(r.size)}${est}`, ratio !== undefined ? `${fmtRatio(ratio, times)}${est}` : '—'];
}

/** The markdown pareto tables of a run's sweeps (empty when it has none). */
export function sweepMarkdown(stages: Stage[]): string[] {
  const lines: string[] = [];
  for (const t of sweepTables(stages)) {
    const front = t.rows.filter((r) => r.pareto).length;
    lines.push('', `### sweep \`${t.stage}\`: ${t.rows.length} branches, ${front} on the pareto front (accuracy vs size)`, '');
    lines.push(`| ${t.axes.join(' | ')} | accuracy | size | ratio | sparsity | pareto |`, `|${t.axes.map(() => '---:').join('|')}|---:|---:|---:|---:|:---:|`);
    for (const r of t.rows) {
      const [size, ratio] = sizeCells(r, 'x');
      lines.push(`| ${t.axes.map((a) => r.coords[a] ?? '').join(' | ')} | ${fmtPct(r.accuracy)} | ${size} | ${ratio} | ${fmtPct(r.sparsity, 1)} | ${r.pareto ? '★' : ''} |`);
    }
  }
  return lines;
}

/** The HTML pareto tables of a run's sweeps (empty when it has none). */
export function sweepHtml(stages: Stage[]): string {
  const tables = sweepTables(stages);
  if (!tables.length) return '';
  return `<section id="sweeps"><h2>Sweeps</h2>${tables.map((t) => {
    const head = `<tr>${t.axes.map((a) => `<th class="n">${esc(a)}</th>`).join('')}<th class="n">accuracy</th><th class="n">size</th><th class="n">compression</th><th class="n">sparsity</th><th>pareto</th><th>stage</th></tr>`;
    const rows = t.rows.map((r) => `<tr${r.pareto ? ' class="pareto"' : ''}>${t.axes.map((a) => `<td class="n">${esc(r.coords[a] ?? '')}</td>`).join('')}<td class="n">${fmtPct(r.accuracy)}</td>${sizeCells(r, '×').map((c) => `<td class="n">${esc(c)}</td>`).join('')}<td class="n">${fmtPct(r.sparsity, 1)}</td><td>${r.pareto ? '★ front' : ''}</td><td><code>${esc(r.id)}</code></td></tr>`);
    return `<h3><code>${esc(t.stage)}</code>: ${t.rows.length} branches, ${t.rows.filter((r) => r.pareto).length} on the accuracy-vs-size pareto front</h3><table class="sweep" data-sweep="${esc(t.stage)}"><thead>${head}</thead><tbody>${rows.join('')}</tbody></table>`;
  }).join('')}</section>`;
}
