import { readFileSync } from 'node:fs';
import { VERSION } from '../version.js';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { stableJson } from '../model/io.js';
import type { RunSummary, StageOutcome } from '../run/execute.js';
import { tfjsVersion } from '../engine/backend.js';
import { renderHtml } from './html.js';
import { baselineOf, fmtBytes, fmtMb, fmtMs, fmtPct, fmtPp, fmtRatio } from './model.js';
import { modelRows, SIZE_METRICS } from './sizes.js';
import { sweepMarkdown } from './sweep.js';

export const REPORT_VERSION = 1;

/** The documented, stable shape of report.json (see README, "Reports"). */
export function reportJson(s: RunSummary) {
  return {
    reportVersion: REPORT_VERSION,
    runId: s.runId,
    recipe: s.recipe,
    startedAt: s.startedAt,
    seconds: s.seconds,
    engine: s.engine,
    versions: { compress: VERSION, tfjs: tfjsVersion(), node: process.version },
    exitCode: s.exitCode,
    cache: { hits: s.stages.filter((x) => x.status === 'cached').length, ran: s.stages.filter((x) => x.status === 'ran').length },
    /** The shared remote cache: URL, read-only or not (and why), hits, pushes; never credentials. */
    remote: s.remote,
    stages: s.stages.map((x) => ({
      id: x.id,
      uses: x.uses,
      status: x.status,
      reason: x.reason,
      key: x.key,
      seconds: x.seconds,
      /** Peak memory of the stage's worker, MB (JS heap + array buffers + wasm heap); stages that ran or failed. */
      peakMemoryMb: x.peakMemoryMb,
      /** CPU seconds (user + system) of the stage's worker thread (Linux). */
      cpuSeconds: x.cpuSeconds,
      metrics: x.metrics,
      outputs: x.outputs,
      error: x.error ? { name: x.error.name, message: x.error.message } : undefined,
    })),
    gates: s.gates,
    /** What each size metric in `stages[].metrics` measures. */
    sizeMetrics: SIZE_METRICS,
  };
}

export type ReportJson = ReturnType<typeof reportJson>;

/** What the markdown summary reads: a RunSummary, or a report.json read back. */
export interface SummaryInput {
  runId: string;
  recipe: string;
  engine: string;
  seconds: number;
  exitCode: number;
  stages: Array<Pick<StageOutcome, 'id' | 'uses' | 'status' | 'seconds' | 'peakMemoryMb' | 'metrics' | 'reason'>>;
  gates: RunSummary['gates'];
  remote?: RunSummary['remote'];
}

const pct = (v: unknown, digits = 2) => fmtPct(v, digits, '');

/**
 * Markdown for GitHub step summaries and PR comments: the models (baseline vs each output), the gates,
 * sweep pareto tables, failures, then every stage folded away.
 */
export function summaryMarkdown(s: SummaryInput): string {
  const cached = s.stages.filter((x) => x.status === 'cached').length;
  const failedGates = s.gates.filter((g) => !g.passed).length;
  const verdict = s.exitCode === 0 ? 'passed' : s.exitCode === 3 ? `**${failedGates} gate${failedGates === 1 ? '' : 's'} failed**` : `**failed (exit ${s.exitCode})**`;
  const lines = [`## compress: ${s.recipe.replace(/^.*[\\/]/, '')} ${s.exitCode === 0 ? '✅' : '❌'}`, '', `${verdict} · run \`${s.runId}\` · engine \`${s.engine}\` · ${s.seconds.toFixed(1)} s · ${cached} of ${s.stages.length} stages cached`, ''];
  if (s.remote) lines.push(`remote cache \`${s.remote.url}\`${s.remote.push ? '' : ` (read-only: ${s.remote.readOnlyReason})`}: ${s.remote.hits} hit${s.remote.hits === 1 ? '' : 's'}, ${s.remote.pushed} pushed${s.remote.unavailable ? ` · **unavailable** (${s.remote.unavailable}): ran local-only` : ''}`, '');
  lines.push(...modelsMarkdown(s.stages));
  if (s.gates.length) {
    lines.push('', '| gate | stage | result |', '|---|---|---|');
    for (const g of s.gates) lines.push(`| \`${g.gate}\` | ${g.stage} | ${g.passed ? 'pass' : '**FAIL**'}: ${g.left !== undefined ? `${g.left.toPrecision(6)} vs ${g.right!.toPrecision(6)}` : g.message} |`);
  }
  lines.push(...sweepMarkdown(s.stages));
  const failed = s.stages.filter((x) => x.status === 'failed');
  if (failed.length) lines.push('', ...failed.map((f) => `**${f.id} failed:** ${f.reason}`));
  lines.push('', '<details><summary>stages</summary>', '', '| stage | kind | status | time | peak memory | accuracy | sparsity | size | ratio | latency |', '|---|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const x of s.stages) {
    const m = x.metrics as Record<string, unknown>;
    const r = modelRows(x)[0];
    const size = r.fileBytes !== undefined ? `${fmtBytes(r.fileBytes)} file` : r.estimatedBytes !== undefined ? `${fmtBytes(r.estimatedBytes)} est.` : '';
    const ratio = r.fileRatio !== undefined ? fmtRatio(r.fileRatio, 'x') : r.estimatedRatio !== undefined ? `${fmtRatio(r.estimatedRatio, 'x')} est.` : '';
    lines.push(`| ${x.id} | ${x.uses} | ${x.status} | ${x.status === 'ran' ? `${x.seconds.toFixed(1)} s` : ''} | ${fmtMb(x.peakMemoryMb, '')} | ${pct(m.accuracy)} | ${pct(m.sparsity)} | ${size} | ${ratio} | ${fmtMs(m.latencyMs, '')} |`);
  }
  lines.push('', 'Peak memory: the stage worker\'s JS heap plus array buffers and the wasm heap (where tensors live), sampled every 50 ms.', '', '</details>');
  return lines.join('\n') + '\n';
}

