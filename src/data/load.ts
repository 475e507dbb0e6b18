import { confinedPath } from '../util/paths.js';
import type { DataSpec } from '../recipe/schema.js';
import type { Splits } from './dataset.js';
import { loadMnist, mnistFiles, splitDataset } from './mnist.js';

const DEFAULT_SPLIT = { train: 0.8, validation: 0.1, test: 0.1 };

/** Loads a recipe dataset and splits it with its seed (the recipe seed unless the dataset sets one). */
export async function loadSplits(spec: DataSpec, recipeDir: string, recipeSeed: number): Promise<Splits> {
  const seed = spec.seed ?? recipeSeed;
  if (spec.source === 'mnist') return splitDataset(loadMnist(), spec.split ?? DEFAULT_SPLIT, seed, spec.limit);
  const { loadUserData } = await import('./validate.js');
  const all = loadUserData(
    {
      // Recipe strings: they may not reach files outside the recipe's directory (nor via symlinks).
      features: confinedPath(recipeDir, spec.features, 'data features path'),
      labels: spec.labels === undefined ? undefined : confinedPath(recipeDir, spec.labels, 'data labels path'),
      format: spec.format,
      labelColumn: spec.labelColumn,
      numClasses: spec.numClasses,
      sampleShape: spec.sampleShape,
    },
    recipeDir,
  );
  return splitDataset(all, spec.split ?? DEFAULT_SPLIT, seed, spec.limit);
}

/** Files whose content the dataset depends on: their digests go into cache keys. */
export function dataFiles(spec: DataSpec, recipeDir: string): string[] {
  if (spec.source === 'mnist') return mnistFiles();
  const files = [confinedPath(recipeDir, spec.features, 'data features path')];
  if (spec.labels) files.push(confinedPath(recipeDir, spec.labels, 'data labels path'));
  return files;
}
