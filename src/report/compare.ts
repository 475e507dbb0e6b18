import type { ReportJson } from './write.js';
import { fmtBytes, fmtNumber, fmtPct, fmtPp } from './model.js';

/** One top-level metric whose value differs between two runs of a stage. */
export interface MetricChange {
  metric: string;
  old?: number | string | boolean;
  new?: number | string | boolean;
  /** new - old, when both are numbers. */
  delta?: number;
}

export interface StageDiff {
  id: string;
  uses: string;
  /** Status in the older / newer run; undefined when the stage is not in that run. */
  before?: string;
  after?: string;
  /** The stage executed in the newer run (status `ran`) rather than coming from the cache. */
  reran: boolean;
  keyChanged: boolean;
  /** The newer run's reason (why it ran, or why it was cached / failed). */
  reason?: string;
  changes: MetricChange[];
  unchanged: number;
}

export interface GateDiff {
  gate: string;
  stage: string;
  before?: boolean;
  after?: boolean;
  old?: number;
  new?: number;
}

export interface RunComparison {
  before: { runId: string; startedAt: string; exitCode: number; engine: string };
  after: { runId: string; startedAt: string; exitCode: number; engine: string };
  stages: StageDiff[];
  gates: GateDiff[];
}

type Scalar = number | string | boolean;
const isScalar = (v: unknown): v is Scalar => typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean';

/** What changed from run `a` (older) to run `b` (newer): per-stage metric changes and which stages re-ran. */
export function compareReports(a: ReportJson, b: ReportJson): RunComparison {
  const byId = (r: ReportJson) => new Map(r.stages.map((s) => [s.id, s]));
  const A = byId(a);
  const B = byId(b);
  const ids = [...b.stages.map((s) => s.id), ...a.stages.map((s) => s.id).filter((id) => !B.has(id))];
  const stages = ids.map((id): StageDiff => {
    const sa = A.get(id);
    const sb = B.get(id);
    const ma = (sa?.metrics ?? {}) as Record<string, unknown>;
    const mb = (sb?.metrics ?? {}) as Record<string, unknown>;
    const keys = [...new Set([...Object.keys(ma), ...Object.keys(mb)])].filter((k) => isScalar(ma[k]) || isScalar(mb[k])).sort();
    const changes: MetricChange[] = [];
    let unchanged = 0;
    for (const k of keys) {
      const o = isScalar(ma[k]) ? (ma[k] as Scalar) : undefined;
      const n = isScalar(mb[k]) ? (mb[k] as Scalar) : undefined;
      if (o === n) {
        unchanged++;
        continue;
      }
      changes.push({ metric: k, old: o, new: n, ...(typeof o === 'number' && typeof n === 'number' ? { delta: n - o } : {}) });
    }
    return {
      id,
      uses: (sb ?? sa)!.uses,
      before: sa?.status,
      after: sb?.status,
      reran: sb?.status === 'ran',
      keyChanged: !!sa && !!sb && sa.key !== sb.key,
      reason: sb?.reason,
      changes,
      unchanged,
    };
  });
  const gkey = (g: { stage: string; gate: string }) => `${g.stage}\u0000${g.gate}`;
  const ga = new Map(a.gates.map((g) => [gkey(g), g]));
  const gb = new Map(b.gates.map((g) => [gkey(g), g]));
  const gates = [...new Set([...gb.keys(), ...ga.keys()])].map((k): GateDiff => {
    const x = ga.get(k);
    const y = gb.get(k);
    return { gate: (y ?? x)!.gate, stage: (y ?? x)!.stage, before: x?.passed, after: y?.passed, old: x?.left, new: y?.left };
  });
  const head = (r: ReportJson) => ({ runId: r.runId, startedAt: r.startedAt, exitCode: r.exitCode, engine: r.engine });
  return { before: head(a), after: head(b), stages, gates };
}