/**
 * Baseline vs each output (evaluate stages, and every file of every export stage): accuracy and its change,
 * then sizes that say what they measure (src/report/sizes.ts): the source model's dense fp32 bytes, a real
 * file's raw and gzip bytes and its ratio, the Deep Compression estimate and its ratio, each ratio against
 * the stage's own source model.
 */
function modelsMarkdown(stages: SummaryInput['stages']): string[] {
  const all = stages as unknown as ReportJson['stages'];
  const base = baselineOf(all);
  const baseRows = base ? modelRows(base) : [];
  const bAcc = baseRows[0]?.accuracy;
  const outputs = all.filter((x) => (x.uses === 'evaluate' || x.uses === 'export') && x !== base && x.status !== 'failed');
  if (!baseRows.length && !outputs.length) return [];
  const x = (v: number | undefined, est = false) => (v === undefined ? '' : `${fmtRatio(v, 'x')}${est ? ' est.' : ''}`);
  const b = (v: number | undefined) => fmtBytes(v, '');
  const lines = [
    '| model | accuracy | measured on | vs baseline | source fp32 | file (raw) | file (gzip) | file ratio | estimate | est. ratio | sparsity | latency (batch 1) |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const [p, isBase] of [...baseRows.map((r) => [r, true] as const), ...outputs.flatMap((o) => modelRows(o).map((r) => [r, false] as const))]) {
    const d = !isBase && bAcc !== undefined && p.accuracy !== undefined ? p.accuracy - bAcc : undefined;
    lines.push(`| ${isBase ? `**${p.label}**${p.id === 'baseline' ? '' : ' (baseline)'}` : p.id}${p.note ? ` · ${p.note}` : ''} | ${pct(p.accuracy)} | ${p.measuredOn ?? ''} | ${fmtPp(d)} | ${b(p.sourceBytes)} | ${b(p.fileBytes)} | ${b(p.gzipBytes)} | ${x(p.fileRatio)}${p.fileRatioOf === 'sourceFileBytes' ? ' of file' : ''} | ${b(p.estimatedBytes)} | ${x(p.estimatedRatio, true)} | ${pct(p.sparsity)} | ${fmtMs(p.latencyMs, '')} |`);
  }
  lines.push('', `Sizes: *source fp32* = ${SIZE_METRICS.sourceBytes}; *file* = ${SIZE_METRICS.fileBytes}, raw and gzip -9; *estimate* = ${SIZE_METRICS.estimatedBytes}. *measured on*: the samples (of which split) accuracy is top-1 on, and where they ran: the engine, or an exported file in its own runtime; latency is ms per sample at batch 1 there. Ratios divide the stage's own source model's dense fp32 bytes; *of file*: the loaded file's real bytes (${SIZE_METRICS.sourceFileBytes}).`);
  return lines;
}

/** The recipe's `name:`, read back from the recipe file (RunSummary records only its path). */
export function recipeNameOf(file: string): string | undefined {
  try {
    const doc = parse(readFileSync(file, 'utf8')) as { name?: unknown } | null;
    return typeof doc?.name === 'string' ? doc.name : undefined;
  } catch {
    return undefined;
  }
}

/** Writes `<reportsRoot>/<runId>/{report.json,summary.md,report.html}`; returns that directory. */
export async function writeReports(s: RunSummary, reportsRoot: string): Promise<string> {
  const dir = join(reportsRoot, s.runId);
  await mkdir(dir, { recursive: true });
  const json = reportJson(s);
  await writeFile(join(dir, 'report.json'), stableJson(json));
  const md = summaryMarkdown(s);
  await writeFile(join(dir, 'summary.md'), md);
  await writeFile(join(dir, 'report.html'), renderHtml(json, { recipeName: recipeNameOf(s.recipe) }));
  if (process.env.GITHUB_STEP_SUMMARY) await appendFile(process.env.GITHUB_STEP_SUMMARY, md).catch(() => undefined);
  return dir;
}
