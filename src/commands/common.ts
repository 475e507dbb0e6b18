import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadRecipe, type LoadedRecipe } from '../recipe/load.js';
import { UsageError } from '../recipe/errors.js';

export const DEFAULT_RECIPE = 'compress.config.yaml';

export interface RecipeFlags {
  set?: string[];
}

export function openRecipe(file: string | undefined, flags: RecipeFlags): LoadedRecipe {
  const path = file ?? DEFAULT_RECIPE;
  if (!existsSync(path)) {
    throw new UsageError(file ? `recipe '${path}' not found` : `no ${DEFAULT_RECIPE} here (${resolve('.')}); pass a recipe path or run \`compress init\``);
  }
  return loadRecipe(path, { sets: flags.set });
}

export function collect(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}

export function parseConcurrency(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--concurrency must be a positive integer, got '${v}'`);
  return n;
}
