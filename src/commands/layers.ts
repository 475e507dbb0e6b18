import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CacheStore } from '../cache/store.js';
import { stageKind } from '../stages/registry.js';
import { fmtPct } from '../report/model.js';
import { join } from 'node:path';
import { initEngine } from '../engine/backend.js';
import { BUILTIN_MODELS, buildModel, type BuiltinModel } from '../engine/models.js';
import { loadModelDir } from '../model/io.js';
import { modelStats } from '../prune/stats.js';
import { UsageError } from '../recipe/errors.js';
import { cacheDirFor, stageStates } from '../run/execute.js';
import { DEFAULT_RECIPE, openRecipe } from './common.js';

/**
 * Prints a model's layers (name, type, output shape, params, sparsity) to write selectors from.
 * The target is a stage id of the recipe (its cached model), a model path, or a built-in architecture.
 */
export async function layersCommand(target: string, flags: { recipe?: string; json?: boolean; backend?: 'auto' | 'wasm' | 'cpu' | 'tensorflow' }): Promise<number> {
  const { tf } = await initEngine(flags.backend ?? 'auto');
  let model;
  const recipeFile = flags.recipe ?? DEFAULT_RECIPE;
  if ((BUILTIN_MODELS as readonly string[]).includes(target)) {
    model = buildModel(tf, target as BuiltinModel, { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
  } else if (existsSync(target)) {
    const { loadModelFrom } = await import('../model/load/index.js');
    model = await loadModelFrom(tf, target);
  } else if (existsSync(recipeFile)) {
    const recipe = openRecipe(recipeFile, {});
    const stage = recipe.stageById.get(target);
    if (!stage) throw new UsageError(`'${target}' is not a stage of ${recipeFile}, a model path, or a built-in model (${BUILTIN_MODELS.join(', ')})`);
    if (stageKind(stage.uses)?.producesModel === false) {
      throw new UsageError(`stage '${target}' (${stage.uses}) produces no model to list; give a stage that does (load, train, prune, quantize, ...) or the exported file's path`);
    }
    const state = (await stageStates(recipe)).find((s) => s.id === target)!;
    const store = new CacheStore(cacheDirFor(recipe));
    const rec = state.state === 'cached' && state.key ? await store.getRecord(state.key) : undefined;
    if (!rec?.outputs['model.json']) throw new UsageError(`stage '${target}' has no model in the cache yet (${state.reason}); run \`compress run --until ${target}\` first`);
    // The cache entry of the stage's current key, not .compress/out/<stage>: that holds whatever ran last there
    // (a --set run, another branch's recipe, another recipe of the same directory).
    const tmp = mkdtempSync(join(tmpdir(), 'compress-layers-'));
    try {
      await store.materialize(rec, join(tmp, target));
      model = (await loadModelDir(tf, join(tmp, target))).model;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  } else {
    throw new UsageError(`'${target}' is not a model path or a built-in model (${BUILTIN_MODELS.join(', ')}), and there is no ${recipeFile} to look up a stage in`);
  }
  const stats = modelStats(model);
  const rows = model.layers.map((l) => {
    const st = stats.layers.find((s) => s.name === l.name);
    const shape = JSON.stringify(l.outputShape).replace(/null/g, '?');
    return { name: l.name, type: l.getClassName(), outputShape: shape, params: l.countParams(), sparsity: st?.sparsity ?? 0 };
  });
  if (flags.json) process.stdout.write(JSON.stringify({ layers: rows, params: model.countParams() }, null, 2) + '\n');
  else {
    const w = Math.max(4, ...rows.map((r) => r.name.length));
    const t = Math.max(4, ...rows.map((r) => r.type.length));
    process.stdout.write(`${'name'.padEnd(w)}  ${'type'.padEnd(t)}  ${'output'.padEnd(18)}  ${'params'.padStart(9)}  sparsity\n`);
    for (const r of rows) process.stdout.write(`${r.name.padEnd(w)}  ${r.type.padEnd(t)}  ${r.outputShape.padEnd(18)}  ${String(r.params).padStart(9)}  ${r.params ? fmtPct(r.sparsity, 1) : ''}\n`);
    process.stdout.write(`${rows.length} layers, ${model.countParams()} params\n`);
  }
  model.dispose();
  return 0;
}
