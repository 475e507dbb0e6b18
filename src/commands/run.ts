import { preflight } from '../run/preflight.js';
import { join, relative, resolve } from 'node:path';
import type { LoadedRecipe } from '../recipe/load.js';
import { UsageError } from '../recipe/errors.js';
import { CacheStore } from '../cache/store.js';
import { resolveRemote } from '../cache/remote-config.js';
import type { BackendChoice } from '../engine/backend.js';
import { createProgress, progressMode } from '../run/progress.js';
import { cacheDirFor, plannedStages, runRecipe, type RunSummary } from '../run/execute.js';
import { ignoreWorkDir } from '../run/dirs.js';
import { writeReports } from '../report/write.js';
import { fmtBytes, fmtMs, fmtPct, fmtRatio } from '../report/model.js';
import { interruptible, openRecipe, type RecipeFlags } from './common.js';
import { describeFsError, isFsError } from '../cache/fsutil.js';
import { mark } from '../util/timings.js';

export interface RunFlags extends RecipeFlags {
  cacheDir?: string;
  concurrency?: number;
  only?: string[];
  from?: string;
  until?: string;
  force?: boolean | string[];
  frozen?: boolean;
  backend?: BackendChoice;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  /** `--remote <url>` / `--no-remote`. */
  remote?: string | false;
  push?: boolean;
  /** `--queue redis://…`: stages are computed by `compress worker`s. */
  queue?: string;
}

export async function runCommand(file: string | undefined, flags: RunFlags): Promise<number> {
  mark('run modules loaded');
  const recipe = openRecipe(file, flags, true);
  mark('recipe parsed');
  // Before any stage: what validate reports (paths through symlinks, export targets that cannot
  // express a layer of the model) fails the run now, not a stage on its way.
  await preflight(recipe);
  mark('preflight');
  ignoreWorkDir(recipe);
  const mode = progressMode(flags);
  // Only the stages this run takes part in (--only/--from/--until and their upstream) are listed.
  const planned = new Set(plannedStages(recipe, { only: flags.only, from: flags.from, until: flags.until }));
  const progress = createProgress(mode, recipe.stages.filter((s) => planned.has(s.id)), flags.verbose);
  const interrupt = interruptible('stopping stages (cached results are kept; press Ctrl-C again to force)');
  let summary: RunSummary;
  const { remote, push, queue, ...rest } = flags;
  const executor = queue ? await openQueue(queue, recipe, flags) : undefined;
  try {
    // With a queue, the workers bound how many stages compute at once.
    const concurrency = flags.concurrency ?? (executor ? 1000 : undefined);
    summary = await runRecipe(recipe, { ...rest, concurrency, executor, remote: { remote, push }, signal: interrupt.signal, onEvent: progress.onEvent });
  } finally {
    await progress.done();
    interrupt.release();
    await executor?.close();
  }
  let reportDir: string | undefined;
  try {
    reportDir = await writeReports(summary, join(recipe.dir, '.compress', 'reports'));
  } catch (e) {
    // A full or read-only disk: the run's results are in the cache (and lock); say so, not crash.
    if (!isFsError(e)) throw e;
    process.stderr.write(`warning: ${describeFsError(e, `cannot write the run report in ${join(recipe.dir, '.compress', 'reports')}`)}\n`);
  }
  mark('reports written');
  if (mode !== 'json') printSummary(summary, reportDir, mode === 'quiet', flags.verbose, flags.set?.length ?? 0);
  return summary.exitCode;
}

