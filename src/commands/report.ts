import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../recipe/errors.js';
import { EXIT } from '../exit-codes.js';
import { compareMarkdown, compareReports } from '../report/compare.js';
import { renderHtml } from '../report/html.js';
import { resolveRun, type StoredRun } from '../report/read.js';
import { recipeNameOf, summaryMarkdown } from '../report/write.js';
import { stableJson } from '../model/io.js';
import { DEFAULT_RECIPE } from './common.js';

export interface ReportFlags {
  /** The recipe whose runs are meant (default compress.config.yaml); reports live next to it. */
  recipe?: string;
  format?: 'md' | 'json' | 'html-path';
  /** Two run names (old, new); one name compares it with `latest`. */
  compare?: string[];
}

/**
 * `compress report [run]`: prints a stored run's summary (markdown), its report.json, or the path of its
 * report.html; `--compare <a> <b>` prints what changed between two runs. Returns the exit code.
 */
export async function reportCommand(run: string | undefined, flags: ReportFlags = {}): Promise<number> {
  try {
    const recipe = flags.recipe ?? DEFAULT_RECIPE;
    const format = flags.format ?? 'md';
    if (!['md', 'json', 'html-path'].includes(format)) throw new UsageError(`--format must be md, json or html-path, got '${format}'`);
    if (flags.compare) {
      const names = [...flags.compare, ...(run !== undefined ? [run] : [])];
      if (names.length < 1 || names.length > 2) throw new UsageError(`--compare takes two runs (e.g. --compare previous latest), got ${names.length}`);
      if (format === 'html-path') throw new UsageError('--compare prints markdown or json, not html-path');
      const [a, b] = names.length === 2 ? names : [names[0], 'latest'];
      const ra = resolveRun(a, recipe);
      const rb = resolveRun(b, recipe);
      if (ra.dir === rb.dir) process.stderr.write(`note: '${a}' and '${b}' are the same run (${ra.runId})\n`);
      const c = compareReports(ra.report, rb.report);
      process.stdout.write(format === 'json' ? stableJson(c) : compareMarkdown(c));
      return EXIT.ok;
    }
    const r = resolveRun(run, recipe);
    if (format === 'json') process.stdout.write(readFileSync(join(r.dir, 'report.json'), 'utf8'));
    else if (format === 'html-path') process.stdout.write(ensureHtml(r, recipe) + '\n');
    else {
      const md = join(r.dir, 'summary.md');
      process.stdout.write(existsSync(md) ? readFileSync(md, 'utf8') : summaryMarkdown(r.report));
    }
    return EXIT.ok;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n`);
      return EXIT.usage;
    }
    throw e;
  }
}

/** The run's report.html, rendered from its report.json first when the run predates HTML reports. */
function ensureHtml(r: StoredRun, recipe: string): string {
  const file = resolve(r.dir, 'report.html');
  if (!existsSync(file)) writeFileSync(file, renderHtml(r.report, { recipeName: existsSync(recipe) ? recipeNameOf(recipe) : undefined }));
  return file;
}
