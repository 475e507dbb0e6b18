import { preflight } from '../run/preflight.js';
import { formatPlan, type PlanFormat } from '../stage-graph/plan.js';
import { UsageError } from '../recipe/errors.js';
import { openRecipe, type RecipeFlags } from './common.js';

export async function validateCommand(file: string | undefined, flags: RecipeFlags): Promise<number> {
  const r = openRecipe(file, flags, true);
  // The checks run makes before any stage, from the same function: validate and run report the same problems.
  await preflight(r);
  process.stdout.write(`${r.file}: ok (${r.stages.length} stages, ${Object.keys(r.data).length} datasets)\n`);
  return 0;
}

export async function planCommand(file: string | undefined, flags: RecipeFlags & { format?: string; status?: boolean; cacheDir?: string }): Promise<number> {
  const format = (flags.format ?? 'text') as PlanFormat;
  if (!['text', 'mermaid', 'dot', 'json'].includes(format)) throw new UsageError(`--format must be text, mermaid, dot or json (got '${format}')`);
  const r = openRecipe(file, flags);
  const { stageStates } = await import('../run/execute.js');
  const states = flags.status ? new Map((await stageStates(r, flags)).map((s) => [s.id, s])) : undefined;
  const nodes = r.stages.map((s) => ({ id: s.id, needs: s.needs, uses: s.uses, status: states?.get(s.id)?.state }));
  process.stdout.write(formatPlan(nodes, format) + '\n');
  return 0;
}

export async function statusCommand(file: string | undefined, flags: RecipeFlags & { cacheDir?: string; json?: boolean; remote?: string | false }): Promise<number> {
  const r = openRecipe(file, flags);
  const { stageStates } = await import('../run/execute.js');
  const states = await stageStates(r, { ...flags, remote: { remote: flags.remote }, onWarning: (m) => process.stderr.write(`warning: ${m}\n`) });
  if (flags.json) {
    process.stdout.write(JSON.stringify({ stages: states }, null, 2) + '\n');
    return 0;
  }
  for (const s of states) process.stdout.write(`  ${s.id.padEnd(16)} ${s.state.padEnd(7)} ${s.state === 'cached' ? '' : s.reason}\n`);
  const stale = states.filter((s) => s.state === 'stale').length;
  const remote = states.filter((s) => s.state === 'remote').length;
  const fetched = remote ? `${remote} would be fetched from the remote cache` : '';
  if (stale) process.stdout.write(`${stale} of ${states.length} stages would run${fetched ? `; ${fetched}` : ''}\n`);
  else process.stdout.write(remote ? `nothing would run (${states.length} stages): ${fetched}\n` : `everything is cached (${states.length} stages)\n`);
  return 0;
}
