import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../recipe/errors.js';
import type { ReportJson } from './write.js';

/** One stored run: its directory under `.compress/reports/` and its report.json. */
export interface StoredRun {
  runId: string;
  dir: string;
  report: ReportJson;
}

/** Where `compress run <recipe>` writes its reports. */
export function reportsRootFor(recipeFile: string): string {
  return join(dirname(resolve(recipeFile)), '.compress', 'reports');
}

function readReport(dir: string): ReportJson | undefined {
  try {
    const r = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as ReportJson;
    return r && typeof r === 'object' && typeof r.runId === 'string' && Array.isArray(r.stages) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Every readable run under `root`, oldest first (by start time, then run id). */
export function listRuns(root: string): StoredRun[] {
  if (!existsSync(root)) return [];
  const runs: StoredRun[] = [];
  for (const name of readdirSync(root)) {
    const dir = join(root, name);
    const report = readReport(dir);
    if (report) runs.push({ runId: report.runId, dir, report });
  }
  return runs.sort((a, b) => (a.report.startedAt ?? '').localeCompare(b.report.startedAt ?? '') || a.runId.localeCompare(b.runId));
}

/** The runs of one recipe (reports of every recipe in a directory share one reports folder). */
export function runsOf(recipeFile: string): { root: string; runs: StoredRun[]; others: StoredRun[] } {
  const root = reportsRootFor(recipeFile);
  const all = listRuns(root);
  const mine = (r: StoredRun) => basename(r.report.recipe ?? '') === basename(recipeFile);
  return { root, runs: all.filter(mine), others: all.filter((r) => !mine(r)) };
}

/** A report directory, or a report.json file, given as a path. */
function runAtPath(name: string): StoredRun | undefined {
  if (!existsSync(name)) return undefined;
  const dir = statSync(name).isDirectory() ? resolve(name) : dirname(resolve(name));
  const report = readReport(dir);
  if (!report) throw new UsageError(`'${name}' is not a compress report (no readable report.json in ${dir})`);
  return { runId: report.runId, dir, report };
}

/**
 * Resolves a run name for the recipe: `latest` (or none), `previous`, a run id or a unique prefix of one,
 * or a path to a report directory / report.json.
 */
export function resolveRun(name: string | undefined, recipeFile: string): StoredRun {
  if (name && name !== 'latest' && name !== 'previous' && (name.includes('/') || name.includes('\\') || name.endsWith('.json'))) {
    const r = runAtPath(name);
    if (r) return r;
    throw new UsageError(`no report at '${name}'`);
  }
  const { root, runs, others } = runsOf(recipeFile);
  if (!runs.length) {
    const hint = others.length ? ` (there are ${others.length} reports of other recipes: ${[...new Set(others.map((o) => basename(o.report.recipe)))].join(', ')}; pass --recipe)` : '; run `compress run` first';
    throw new UsageError(`no reports for ${basename(recipeFile)} in ${root}${hint}`);
  }
  const recent = () => runs.slice(-5).reverse().map((r) => r.runId).join(', ');
  if (!name || name === 'latest') return runs[runs.length - 1];
  if (name === 'previous') {
    if (runs.length < 2) throw new UsageError(`only one run of ${basename(recipeFile)} is recorded (${runs[0].runId}); there is no previous run`);
    return runs[runs.length - 2];
  }
  const exact = runs.find((r) => r.runId === name);
  if (exact) return exact;
  const byPrefix = runs.filter((r) => r.runId.startsWith(name));
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) throw new UsageError(`run '${name}' is ambiguous: ${byPrefix.map((r) => r.runId).join(', ')}`);
  const local = runAtPath(name);
  if (local) return local;
  throw new UsageError(`no run '${name}' of ${basename(recipeFile)} (recent: ${recent()}; also: latest, previous)`);
}
