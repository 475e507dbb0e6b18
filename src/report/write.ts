import { readFileSync } from 'node:fs';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { stableJson } from '../model/io.js';
import type { RunSummary, StageOutcome } from '../run/execute.js';
import { tfjsVersion } from '../engine/backend.js';
import { baselineOf, fmtBytes, modelPoint, renderHtml } from './html.js';
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
    versions: { compress: '0.1.0', tfjs: tfjsVersion(), node: process.version },
    exitCode: s.exitCode,
    cache: { hits: s.stages.filter((x) => x.status === 'cached').length, ran: s.stages.filter((x) => x.status === 'ran').length },
    stages: s.stages.map((x) => ({
      id: x.id,
      uses: x.uses,
      status: x.status,
      reason: x.reason,
      key: x.key,
      seconds: x.seconds,
      metrics: x.metrics,
      outputs: x.outputs,
      error: x.error ? { name: x.error.name, message: x.error.message } : undefined,
    })),
    gates: s.gates,
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
  stages: Array<Pick<StageOutcome, 'id' | 'uses' | 'status' | 'seconds' | 'metrics' | 'reason'>>;
  gates: RunSummary['gates'];
}

const pct = (v: unknown) => (typeof v === 'number' ? `${(v * 100).toFixed(2)}%` : '');
const num = (v: unknown, d = 1) => (typeof v === 'number' ? v.toFixed(d) : '');
const kb = (v: unknown) => (typeof v === 'number' ? `${(v / 1024).toFixed(1)} KiB` : '');

/**
 * Markdown for GitHub step summaries and PR comments: the models (baseline vs each output), the gates,
 * sweep pareto tables, failures, then every stage folded away.
 */
export function summaryMarkdown(s: SummaryInput): string {
  const cached = s.stages.filter((x) => x.status === 'cached').length;
  const failedGates = s.gates.filter((g) => !g.passed).length;
  const verdict = s.exitCode === 0 ? 'passed' : s.exitCode === 3 ? `**${failedGates} gate${failedGates === 1 ? '' : 's'} failed**` : `**failed (exit ${s.exitCode})**`;
  const lines = [`## compress: ${s.recipe.replace(/^.*[\\/]/, '')} ${s.exitCode === 0 ? '✅' : '❌'}`, '', `${verdict} · run \`${s.runId}\` · engine \`${s.engine}\` · ${s.seconds.toFixed(1)} s · ${cached} of ${s.stages.length} stages cached`, ''];
  lines.push(...modelsMarkdown(s.stages));
  if (s.gates.length) {
    lines.push('', '| gate | stage | result |', '|---|---|---|');
    for (const g of s.gates) lines.push(`| \`${g.gate}\` | ${g.stage} | ${g.passed ? 'pass' : '**FAIL**'}: ${g.left !== undefined ? `${g.left.toPrecision(6)} vs ${g.right!.toPrecision(6)}` : g.message} |`);
  }
  lines.push(...sweepMarkdown(s.stages));
  const failed = s.stages.filter((x) => x.status === 'failed');
  if (failed.length) lines.push('', ...failed.map((f) => `**${f.id} failed:** ${f.reason}`));
  lines.push('', '<details><summary>stages</summary>', '', '| stage | kind | status | accuracy | sparsity | size | ratio | latency |', '|---|---|---|---:|---:|---:|---:|---:|');
  for (const x of s.stages) {
    const m = x.metrics as Record<string, unknown>;
    const size = m.finalBytes ?? m.bytes;
    lines.push(`| ${x.id} | ${x.uses} | ${x.status}${x.status === 'ran' ? ` (${x.seconds.toFixed(1)} s)` : ''} | ${pct(m.accuracy)} | ${pct(m.sparsity)} | ${kb(size)} | ${m.compressionRatio !== undefined ? `${num(m.compressionRatio)}x` : ''} | ${m.latencyMs !== undefined ? `${num(m.latencyMs, 3)} ms` : ''} |`);
  }
  lines.push('', '</details>');
  return lines.join('\n') + '\n';
}

/** Baseline vs each output (evaluate and export stages): accuracy and its change, size, ratio, sparsity, latency. */
function modelsMarkdown(stages: SummaryInput['stages']): string[] {
  const all = stages as unknown as ReportJson['stages'];
  const base = baselineOf({ stages: all } as ReportJson);
  const bp = base ? modelPoint(base) : undefined;
  const outputs = all.filter((x) => (x.uses === 'evaluate' || x.uses === 'export') && x !== base && x.status !== 'failed');
  if (!bp && !outputs.length) return [];
  const lines = ['| model | accuracy | vs baseline | size | ratio | sparsity | latency |', '|---|---:|---:|---:|---:|---:|---:|'];
  for (const [p, isBase] of [...(bp ? [[bp, true] as const] : []), ...outputs.map((x) => [modelPoint(x), false] as const)]) {
    const d = !isBase && bp?.accuracy !== undefined && p.accuracy !== undefined ? p.accuracy - bp.accuracy : undefined;
    const ratio = p.ratio ?? (bp?.size && p.size && !p.sizeEstimated && !isBase ? bp.size / p.size : undefined);
    lines.push(`| ${isBase ? `**${p.id}**${p.id === 'baseline' ? '' : ' (baseline)'}` : p.id}${p.note ? ` · ${p.note}` : ''} | ${pct(p.accuracy)} | ${d === undefined ? '' : `${d >= 0 ? '+' : '−'}${Math.abs(d * 100).toFixed(2)} pp`} | ${p.size !== undefined ? `${fmtBytes(p.size)}${p.sizeEstimated ? ' (fp32)' : ''}` : ''} | ${ratio !== undefined ? `${ratio.toFixed(1)}x` : ''} | ${pct(p.sparsity)} | ${p.latencyMs !== undefined ? `${p.latencyMs.toFixed(3)} ms` : ''} |`);
  }
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