function printSummary(s: RunSummary, reportDir: string | undefined, quiet: boolean, verbose: boolean | undefined, sets: number): void {
  const err = (l: string) => process.stderr.write(l + '\n');
  for (const st of s.stages.filter((x) => x.status === 'failed')) {
    err(`error: stage '${st.id}' failed: ${st.reason}`);
    if (verbose && st.error?.stack) err(st.error.stack);
  }
  if (s.lockError) err(`error: ${s.lockError} (a previous lock file is left as it was)`);
  for (const g of s.gates.filter((x) => !x.passed)) err(`error: ${g.message} (stage '${g.stage}')`);
  if (quiet) return;
  const out = (l: string) => process.stdout.write(l + '\n');
  const ran = s.stages.filter((x) => x.status === 'ran').length;
  const cached = s.stages.filter((x) => x.status === 'cached').length;
  for (const st of s.stages) {
    const m = st.metrics as Record<string, unknown>;
    const bits = [
      typeof m.accuracy === 'number' ? `accuracy ${fmtPct(m.accuracy)}` : '',
      typeof m.sparsity === 'number' ? `sparsity ${fmtPct(m.sparsity, 1)}` : '',
      // Structured pruning removes units (sparsity stays ~0): the parameter count says what it did.
      typeof m.removedUnits === 'number' && m.removedUnits > 0 && typeof m.paramsBefore === 'number' && typeof m.params === 'number'
        ? `params ${m.paramsBefore.toLocaleString('en-US')} -> ${m.params.toLocaleString('en-US')} (${m.removedUnits} units removed)`
        : '',
      // The summary's number: fp32 dense bytes / estimated bytes (compressionRatio divides a loaded file's bytes,
      // which counts the file format's overhead: an unchanged ONNX model read 1.5x).
      // (on evaluate rows; an export row has its real file's ratio)
      typeof m.compressionRatio === 'number' ? `estimated ratio ${fmtRatio((m.estimatedRatio ?? m.compressionRatio) as number, 'x')}` : '',
      // The ratio divides the source's dense fp32 bytes, or the loaded file's own bytes right after a load (as summary.md says).
      typeof m.fileBytes === 'number' ? `file ${fmtBytes(m.fileBytes)}${typeof m.fileRatio === 'number' ? ` (${fmtRatio(m.fileRatio, 'x')}${m.fileRatioOf === 'sourceFileBytes' ? ' of the loaded file' : ''})` : ''}` : '',
      typeof m.latencyMs === 'number' ? `${fmtMs(m.latencyMs)}/sample` : '',
    ].filter(Boolean);
    out(`  ${st.id.padEnd(16)} ${st.status.padEnd(8)} ${bits.join(', ')}`);
  }
  for (const g of s.gates.filter((x) => x.passed)) out(`  ${g.message}`);
  out(`${s.stages.length} stages: ${ran} ran, ${cached} cached${s.exitCode ? `, exit ${s.exitCode}` : ''} in ${s.seconds.toFixed(1)} s · engine ${s.engine}`);
  if (s.remote) out(remoteLine(s.remote));
  // A --set experiment rewrites the committed lock: committed without the recipe change, CI's --frozen fails.
  const overridden = sets && !s.lockError ? ` (written with ${sets} --set override${sets === 1 ? '' : 's'}: a run without ${sets === 1 ? 'it' : 'them'}, like CI's --frozen, may not match this lock)` : '';
  out(`${reportDir ? `report: ${reportDir}/summary.md · ` : ''}lock: ${s.lockPath}${s.lockError ? ' (not written)' : ''}${overridden} · outputs: ${relative(resolve('.'), s.outDir) || '.'}/<stage>/`);
}

/** `remote: s3://b/p (read-only: why) · 3 hits, 2 pushed`, or why it was unavailable. */
export function remoteLine(r: NonNullable<RunSummary['remote']>): string {
  const mode = r.push ? '' : ` (read-only: ${r.readOnlyReason})`;
  return `remote: ${r.url}${mode} · ${r.hits} hit${r.hits === 1 ? '' : 's'}, ${r.pushed} pushed${r.unavailable ? ` · unavailable (${r.unavailable}): ran local-only` : ''}`;
}

/** The queue executor of `run --queue`: the remote cache is where workers' inputs and outputs travel. */
async function openQueue(url: string, recipe: LoadedRecipe, flags: RunFlags) {
  const settings = resolveRemote(recipe.cache, { remote: flags.remote, push: flags.push });
  if (!settings) throw new UsageError('--queue needs a remote cache to pass stage inputs and outputs between machines: --remote s3://bucket/prefix, env COMPRESS_REMOTE or the recipe\'s cache.remote');
  const { QueueExecutor } = await import('../run/queue.js');
  const { RemoteCache } = await import('../cache/remote.js');
  const store = new CacheStore(cacheDirFor(recipe, flags.cacheDir));
  return new QueueExecutor(url, { recipe: relative(resolve('.'), recipe.file), sets: flags.set ?? [] }, store, new RemoteCache(settings, { onWarning: (m) => process.stderr.write(`warning: ${m}\n`) }));
}
