/**
 * The one home of the checks made before any stage runs, beyond parsing the recipe (and the parser's
 * own check that the data and model files exist, `openRecipe(..., checkFiles)`): `validate`, `run` and
 * `verify` all call `preflight`, so they report exactly the same problems, and `run` reports them
 * before any stage starts instead of failing the stage (or the run) on its way.
 */
import type { LoadedRecipe } from '../recipe/load.js';
import { RecipeError, type RecipeProblem } from '../recipe/errors.js';
import { dataFiles } from '../data/load.js';
import { stageKind } from '../stages/registry.js';
import { checkExportPlan } from '../export/plan-check.js';
import { cacheDirFor, outDirFor } from './dirs.js';

/**
 * Throws a RecipeError (exit 2) listing every problem of the recipe with the file system: where the
 * cache and outputs go (outDir, cache.dir: inside the workspace, symlinks included), the files of the
 * datasets stages read and the repository files stages read (load.path, exec inputs: none may lead out
 * of the workspace); then an InputError when an export target cannot express a layer of the model.
 */
export async function preflight(recipe: LoadedRecipe): Promise<void> {
  const problems = recipeLevelProblems(recipe);
  if (problems.length) throw new RecipeError(problems);
  await checkExportPlan(recipe);
}

/** The file-system checks of `preflight` (synchronous; the fuzzer runs them on every recipe it generates). */
export function recipeLevelProblems(recipe: LoadedRecipe): RecipeProblem[] {
  const problems: RecipeProblem[] = [];
  const at = (path: Array<string | number>, f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (e instanceof RecipeError) problems.push(...e.problems.map((p) => (p.line === undefined && !p.origin ? positioned(recipe, p.path.split('.'), p.message) : p)));
      else problems.push(positioned(recipe, path, (e as Error).message));
    }
  };
  at(['cache', 'dir'], () => cacheDirFor(recipe));
  at(['outDir'], () => outDirFor(recipe));
  for (const name of new Set(recipe.stages.flatMap((s) => s.datasets))) {
    const spec = recipe.data[name];
    if (spec) at(['data', name], () => dataFiles(spec, recipe.dir));
  }
  for (const s of recipe.stages) at(['stages', s.id, 'with'], () => stageKind(s.uses)?.files?.(s.with as never, recipe.dir));
  return problems;
}

function positioned(recipe: LoadedRecipe, path: Array<string | number>, message: string): RecipeProblem {
  return recipe.problemAt?.(path, message) ?? { file: recipe.file, path: path.join('.'), message };
}
