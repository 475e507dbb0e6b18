import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadRecipe, type LoadedRecipe } from '../recipe/load.js';
import { UsageError } from '../recipe/errors.js';
import { EXIT } from '../exit-codes.js';

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

/**
 * Ctrl-C (or SIGTERM) aborts the returned signal so stages stop and completed ones stay cached; a
 * second one exits at once with 130. Call the returned `release` when the work is over.
 */
export function interruptible(message: string): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(EXIT.interrupted);
    process.stderr.write(`\ninterrupted: ${message}\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
