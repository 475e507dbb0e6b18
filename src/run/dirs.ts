import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
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

/**
 * Where a run places its stages' output folders: the recipe's outDir, else `.compress/out/` for the default
 * recipe (compress.config.yaml) and `.compress/out/<recipe file name>/` for any other, so that recipes in one
 * directory (pipelines/a.yaml, pipelines/b.yaml) never overwrite each other's stages of the same name. A
 * file name has a dot and a stage id cannot, so no recipe's folder is ever a stage's folder.
 */
export function outDirFor(recipe: LoadedRecipe): string {
  if (recipe.outDir) return recipeWriteDir(recipe, recipe.outDir, 'outDir');
  const root = join(recipe.dir, '.compress', 'out');
  const name = basename(recipe.file);
  return DEFAULT_RECIPE_NAMES.has(name) ? root : join(root, name);
}

/** Recipe file names whose outputs go straight to `.compress/out/<stage>/`. */
const DEFAULT_RECIPE_NAMES = new Set(['compress.config.yaml', 'compress.config.yml']);

/** A directory the recipe names for compress to write (and `cache clean` to delete): kept inside the workspace. */
function recipeWriteDir(recipe: LoadedRecipe, p: string, what: string): string {
  try {
    return confinedWriteDir(recipe.dir, p, what);
  } catch (e) {
    if (e instanceof PathEscapeError) throw new RecipeError([{ file: recipe.file, path: what, message: what === 'cache.dir' ? `${e.message} (a cache outside the workspace is chosen with --cache-dir or COMPRESS_CACHE_DIR)` : e.message }]);
    throw e;
  }
}

/**
 * Keeps `<recipe dir>/.compress/` (cache, outputs, reports) out of git, as pytest and mypy do with their
 * caches: a `.gitignore` of `*` inside it, written once, so `git add .` or `git add pipelines/` does not commit
 * megabytes of cache. A directory compress cannot write is left alone (the run reports that where it matters).
 */
export function ignoreWorkDir(recipe: LoadedRecipe): void {
  const dir = join(recipe.dir, '.compress');
  const file = join(dir, '.gitignore');
  if (existsSync(file)) return;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, '# Written by compress: its cache, outputs and reports stay out of git.\n*\n', { flag: 'wx' });
  } catch {
    // read-only workspace, or another run wrote it first
  }
}
