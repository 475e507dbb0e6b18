import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadRecipe, type LoadedRecipe } from '../recipe/load.js';
import { UsageError } from '../recipe/errors.js';
import { SIGNAL_EXIT, type StopSignal } from '../exit-codes.js';

export const DEFAULT_RECIPE = 'compress.config.yaml';

export interface RecipeFlags {
  set?: string[];
}

/** Opens a recipe; `checkFiles` (validate, run) also reports data and model files that are not there, at their position. */
export function openRecipe(file: string | undefined, flags: RecipeFlags, checkFiles = false): LoadedRecipe {
  const path = file ?? DEFAULT_RECIPE;
  if (!existsSync(path)) {
    throw new UsageError(file ? `recipe '${path}' not found` : `no ${DEFAULT_RECIPE} here (${resolve('.')}); pass a recipe path or run \`compress init\``);
  }
  return loadRecipe(path, { sets: flags.set, checkFiles });
}

/**
 * Ctrl-C (SIGINT), SIGTERM or SIGHUP abort the returned signal (its reason names the signal) so
 * stages stop, completed ones stay cached, reports are written, temp dirs removed and locks released;
 * the run then exits with 128 + the signal's number (130, 143, 129). A second signal exits at once
 * with that code. Call the returned `release` when the work is over.
 */
export function interruptible(message: string): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  const handlers = (Object.keys(SIGNAL_EXIT) as StopSignal[]).map((sig) => {
    const onSignal = () => {
      if (controller.signal.aborted) process.exit(SIGNAL_EXIT[sig]);
      process.stderr.write(`\ninterrupted by ${sig}: ${message}\n`);
      controller.abort(Object.assign(new Error(`stopped by ${sig}`), { name: 'AbortError', stopSignal: sig }));
    };
    process.on(sig, onSignal);
    return [sig, onSignal] as const;
  });
  return {
    signal: controller.signal,
    release: () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    },
  };
}
