/**
 * The recipe-level checks `run` makes before any stage computes, as one function: where the cache
 * and outputs go (outDir, cache.dir), the data files of the datasets stages read, and the repository
 * files stages read (load.path, exec inputs). `run` makes these through openRun / keyContext /
 * stageKey; the fuzzer calls this on every recipe `validate` accepts, so a recipe-level error that
 * only `run` would report is a finding (validate must know what run knows).
 */
import type { LoadedRecipe } from '../recipe/load.js';
import { dataFiles } from '../data/load.js';
import { stageKind } from '../stages/registry.js';
import { cacheDirFor, outDirFor } from './execute.js';

export function recipeLevelChecks(recipe: LoadedRecipe): void {
  cacheDirFor(recipe);
  outDirFor(recipe);
  for (const name of new Set(recipe.stages.flatMap((s) => s.datasets))) {
    const spec = recipe.data[name];
    if (spec) dataFiles(spec, recipe.dir);
  }
  for (const s of recipe.stages) stageKind(s.uses)?.files?.(s.with as never, recipe.dir);
}