const FRACTION = new Set(['accuracy', 'topK', 'sparsity', 'valAccuracy', 'agreement', 'kernelSparsity']);
const isBytes = (m: string) => m === 'bytes' || /Bytes$/.test(m);

function fmtValue(metric: string, v: Scalar | undefined): string {
  if (v === undefined) return '—';
  if (typeof v !== 'number') return String(v);
  if (FRACTION.has(metric)) return fmtPct(v);
  if (isBytes(metric)) return fmtBytes(v);
  return fmtNumber(v);
}

function fmtDelta(c: MetricChange): string {
  if (c.delta === undefined) return '';
  if (FRACTION.has(c.metric)) return fmtPp(c.delta);
  const sign = c.delta > 0 ? '+' : c.delta < 0 ? '−' : '±';
  const d = Math.abs(c.delta);
  const rel = typeof c.old === 'number' && c.old !== 0 ? ` (${sign}${((d / Math.abs(c.old)) * 100).toFixed(1)}%)` : '';
  return `${sign}${isBytes(c.metric) ? fmtBytes(d) : fmtNumber(d, 4)}${rel}`;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');

/** The comparison as markdown (readable in a terminal, pasteable into a PR). */
export function compareMarkdown(c: RunComparison): string {
  const L: string[] = [];
  L.push(`## compress: ${c.before.runId} -> ${c.after.runId}`, '');
  L.push(`- old: \`${c.before.runId}\` (${c.before.startedAt}, exit ${c.before.exitCode})`);
  L.push(`- new: \`${c.after.runId}\` (${c.after.startedAt}, exit ${c.after.exitCode})`);
  if (c.before.engine !== c.after.engine) L.push(`- engine: \`${c.before.engine}\` -> \`${c.after.engine}\``);
  const reran = c.stages.filter((s) => s.reran).map((s) => s.id);
  const cached = c.stages.filter((s) => s.after === 'cached').map((s) => s.id);
  const otherStates = c.stages.filter((s) => s.after && s.after !== 'ran' && s.after !== 'cached');
  L.push(`- re-ran: ${reran.length ? reran.join(', ') : 'none'}`, `- cached: ${cached.length ? cached.join(', ') : 'none'}`);
  for (const s of otherStates) L.push(`- ${s.id}: ${s.after}`);
  L.push('', '| stage | kind | old | new | metrics changed | why (new run) |', '|---|---|---|---|---:|---|');
  for (const s of c.stages) {
    L.push(`| ${cell(s.id)} | ${s.uses} | ${s.before ?? '(absent)'} | ${s.after ?? '(removed)'}${s.reran ? ' (re-ran)' : ''} | ${s.changes.length} | ${cell(s.reason ?? '')} |`);
  }
  for (const s of c.stages.filter((x) => x.changes.length)) {
    L.push('', `### ${s.id} (${s.uses})${s.reran ? ': re-ran' : s.after ? `: ${s.after}` : ''}`, '', '| metric | old | new | delta |', '|---|---:|---:|---:|');
    for (const ch of s.changes) L.push(`| ${cell(ch.metric)} | ${cell(fmtValue(ch.metric, ch.old))} | ${cell(fmtValue(ch.metric, ch.new))} | ${fmtDelta(ch)} |`);
    if (s.unchanged) L.push('', `${s.unchanged} other metric${s.unchanged === 1 ? '' : 's'} unchanged`);
  }
  if (!c.stages.some((s) => s.changes.length)) L.push('', 'No metric changed.');
  if (c.gates.length) {
    L.push('', '### gates', '', '| gate | stage | old | new |', '|---|---|---|---|');
    const res = (p: boolean | undefined, v: number | undefined) => (p === undefined ? '—' : `${p ? 'pass' : '**FAIL**'}${v !== undefined ? ` (${Number(v.toPrecision(6))})` : ''}`);
    for (const g of c.gates) L.push(`| \`${cell(g.gate)}\` | ${cell(g.stage)} | ${res(g.before, g.old)} | ${res(g.after, g.new)} |`);
  }
  return L.join('\n') + '\n';
}
