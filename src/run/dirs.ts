import { join, resolve } from 'node:path';
import type { LoadedRecipe } from '../recipe/load.js';
import { RecipeError } from '../recipe/errors.js';
import { confinedWriteDir, PathEscapeError } from '../util/paths.js';

/** Where a run's cache is: --cache-dir, else env COMPRESS_CACHE_DIR, else the recipe's cache.dir, else .compress/cache. */
export function cacheDirFor(recipe: LoadedRecipe, flag?: string): string {
  if (flag) return resolve(flag);
  if (process.env.COMPRESS_CACHE_DIR) return resolve(process.env.COMPRESS_CACHE_DIR);
  if (recipe.cacheDir) return recipeWriteDir(recipe, recipe.cacheDir, 'cache.dir');
  return join(recipe.dir, '.compress', 'cache');
}

export function outDirFor(recipe: LoadedRecipe): string {
  return recipe.outDir ? recipeWriteDir(recipe, recipe.outDir, 'outDir') : join(recipe.dir, '.compress', 'out');
}

/** A directory the recipe names for compress to write (and `cache clean` to delete): kept inside the workspace. */
function recipeWriteDir(recipe: LoadedRecipe, p: string, what: string): string {
  try {
    return confinedWriteDir(recipe.dir, p, what);
  } catch (e) {
    if (e instanceof PathEscapeError) throw new RecipeError([{ file: recipe.file, path: what, message: what === 'cache.dir' ? `${e.message} (a cache outside the workspace is chosen with --cache-dir or COMPRESS_CACHE_DIR)` : e.message }]);
    throw e;
  }
}
